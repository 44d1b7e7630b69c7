"""What the status says, end to end, in the operator (Kopf on the emulated API) and in the
CLI's state file: one history entry per (revision, result), blocks of the applied revision, the
failed step's reason, and a stored status that does not validate stopping everything.

Real Git and registry everywhere. The operator's runs are the recording double's (a run of a
commit labelled "broken" fails, as a playbook failing at a task would): these scenarios are
about what the operator records. The CLI has no other runner: its scenario runs real Ansible
(a playbook that appends to a marker file and fails when the file's directory is missing).
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.cli import main
from controller.refs import BlockRef
from controller.registry import RegistryClient, RegistryOptions, push_block
from controller.runners.base import ActionRequest
from controller.settings import Settings
from tests.support.gitrepo import GitRepo
from tests.support.kube_emulator import WORKSPACES, KubeEmulator
from tests.support.oci_registry import Registry
from tests.support.operator import (
    app_block,
    applied,
    condition,
    failed_with,
    http,
    namespace,
    ready,
    running,
    settings,
    status_of,
    ticks,
    until_status,
    workspace,
    workspace_poly,
)
from tests.support.recording_runner import Outcome, RecordingRunner

__all__ = ["app_block", "namespace", "settings"]  # fixtures of tests/support/operator.py

# Appends to a marker file: fails at once when the marker's directory does not exist.
PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.shell: echo "run {{ block.config.label }}" >> {{ block.config.marker }}
"""


@pytest.fixture(scope="module")
def marker_block(oci_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    name = f"{oci_registry.host}/acme/tests/status-marker"
    block = tmp_path_factory.mktemp("status-marker")
    (block / "block.poly").write_text(
        yaml.safe_dump(
            {
                "name": name,
                "version": "1.0.0",
                "kind": "generic",
                "config": {"marker": "", "label": ""},
                "actions": [{"name": "deploy", "playbook": "deploy.yml"}],
            }
        )
    )
    (block / "deploy.yml").write_text(PLAYBOOK)
    client = RegistryClient(RegistryOptions(insecure_registries=(oci_registry.host,)))
    push_block(block, BlockRef.parse(f"{name}:1.0.0"), client=client)
    return name


class Repo:
    """A workspace of one block in Git; each commit sets the block's label (and marker)."""

    def __init__(self, path: Path, block: str, kubeconfig: Path, version: str) -> None:
        self.repo, self.block, self.version = GitRepo(path), block, version
        self.repo.write("artifacts/secrets/kubeconfig.yml", kubeconfig.read_text())

    def commit(self, label: str, version: str | None = None, **config: str) -> str:
        pin = f"{self.block}:{version or self.version}"
        blocks = [{"name": "app", "from": pin, "config": {"label": label, **config}}]
        self.repo.write("workspace.poly", workspace_poly(blocks))
        return self.repo.commit(f"app: {label}")

    @property
    def url(self) -> str:
        return f"file://{self.repo.path}"


def fails_when_broken(request: ActionRequest) -> Outcome:
    """A run of the commit labelled "broken" fails at a task; any other succeeds."""
    if request.config.get("label") == "broken":
        return Outcome("failed", failed_task="marker", log=("fatal: [localhost]: FAILED!",))
    return Outcome(log=("changed: [localhost]",))


def labels(runner: RecordingRunner) -> list[str]:
    """The label of each recorded run's commit, in order."""
    return [str(r.request.config["label"]) for r in runner.runs]


def warnings(emulator: KubeEmulator, namespace: str, revision: str) -> list[dict[str, Any]]:
    """The Warning events posted about ``revision``."""
    return [
        e
        for e in emulator.list_objects("v1/events", namespace)
        if e.get("type") == "Warning" and revision[:12] in str(e.get("message", ""))
    ]


def attempts(minimum: int) -> Any:
    return lambda s: bool(s.get("history")) and s["history"][0].get("attempts", 1) >= minimum


def test_a_failing_revision_retried_keeps_one_entry_and_a_revert_shows_every_block_applied(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    settings: Settings,
    app_block: str,
    tmp_path: Path,
) -> None:
    repo = Repo(tmp_path / "ws", app_block, kubeconfig, "1.1.0")
    good = repo.commit("good")
    runner = RecordingRunner(fails_when_broken)

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace, runner.factory):
            kube_emulator.create(WORKSPACES, workspace("ws", repo.url), namespace)
            await until_status(kube_emulator, namespace, "ws", applied(good))
            relabelled = repo.commit("relabelled")
            before = await until_status(kube_emulator, namespace, "ws", applied(relabelled))

            broken = repo.commit("broken")
            status = await until_status(kube_emulator, namespace, "ws", attempts(4))
            head, *rest = status["history"]
            # The earlier record survives the retry loop (its log tail stays with the newest).
            assert rest == [
                {**e, "changes": [{**c, "logTail": []} for c in e["changes"]]}
                for e in before["history"]
            ]
            assert (head["revision"], head["result"]) == (broken, "Failed")
            assert head["lastAttempt"] >= head["started"]
            assert ready(status)["reason"] == "RunFailed"
            stalled = condition(status, "Stalled")
            assert (stalled["status"], stalled["reason"]) == ("False", "ProgressingWithRetry")
            (block,) = status["blocks"]
            assert (block["phase"], status["blocksSummary"]) == ("Failed", "0/1")
            # One event for the failure, not one per retry.
            assert len(warnings(kube_emulator, namespace, broken)) == 1

            tried = len(runner.runs)
            assert labels(runner)[2:] == ["broken"] * (tried - 2)  # one run per attempt
            assert tried - 2 >= head["attempts"] >= 4
            reverted = repo.commit("relabelled")  # back to the applied config
            status = await until_status(kube_emulator, namespace, "ws", applied(reverted))
            (block,) = status["blocks"]
            assert (block["phase"], block["digest"]) == ("Applied", before["blocks"][0]["digest"])
            assert block["configHash"] == before["blocks"][0]["configHash"]
            assert status["blocksSummary"] == "1/1"

    asyncio.run(scenario())
    ran = labels(runner)
    assert ran[:2] == ["good", "relabelled"] and set(ran[2:]) == {"broken"}  # revert: no run


