"""The kubernetes runner's artifacts: sealed by the run script, brought back into the export
with the run's key; refused when sealed otherwise, lost when written but not sealed, or over the
bound: each fails a run that otherwise succeeded with ``ArtifactsNotKept``, as the local runner
fails it, so later runs never miss what it wrote.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from controller.kube import Kube
from controller.runners import sealed
from controller.runners.artifacts import MAX_PACKED, unpack
from controller.runners.kubernetes import (
    MAIN,
    RUN_SCRIPT,
    main_env,
)
from controller.runners.kubernetes.layout import ARTIFACTS_KEY
from tests.support.kube_emulator import KubeEmulator
from tests.support.kube_runner import (
    ANSIBLE,
    OPTIONS,
    REF,
    SECRETS,
    STATS,
    finish_job,
    make_pod,
    make_request,
    run_name,
    runner_for,
    running_job,
    start,
)


@pytest.mark.asyncio
async def test_artifacts_a_job_wrote_but_did_not_seal_fail_the_run_as_not_kept(
    kube_emulator: KubeEmulator, kube: Kube, namespace: str, tmp_path: Path, run_task: list[Any]
) -> None:
    request = make_request(tmp_path)
    name = run_name(request, namespace)
    task = start(run_task, runner_for(kube, namespace), request)
    await running_job(kube_emulator, namespace, name)
    message = f'{{"event": "artifacts", "written": 2}}\n{STATS}\n'
    make_pod(
        kube_emulator, namespace, name, main={"terminated": {"exitCode": 0, "message": message}}
    )
    finish_job(kube_emulator, namespace, name, "Complete")
    result = await asyncio.wait_for(task, 10)
    assert result.status == "failed" and result.counts.ok == 4
    assert result.error is not None and result.error.reason == "ArtifactsNotKept"
    assert result.failure_reason is not None
    assert "wrote 2 file(s) under artifacts/blocks/app/" in result.failure_reason
    assert any(
        "wrote 2 file(s) under artifacts/blocks/app/" in line and "nothing new was kept" in line
        for line in result.log_tail
    )


INVENTORY = "all: {hosts: {db-7f3a.internal: {ansible_password: hunter2-plaintext}}}\n"


def _run_script(tmp_path: Path, key: bytes, run_id: str, action: str, arg: str) -> tuple[int, str]:
    """``RUN_SCRIPT`` for real around the shell ``action`` (``$1`` = ``arg``), as the main
    container runs it in the workspace ``tmp_path/ws``: its exit code and its log."""
    from controller.runners.prepare import install_plugins

    ws = tmp_path / "ws"
    block = ws / "blocks" / REF.name
    block.mkdir(parents=True)
    request = make_request(ws)
    (tmp_path / "artifacts.key").write_bytes(key)
    env = main_env(request, OPTIONS)
    env.update(
        PATH=f"{Path(ANSIBLE).parent}:{os.environ['PATH']}",  # its Python seals
        POLYCRATE_WORKSPACE=str(ws),
        CRATEKEEPER_ARTIFACTS_DIR=str(ws / request.artifacts_dir),
        CRATEKEEPER_EVENTS_FILE=str(tmp_path / "events.jsonl"),
        CRATEKEEPER_TERMINATION_LOG=str(tmp_path / "termination-log"),
        CRATEKEEPER_ARTIFACTS_KEY=str(tmp_path / "artifacts.key"),
        CRATEKEEPER_SEALER=str(install_plugins(tmp_path / "tools") / "sealed.py"),
        CRATEKEEPER_RUN_ID=run_id,
    )
    proc = subprocess.run(
        ["/bin/sh", "-c", RUN_SCRIPT, "cratekeeper-run", "/bin/sh", "-c", action, "x", arg],
        cwd=block,
        env=env,
        capture_output=True,
        check=False,
    )
    return proc.returncode, proc.stdout.decode() + proc.stderr.decode()


def test_run_script_seals_the_artifacts_so_the_log_holds_only_ciphertext(tmp_path: Path) -> None:
    """The entry script for real: the action writes an inventory, exits 3; the log carries it
    sealed under the run's key, and only the runner's key and run id open it."""
    key = sealed.new_key()
    action = (
        'mkdir -p "$CRATEKEEPER_ARTIFACTS_DIR" && '
        'printf "$1" > "$CRATEKEEPER_ARTIFACTS_DIR/inventory.yml"; echo done; exit 3'
    )
    code, log = _run_script(tmp_path, key, "ck-run-1", action, INVENTORY)
    assert code == 3, log
    assert "hunter2" not in log and "db-7f3a" not in log
    lines, body = sealed.split_log(log, "ck-run-1")
    assert body is not None and lines == ["done"]
    back = tmp_path / "back"
    assert unpack(sealed.open_block(body, key, "ck-run-1"), back) == ["app/inventory.yml"]
    assert (back / "artifacts/blocks/app/inventory.yml").read_text() == INVENTORY

    tampered = body[:40] + ("A" if body[40] != "A" else "B") + body[41:]
    for wrong in (
        lambda: sealed.open_block(tampered, key, "ck-run-1"),
        lambda: sealed.open_block(body, sealed.new_key(), "ck-run-1"),
        lambda: sealed.open_block(body, key, "ck-run-2"),  # another run's block
        lambda: sealed.open_block(body[:-8], key, "ck-run-1"),
    ):
        with pytest.raises(ValueError, match="sealed artifacts"):
            wrong()
    assert sealed.split_log(log, "ck-run-2") == (["done"], None)
    assert sealed.MAX_PACKED == MAX_PACKED


def test_run_script_counts_a_file_the_action_writes_at_once(tmp_path: Path) -> None:
    """A file written in the same file-clock tick as the script's mark is still counted (it
    was missed about half the time): twenty runs, each writing one file first thing."""
    for attempt in range(20):
        run = tmp_path / str(attempt)
        (run / "artifacts").mkdir(parents=True)
        env = dict(
            os.environ,
            CRATEKEEPER_ARTIFACTS_DIR=str(run / "artifacts"),
            CRATEKEEPER_EVENTS_FILE=str(run / "events.jsonl"),
            CRATEKEEPER_TERMINATION_LOG=str(run / "termination-log"),
        )
        action = 'touch "$CRATEKEEPER_ARTIFACTS_DIR/inventory.yml"'
        subprocess.run(
            ["/bin/sh", "-c", RUN_SCRIPT, "cratekeeper-run", "/bin/sh", "-c", action],
            env=env,
            check=True,
        )
        message = (run / "termination-log").read_text()
        assert message == '{"event": "artifacts", "written": 1}\n', f"run {attempt}: {message!r}"
        assert sorted(p.name for p in run.iterdir()) == [
            "artifacts",
            "events.jsonl.start",
            "termination-log",
        ]


def _sealed_log(tree: Path, key: bytes, run_id: str) -> bytes:
    (tree / "app").mkdir(parents=True)
    (tree / "app" / "inventory.yml").write_text(INVENTORY)
    lines = sealed.seal(sealed.pack_tree(tree), key, run_id)
    return ("PLAY [deploy]\nPLAY RECAP ok=4\n" + "\n".join(lines) + "\n").encode()


@pytest.mark.asyncio
async def test_a_jobs_sealed_artifacts_are_brought_back_into_the_export(
    kube_emulator: KubeEmulator, kube: Kube, namespace: str, tmp_path: Path, run_task: list[Any]
) -> None:
    request = make_request(tmp_path / "export")
    name = run_name(request, namespace)
    task = start(run_task, runner_for(kube, namespace), request)
    job = await running_job(kube_emulator, namespace, name)
    secret = kube_emulator.get(SECRETS, name, namespace=namespace)
    assert secret is not None
    key = base64.b64decode(secret["data"]["artifacts.key"])
    assert len(key) == 32 and secret["data"]["artifacts.key"] not in json.dumps(job)
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CRATEKEEPER_RUN_ID"] == name
    assert env["CRATEKEEPER_ARTIFACTS_KEY"] == "/run/cratekeeper/artifacts.key"

    log = _sealed_log(tmp_path / "pod", key, name)
    terminated = {"terminated": {"exitCode": 0, "message": STATS + "\n"}}
    make_pod(kube_emulator, namespace, name, main=terminated, logs={MAIN: log})
    finish_job(kube_emulator, namespace, name, "Complete")
    result = await asyncio.wait_for(task, 10)

    assert result.status == "succeeded"
    kept = tmp_path / "export" / "artifacts/blocks/app/inventory.yml"
    assert kept.read_text() == INVENTORY
    assert result.log_tail[:2] == ("PLAY [deploy]", "PLAY RECAP ok=4")
    assert "cratekeeper: brought back 1 artifact file(s) from the Job" in result.log_tail
    assert not any("cratekeeper-artifacts" in line for line in result.log_tail)
    assert len(result.log_tail) == 3


@pytest.mark.asyncio
async def test_a_block_not_sealed_with_the_runs_key_is_refused_and_fails_the_run(
    kube_emulator: KubeEmulator, kube: Kube, namespace: str, tmp_path: Path, run_task: list[Any]
) -> None:
    request = make_request(tmp_path / "export")
    name = run_name(request, namespace)
    task = start(run_task, runner_for(kube, namespace), request)
    await running_job(kube_emulator, namespace, name)
    log = _sealed_log(tmp_path / "pod", sealed.new_key(), name)
    terminated = {"terminated": {"exitCode": 0, "message": STATS + "\n"}}
    make_pod(kube_emulator, namespace, name, main=terminated, logs={MAIN: log})
    finish_job(kube_emulator, namespace, name, "Complete")
    result = await asyncio.wait_for(task, 10)

    assert result.status == "failed"  # the playbook succeeded, but what it wrote is lost
    assert result.error is not None and result.error.reason == "ArtifactsNotKept"
    assert not (tmp_path / "export" / "artifacts").exists()
    assert any(
        "artifacts were not kept" in line and "do not decrypt" in line for line in result.log_tail
    )


@pytest.mark.asyncio
async def test_a_tree_over_the_bound_fails_the_run_with_its_size_the_limit_and_what_to_do(
    kube_emulator: KubeEmulator, kube: Kube, namespace: str, tmp_path: Path, run_task: list[Any]
) -> None:
    """The sealer for real on a tree that packs past 512 KiB: the Job succeeded, but the run
    fails as the local runner's does, and the kept artifacts stay as they were."""
    request = make_request(tmp_path / "export")
    name = run_name(request, namespace)
    task = start(run_task, runner_for(kube, namespace), request)
    job = await running_job(kube_emulator, namespace, name)
    key = base64.b64decode(
        kube_emulator.get(SECRETS, name, namespace=namespace)["data"][ARTIFACTS_KEY]
    )
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    action = (
        'mkdir -p "$CRATEKEEPER_ARTIFACTS_DIR" && echo "PLAY RECAP ok=4" && '
        'head -c "$1" /dev/urandom > "$CRATEKEEPER_ARTIFACTS_DIR/chart.tgz"'
    )
    code, log = _run_script(tmp_path / "pod", key, env["CRATEKEEPER_RUN_ID"], action, "600000")
    assert code == 0 and "cratekeeper-artifacts-begin" not in log, log
    terminated = {"terminated": {"exitCode": 0, "message": STATS + "\n"}}
    make_pod(kube_emulator, namespace, name, main=terminated, logs={MAIN: log.encode()})
    finish_job(kube_emulator, namespace, name, "Complete")
    result = await asyncio.wait_for(task, 10)

    assert result.status == "failed" and result.counts.ok == 4
    assert result.error is not None and result.error.reason == "ArtifactsNotKept"
    why = result.failure_reason or ""
    assert re.search(r"the Job's artifacts/blocks/ packs to \d+ bytes, over the 524288 bytes", why)
    assert "app/chart.tgz (600000 bytes)" in why and "Keep large outputs outside" in why
    assert f"cratekeeper: {why}" in result.log_tail
    assert not (tmp_path / "export" / "artifacts").exists()
