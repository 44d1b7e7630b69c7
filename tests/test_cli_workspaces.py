"""The CLI on the operator's Workspaces (get, reconcile workspace, suspend, resume, history,
logs, diff), with the operator running against the emulated API and real Git.

Runs go to the recording Runner double (the Runner protocol is the boundary): these tests are
about what the CLI and the operator say and do, not about Ansible. The block is in the real
test registry (the operator resolves its digest there).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.cli import main
from controller.settings import Settings
from tests.support.gitrepo import GitRepo
from tests.support.kube_emulator import WORKSPACES, KubeEmulator
from tests.support.operator import (
    app_block,
    applied,
    condition,
    namespace,
    reasons,
    running,
    settings,
    status_of,
    until_status,
    workspace,
)
from tests.support.recording_runner import Outcome, RecordingRunner

__all__ = ["app_block", "namespace", "settings"]  # fixtures of tests/support/operator.py

TIMEOUT = 30.0
ROOT = Path(__file__).resolve().parent.parent


def workspace_poly(block: str, message: str) -> str:
    app = {"name": "hello", "from": f"{block}:1.1.0", "config": {"message": message}}
    return yaml.safe_dump({"name": "acme-staging-1", "organization": "acme", "blocks": [app]})


@pytest.fixture
def repo(tmp_path: Path, kubeconfig: Path, app_block: str) -> GitRepo:
    repo = GitRepo(tmp_path / "staging")
    repo.write("artifacts/secrets/kubeconfig.yml", kubeconfig.read_text())
    repo.write("workspace.poly", workspace_poly(app_block, "one"))
    repo.commit("hello: one")
    return repo


class Cli:
    """``cratekeeper`` against the emulator, run in a thread (it runs its own event loop)."""

    def __init__(self, capsys: pytest.CaptureFixture[str], kubeconfig: Path, namespace: str):
        self.capsys, self.flags = capsys, ["--kubeconfig", str(kubeconfig), "-n", namespace]

    async def __call__(self, *argv: str) -> tuple[int, str]:
        self.capsys.readouterr()
        code = await asyncio.to_thread(main, [*argv, *self.flags])
        out, _ = self.capsys.readouterr()
        return code, out


def status(emulator: KubeEmulator, namespace: str) -> dict[str, Any]:
    return status_of(emulator, namespace, "ws")


async def applied_at(emulator: KubeEmulator, namespace: str, sha: str) -> dict[str, Any]:
    return await until_status(emulator, namespace, "ws", applied(sha), timeout=TIMEOUT)


@contextlib.asynccontextmanager
async def applying(
    emulator: KubeEmulator,
    settings: Settings,
    kubeconfig: Path,
    namespace: str,
    repo: GitRepo,
    runner: RecordingRunner,
) -> AsyncIterator[None]:
    """The operator running, Workspace ``ws`` (interval 1h) on ``repo``, its head applied."""
    async with running(settings, kubeconfig, namespace, runner.factory):
        emulator.create(WORKSPACES, workspace("ws", f"file://{repo.path}", "1h"), namespace)
        await applied_at(emulator, namespace, repo.head())
        yield


def test_get_reconcile_and_history_of_a_workspace_the_operator_applied(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    repo: GitRepo,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    app_block: str,
) -> None:
    runner = RecordingRunner(Outcome(log=("PLAY [deploy]", "changed: [localhost]")))
    cli = Cli(capsys, kubeconfig, namespace)
    head = repo.head()

    async def scenario() -> None:
        async with applying(kube_emulator, settings, kubeconfig, namespace, repo, runner):
            code, out = await cli("get", "workspaces")
            header, row = out.splitlines()
            assert header.split() == [
                "NAME", "READY", "SUSPENDED", "REVISION", "BLOCKS", "AGE", "MESSAGE"
            ]  # fmt: skip
            assert (code, row.split()[:5]) == (0, ["ws", "True", "False", head[:12], "1/1"])
            code, out = await cli("get", "ws", "-o", "wide")
            assert f"file://{repo.path}" in out and "branch:main" in out
            code, out = await cli("get", "workspaces", "-A")
            assert out.splitlines()[0].split()[:2] == ["NAMESPACE", "NAME"]
            assert [namespace, "ws", "True"] in [line.split()[:3] for line in out.splitlines()]
            code, out = await cli("get", "workspaces", "ws", "-o", "json")
            assert json.loads(out)["items"][0]["status"]["lastAppliedRevision"] == head

            # Nothing changed in Git: the request is still answered, nothing runs again.
            code, out = await cli("reconcile", "workspace", "ws", "--timeout", "30")
            assert code == 0, out
            assert f"✔ applied revision {head[:12]}" in out
            now = status(kube_emulator, namespace)
            assert now["lastHandledReconcileAt"]
            assert len(runner.runs) == 1 and len(now["history"]) == 1
            assert "ReconcileHandled" in reasons(kube_emulator, namespace)

            # A new commit, then a re-apply: every block again, recorded as a re-apply.
            repo.write("workspace.poly", workspace_poly(app_block, "two"))
            two = repo.commit("hello: two")
            code, out = await cli("reconcile", "ws", "ws", "--with-source")
            assert code == 0 and status(kube_emulator, namespace)["lastAppliedRevision"] == two
            code, out = await cli("reconcile", "workspace", "ws", "--reapply")
            assert code == 0, out
            assert len(runner.runs) == 3 and runner.runs[-1].request.block == "hello"
            history = status(kube_emulator, namespace)["history"]
            assert [(h["revision"], h.get("reapply", False)) for h in history] == [
                (two, True),
                (two, False),
                (head, False),
            ]
            assert history[0]["changes"][0]["reason"] == "reapply"

            runner.script(Outcome("failed", failed_task="Deployment"))
            code, out = await cli("reconcile", "workspace", "ws", "--reapply")
            assert code == 1 and "✗ not ready: RunFailed" in out, out
            now = status(kube_emulator, namespace)
            assert now["lastHandledReapplyAt"] != now["lastHandledReconcileAt"]  # asked for still
            runner.script(Outcome(log=("PLAY [deploy]", "changed: [localhost]")))
            await kube_emulator.until(
                lambda: (
                    status(kube_emulator, namespace).get("lastHandledReapplyAt")
                    == now["lastHandledReconcileAt"]
                ),
                timeout=TIMEOUT,
            )  # the retry succeeded: answered
            history = status(kube_emulator, namespace)["history"]
            assert [(h["result"], h["reapply"]) for h in history[:2]] == [
                ("Succeeded", True),
                ("Failed", True),
            ]

            code, out = await cli("history", "ws")
            lines = out.splitlines()
            assert lines[0].split()[:3] == ["REVISION", "RESULT", "ATTEMPTS"]
            assert "Succeeded (reapply)" in lines[1] and "(re-applied)" in lines[1]
            assert "hello: two" in lines[2]
            code, out = await cli("history", "ws", "-o", "yaml")
            assert [h["revision"] for h in yaml.safe_load(out)] == [two, two, two, head]

            code, out = await cli("logs", "ws", "--block", "hello")
            assert code == 0 and f"revision {two[:12]} Succeeded" in out
            assert "changed: [localhost]" in out  # the recorded tail (the local runner's)
            assert not history[1]["changes"][0]["logTail"]  # kept in the newest entry only

    asyncio.run(scenario())


def test_suspend_is_visible_and_resume_reconciles_again(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    repo: GitRepo,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    app_block: str,
) -> None:
    runner = RecordingRunner()
    cli = Cli(capsys, kubeconfig, namespace)

    async def scenario() -> None:
        async with applying(kube_emulator, settings, kubeconfig, namespace, repo, runner):
            watch = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "controller.cli",
                "get",
                "workspaces",
                "-w",
                *cli.flags,
                stdout=asyncio.subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            code, out = await cli("suspend", "ws")
            assert code == 0 and "✔ suspended" in out, out
            assert watch.stdout is not None
            try:  # -w prints the table again when the Workspace changes
                async with asyncio.timeout(TIMEOUT):
                    while (await watch.stdout.readline()).split()[:3] != [b"ws", b"True", b"True"]:
                        pass
            finally:
                watch.kill()
                await watch.wait()
            now = status(kube_emulator, namespace)
            assert (condition(now, "Suspended")["status"], condition(now, "Ready")["status"]) == (
                "True",
                "True",
            )
            assert condition(now, "Ready")["message"].startswith("suspended (spec.suspend)")
            code, out = await cli("get", "workspaces")
            assert out.splitlines()[1].split()[:3] == ["ws", "True", "True"]
            code, out = await cli("reconcile", "workspace", "ws")
            assert code == 1  # refused: nothing would answer

            repo.write("workspace.poly", workspace_poly(app_block, "two"))
            two = repo.commit("hello: two")
            code, out = await cli("resume", "ws")
            assert code == 0 and "✔ resumed" in out, out
            now = await applied_at(kube_emulator, namespace, two)
            assert condition(now, "Suspended")["status"] == "False"
            assert condition(now, "Ready")["message"] == f"Applied revision {two[:12]}"
            posted = reasons(kube_emulator, namespace)
            assert "Suspended" in posted and "Resumed" in posted

    asyncio.run(scenario())


def test_diff_says_what_would_run_with_plan_exit_codes(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    repo: GitRepo,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    app_block: str,
) -> None:
    runner = RecordingRunner()
    cli = Cli(capsys, kubeconfig, namespace)
    head = repo.head()

    async def scenario() -> None:
        async with applying(kube_emulator, settings, kubeconfig, namespace, repo, runner):
            code, out = await cli("diff", "ws")
            assert code == 0 and "nothing to run" in out, out

            repo.write("workspace.poly", workspace_poly(app_block, "two"))
            two = repo.commit("hello: two")  # not yet seen by the operator (interval 1h)
            code, out = await cli("diff", "ws")
            assert code == 2, out
            assert f"{head[:7]} -> {two[:7]}" in out and "hello" in out
            code, out = await cli("diff", "ws", str(repo.path), "--rev", "HEAD~1", "-o", "json")
            assert (code, json.loads(out)["runs"]) == (0, [])
            code, out = await cli("diff", "nope")
            assert code == 1

    asyncio.run(scenario())
