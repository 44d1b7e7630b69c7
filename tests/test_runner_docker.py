"""The docker runner: the test execution image on a real engine, against the emulated cluster.

The container shares the host's network (loopback only here), so the kubeconfig's server
``http://127.0.0.1:PORT`` of ``kube_emulator`` is the same address inside and outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from controller.errors import RunError
from controller.runners.base import ActionRequest, RunResult
from controller.runners.docker import LABEL, DockerRunner, log_lines
from tests.support.actions import (
    EXAMPLES,
    HEADER,
    REF,
    a_block,
    check_contract,
    contract_request,
    contract_workspace,
    request,
    workspace_with_block,
)
from tests.support.kube_emulator import KubeEmulator

if TYPE_CHECKING:
    from tests.support.docker_engine import DockerEngine
SHM = Path("/dev/shm")


def kubeconfig_files(uid: int, server: str) -> set[Path]:
    """Kubeconfig files for ``server`` handed to ``uid``: other sessions' runners share
    /dev/shm, each with its own emulator."""
    found = set()
    for path in SHM.glob("cratekeeper-kubeconfig-*"):
        with contextlib.suppress(FileNotFoundError):  # removed by its run meanwhile
            if path.stat().st_uid == uid and server in path.read_text(errors="replace"):
                found.add(path)
    return found


@pytest.fixture
def runner(
    docker_engine: DockerEngine, execution_image: str, kube_emulator: KubeEmulator, tmp_path: Path
) -> Iterator[DockerRunner]:
    """A runner on the test engine, host network; after the test nothing of its runs is left."""
    runs = tmp_path / "runs"
    runs.mkdir()
    made = DockerRunner(
        execution_image, client=docker_engine.client, network_mode="host", run_root=runs
    )
    uid = int(made.user.split(":")[0])
    before = kubeconfig_files(uid, kube_emulator.url)
    yield made
    assert docker_engine.containers(LABEL) == [], "a container outlived its run"
    assert list(runs.iterdir()) == [], "a run left its directory behind"
    assert kubeconfig_files(uid, kube_emulator.url) <= before, "a run left its kubeconfig behind"


def run(runner: DockerRunner, req: ActionRequest, lines: list[str] | None = None) -> RunResult:
    return asyncio.run(runner.run(req, lines.append if lines is not None else None))


def test_the_example_deploy_creates_the_pinned_deployment_from_a_container(
    tmp_path: Path, runner: DockerRunner, kube_emulator: KubeEmulator, kubeconfig: Path
) -> None:
    root = workspace_with_block(tmp_path, EXAMPLES / "blocks" / "app-deploy")
    lines: list[str] = []
    result = run(runner, request(root, kubeconfig, "acme-app-docker"), lines)
    assert result.status == "succeeded", "\n".join(result.log_tail)
    assert result.exit_code == 0
    assert result.counts.failed == 0 and result.counts.changed >= 3
    deployment = kube_emulator.get("apps/v1/deployments", "acme-app", namespace="acme-app-docker")
    assert deployment is not None
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/acme/myapp:1.2.0"
    assert kube_emulator.get("v1/services", "acme-app", namespace="acme-app-docker")
    assert any("Deployment" in line for line in lines)  # streamed line by line
    assert result.job_name is not None and result.job_name.startswith("cratekeeper-acme-")

    again = run(runner, request(root, kubeconfig, "acme-app-docker"))
    assert (again.status, again.counts.changed) == ("succeeded", 0)


def test_the_action_sees_the_mounted_kubeconfig_and_a_writable_workspace_in_a_locked_down_container(
    tmp_path: Path, runner: DockerRunner, kubeconfig: Path
) -> None:
    block = a_block(
        tmp_path,
        HEADER
        + """\
    - ansible.builtin.command: touch /workspace/artifacts/blocks/app/written
      register: workspace_write
      failed_when: false
    - ansible.builtin.command: touch /opt/written
      register: root_write
      failed_when: false
    - ansible.builtin.command: id -u
      register: uid
    - ansible.builtin.assert:
        that:
          - lookup('env', 'KUBECONFIG') == '/cratekeeper/secrets/kubeconfig'
          - lookup('env', 'K8S_AUTH_KUBECONFIG') == lookup('env', 'KUBECONFIG')
          - lookup('file', lookup('env', 'KUBECONFIG')) is search('kind. Config')
          - lookup('env', 'HOME') == '/cratekeeper/run/home'
          - playbook_dir == '/workspace/blocks/registry.acme-corp.com/acme/apps/app-deploy'
          - block.name == 'app' and block.version == '1.2.0' and block.config.namespace == 'ns1'
          - workspace.name == 'acme-staging-1' and workspace.organization == 'acme'
          - lookup('env', 'POLYCRATE_ACTION') == 'deploy'
          - uid.stdout != '0'
          - workspace_write.rc == 0 and root_write.rc != 0