def test_a_missing_block_version_is_a_pull_reason_counted_as_a_pull_error(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    settings: Settings,
    app_block: str,
    tmp_path: Path,
) -> None:
    repo = Repo(tmp_path / "ws", app_block, kubeconfig, "1.1.0")
    good = repo.commit("good")
    runner = RecordingRunner()

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace, runner.factory) as operator:
            kube_emulator.create(WORKSPACES, workspace("ws", repo.url), namespace)
            await until_status(kube_emulator, namespace, "ws", applied(good))
            repo.commit("bad pin", version="9.9.9")
            status = await until_status(
                kube_emulator, namespace, "ws", failed_with("BlockNotFound")
            )
            assert "9.9.9" in ready(status)["message"]
            assert status["lastAppliedRevision"] == good
            probes = f"http://127.0.0.1:{operator.bound['metrics']}"
            _, metrics = await http("GET", probes + "/metrics")
            series = (
                f'cratekeeper_pull_errors_total{{name="ws",namespace="{namespace}",'
                'reason="BlockNotFound"}'
            )
            assert series in metrics

    asyncio.run(scenario())
    assert labels(runner) == ["good"]  # the missing version ran nothing


def test_an_unreadable_stored_status_stalls_and_runs_nothing_until_repaired(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    settings: Settings,
    app_block: str,
    tmp_path: Path,
) -> None:
    repo = Repo(tmp_path / "ws", app_block, kubeconfig, "1.1.0")
    good = repo.commit("good")
    runner = RecordingRunner()
    path = f"{kube_emulator.url}/apis/cratekeeper.dev/v1alpha1/namespaces/{namespace}"
    path += "/workspaces/ws/status"

    async def edit_status(patch: dict[str, Any]) -> None:
        """As ``kubectl edit --subresource=status`` would."""
        merge = {"Content-Type": "application/merge-patch+json"}
        code, text = await http("PATCH", path, json={"status": patch}, headers=merge)
        assert code == 200, text

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace, runner.factory) as operator:
            kube_emulator.create(WORKSPACES, workspace("ws", repo.url), namespace)
            before = await until_status(kube_emulator, namespace, "ws", applied(good))
            await edit_status({"lastAppliedRevision": 42})
            status = await until_status(
                kube_emulator, namespace, "ws", failed_with("StatusUnreadable")
            )
            assert "lastAppliedRevision" in ready(status)["message"]
            stalled = condition(status, "Stalled")
            assert (stalled["status"], stalled["reason"]) == ("True", "StatusUnreadable")
            # Nothing ran, nothing else was rewritten: a person can repair it.
            assert status["lastAppliedRevision"] == 42
            assert status["history"] == before["history"]
            assert status["blocks"] == before["blocks"]
            await ticks(operator, namespace, "ws", 2)
            assert labels(runner) == ["good"]

            await edit_status({"lastAppliedRevision": good})
            status = await until_status(kube_emulator, namespace, "ws", applied(good))
            assert status["history"] == before["history"]

    asyncio.run(scenario())
    assert labels(runner) == ["good"]  # never run again
    assert status_of(kube_emulator, namespace, "ws")["blocksSummary"] == "1/1"


def test_the_cli_state_after_retries_and_a_revert_shows_one_entry_and_every_block_applied(
    kubeconfig: Path,
    oci_registry: Registry,
    marker_block: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo = Repo(tmp_path / "ws", marker_block, kubeconfig, "1.0.0")
    marker, state = tmp_path / "marker.log", tmp_path / "state.json"
    command = ["--state", str(state), "--insecure-registry", oci_registry.host]

    def reconcile() -> int:
        return main(["reconcile", str(repo.repo.path), *command])

    def status() -> str:
        capsys.readouterr()
        assert main(["status", "--state", str(state)]) == 0
        return capsys.readouterr().out

    repo.commit("good", marker=str(marker))
    assert reconcile() == 0
    broken = repo.commit("broken", marker=str(tmp_path / "missing" / "marker.log"))
    assert (reconcile(), reconcile()) == (1, 1)  # a failure, then its retry
    recorded = json.loads(state.read_text())
    head = recorded["history"][0]
    assert (head["revision"], head["result"], head["attempts"]) == (broken, "Failed", 2)
    assert len(recorded["history"]) == 2
    assert "0/1" in status() and "Failed" in status()

    repo.commit("good", marker=str(marker))  # the revert: the applied config, nothing to run
    assert reconcile() == 0
    shown = status()
    assert "1/1" in shown and "Failed (2 attempts)" in shown
    assert [b["phase"] for b in json.loads(state.read_text())["blocks"]] == ["Applied"]
    assert marker.read_text().splitlines() == ["run good"]


def test_an_idle_operator_checks_each_tick_with_one_ls_remote_and_nothing_else(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    settings: Settings,
    app_block: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo = Repo(tmp_path / "ws", app_block, kubeconfig, "1.1.0")
    good = repo.commit("good")
    runner = RecordingRunner()
    log = tmp_path / "git-processes.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real = shutil.which("git")
    assert real is not None
    (bin_dir / "git").write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$*" >> {shlex.quote(str(log))}\n'
        f'exec {shlex.quote(real)} "$@"\n'
    )
    (bin_dir / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace, runner.factory) as operator:
            kube_emulator.create(WORKSPACES, workspace("ws", repo.url), namespace)
            await until_status(kube_emulator, namespace, "ws", applied(good))
            await ticks(operator, namespace, "ws", 1)  # the tick that recorded it is over
            log.write_text("")
            mark = kube_emulator.mark()
            await ticks(operator, namespace, "ws", 3)
            processes = log.read_text().splitlines()
            assert len(processes) >= 3
            assert all(" ls-remote " in f" {p} " for p in processes), processes
            assert not [r for r in kube_emulator.writes(since=mark) if r.namespace == namespace]

    asyncio.run(scenario())
    assert labels(runner) == ["good"]