""",
    )
    root = workspace_with_block(tmp_path, block)
    result = run(runner, request(root, kubeconfig, "ns1", playbook="play.yml"))
    assert result.status == "succeeded", "\n".join(result.log_tail)
    # The workspace is writable as under Polycrate: the block's artifacts reach the export.
    assert (root / "artifacts/blocks/app/written").exists()


def test_a_failing_playbook_is_a_failed_result_naming_the_task(
    tmp_path: Path, runner: DockerRunner, kubeconfig: Path
) -> None:
    block = a_block(
        tmp_path, HEADER + "    - name: Break on purpose\n      ansible.builtin.fail: {msg: boom}\n"
    )
    root = workspace_with_block(tmp_path, block)
    result = run(runner, request(root, kubeconfig, "ns", playbook="play.yml"))
    assert result.status == "failed"
    assert result.failed_task == "Break on purpose"
    assert result.counts.failed == 1
    assert result.exit_code == 2
    assert any("boom" in line for line in result.log_tail)


def test_a_run_past_its_timeout_is_stopped_and_its_container_removed(
    tmp_path: Path, runner: DockerRunner, kubeconfig: Path, docker_engine: DockerEngine
) -> None:
    block = a_block(tmp_path, HEADER + "    - ansible.builtin.pause: {seconds: 120}\n")
    root = workspace_with_block(tmp_path, block)
    result = run(runner, request(root, kubeconfig, "ns", playbook="play.yml", timeout=3.0))
    assert result.status == "timedOut"
    assert result.exit_code is None
    assert "timeout" in result.log_tail[-1]
    assert docker_engine.containers(LABEL) == []


def test_a_cancelled_run_removes_its_container(
    tmp_path: Path, runner: DockerRunner, kubeconfig: Path, docker_engine: DockerEngine
) -> None:
    block = a_block(tmp_path, HEADER + "    - ansible.builtin.pause: {seconds: 120}\n")
    root = workspace_with_block(tmp_path, block)

    async def cancel_once_running() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(
            runner.run(
                request(root, kubeconfig, "ns", playbook="play.yml"), lambda _: started.set()
            )
        )
        await asyncio.wait_for(started.wait(), timeout=60)
        assert docker_engine.containers(LABEL), "the run's container should be running"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_once_running())
    assert docker_engine.containers(LABEL) == []


def test_kubeconfig_credentials_are_redacted_from_the_container_log(
    tmp_path: Path, runner: DockerRunner, kubeconfig: Path
) -> None:
    block = a_block(
        tmp_path,
        HEADER + "    - ansible.builtin.debug:\n"
        "        msg: \"{{ lookup('file', lookup('env', 'KUBECONFIG')) }}\"\n",
    )
    root = workspace_with_block(tmp_path, block)
    secret = "s3cr3t-t0ken-value"
    kc = tmp_path / "kc"
    kc.write_text(kubeconfig.read_text().replace("token: ", f"token: {secret}-", 1))
    result = run(runner, request(root, kc, "ns", playbook="play.yml"))
    assert result.status == "succeeded", "\n".join(result.log_tail)
    text = "\n".join(result.log_tail)
    assert "Config" in text
    assert secret not in text


def test_the_action_never_runs_as_root_nor_as_a_named_user() -> None:
    with pytest.raises(RunError, match="must not run as root"):
        DockerRunner("img", client=object(), user="0:0")
    with pytest.raises(RunError, match="numeric"):
        DockerRunner("img", client=object(), user="ansible")
    uid = os.geteuid() or 1000  # root may hand files to anyone; others only to themselves
    assert DockerRunner("img", client=object(), user=str(uid)).user == f"{uid}:{uid}"


def test_log_chunks_are_reassembled_into_lines() -> None:
    text = "PLAY [x] ****\nTASK [café] ok\npartial"
    data = text.encode()
    chunks = [data[i : i + 3] for i in range(0, len(data), 3)]  # cuts inside 'é' too
    assert list(log_lines(chunks)) == ["PLAY [x] ****", "TASK [café] ok", "partial"]


def test_a_missing_image_with_pulls_disabled_says_how_to_fix_it(
    tmp_path: Path, docker_engine: DockerEngine, kubeconfig: Path
) -> None:
    block = a_block(tmp_path, HEADER + "    - ansible.builtin.debug: {msg: never runs}\n")
    root = workspace_with_block(tmp_path, block)
    missing = DockerRunner("cratekeeper-test-missing:0", client=docker_engine.client, pull="never")
    with pytest.raises(RunError, match="not present on the engine"):
        run(missing, request(root, kubeconfig, "ns", playbook="play.yml"))


def test_the_action_gets_polycrates_runtime_contract_in_the_container(
    tmp_path: Path, runner: DockerRunner, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRATEKEEPER_TEST_LEAK", "the controller's own environment")
    root = contract_workspace(tmp_path)
    result = run(runner, contract_request(root, kubeconfig))
    assert result.status == "succeeded", "\n".join(result.log_tail)
    seen = json.loads((root / "artifacts/blocks/app/seen.json").read_text())
    check_contract(seen, "/workspace")
    assert seen["env"]["KUBECONFIG"] == "/cratekeeper/secrets/kubeconfig"


def test_a_script_action_runs_in_the_container_from_the_workdir(
    tmp_path: Path, runner: DockerRunner, kubeconfig: Path
) -> None:
    block = a_block(tmp_path, HEADER + "    - ansible.builtin.debug: {msg: '{{ block.name }}'}\n")
    root = workspace_with_block(tmp_path, block)
    out = "$POLYCRATE_WORKSPACE/artifacts/blocks/app/script.txt"
    lines = [f'echo "block=$POLYCRATE_BLOCK cwd=$(pwd)" > "{out}"', "ansible-playbook play.yml"]
    result = run(runner, request(root, kubeconfig, "ns", script=lines))
    assert result.status == "succeeded", "\n".join(result.log_tail)
    written = (root / "artifacts/blocks/app/script.txt").read_text()
    assert written == f"block=app cwd=/workspace/blocks/{REF.name}\n"
    assert any('"msg": "app"' in line for line in result.log_tail)


def test_a_playbook_matching_no_host_fails_in_the_container_too(
    tmp_path: Path, runner: DockerRunner, kubeconfig: Path
) -> None:
    block = a_block(tmp_path, "- hosts: all\n  tasks:\n    - ansible.builtin.ping: {}\n")
    root = workspace_with_block(tmp_path, block)
    result = run(runner, request(root, kubeconfig, "ns", playbook="play.yml"))
    assert (result.status, result.exit_code) == ("failed", 0)
    assert result.failure_reason is not None and "matched no host" in result.failure_reason


def test_a_container_an_earlier_controller_left_running_ends_before_the_next_run(
    tmp_path: Path,
    runner: DockerRunner,
    docker_engine: DockerEngine,
    execution_image: str,
    kubeconfig: Path,
) -> None:
    labels = {LABEL: "docker", "cratekeeper.dev/workspace": "acme-staging-1"}
    left = docker_engine.client.containers.run(
        execution_image, ["sleep", "3"], labels=labels, detach=True, network_mode="none"
    )
    try:
        root = workspace_with_block(tmp_path, a_block(tmp_path, HEADER + "    - ping: {}\n"))
        result = run(runner, request(root, kubeconfig, "ns", playbook="play.yml"))
        left.reload()
        assert left.status == "exited"  # it ended before this run started
        assert result.status == "succeeded", "\n".join(result.log_tail)
        assert f"container {left.name} of this workspace was still running" in result.log_tail[0]
    finally:
        left.remove(force=True)
