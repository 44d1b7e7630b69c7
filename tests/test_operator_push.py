"""From a push to "Reconciling" fast (issue 11's webhook target): a signed push that names the
Workspace's ref is fetched at once, without an ``ls-remote`` first; with every run slot busy a
pushed revision is said to wait for a slot as soon as its plan has a run, before its export and
pulls, which need no slot and go on meanwhile.

Kopf against the emulated API, real Git and registry; the runs are the recording double's
(tests/support/recording_runner.py): this is about the operator, not about Ansible.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
from pathlib import Path
from typing import Any

import aiohttp

from controller.api.spec import REQUESTED_AT
from controller.runners.base import ActionRequest
from controller.settings import Settings
from tests.support.gitrepo import GitRepo
from tests.support.kube_emulator import WORKSPACES, KubeEmulator
from tests.support.operator import (
    Staging,
    app,
    app_block,
    applied,
    namespace,
    patched,
    ready,
    running,
    settings,
    until_status,
    workspace,
    workspace_poly,
)
from tests.support.recording_runner import Outcome, RecordingRunner
from tests.test_source_cost import git_processes
from tests.test_source_push import commands

__all__ = ["app_block", "git_processes", "namespace", "settings"]  # fixtures of other modules
TOKEN = "push-token"  # a throwaway webhook token


def reconciling(status: dict[str, Any] | None) -> dict[str, str]:
    conditions = (status or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Reconciling"), {})


def test_a_queued_push_says_so_before_its_pull_and_the_pull_failing_is_still_reported(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    settings: Settings,
    app_block: str,
    tmp_path: Path,
) -> None:
    busy = Staging(GitRepo(tmp_path / "busy"), app_block, f"{namespace}-busy", kubeconfig)
    busy.repo.write(
        "workspace.poly", workspace_poly([app("app", f"{app_block}:1.1.0", "x")], "busy")
    )
    busy.head = busy.repo.commit("the busy workspace")
    pushed = Staging(GitRepo(tmp_path / "pushed"), app_block, f"{namespace}-pushed", kubeconfig)
    release = threading.Event()

    async def outcome(request: ActionRequest) -> Outcome:
        while request.workspace == "busy" and not release.is_set():
            await asyncio.sleep(0.02)  # holds the only run slot until the test releases it
        return Outcome()

    runner = RecordingRunner(outcome)

    async def story() -> None:
        kube_emulator.create(WORKSPACES, workspace("pushed", pushed.url, interval="1h"), namespace)
        await until_status(kube_emulator, namespace, "pushed", applied(pushed.head))
        kube_emulator.create(WORKSPACES, workspace("busy", busy.url), namespace)
        await runner.until(2)  # busy's run started: it holds the only slot

        first = pushed.head
        missing = pushed.pin("9.9.9")  # planned (the pin changed), but it cannot be pulled
        annotation = {"metadata": {"annotations": {REQUESTED_AT: "2024-05-01T10:00:00Z"}}}
        assert await patched(kubeconfig, namespace, "pushed", annotation)

        def failed(status: dict[str, Any]) -> bool:
            return status.get("lastAttemptedRevision") == missing and (
                ready(status).get("status") == "False"
            )

        status = await until_status(kube_emulator, namespace, "pushed", failed, timeout=15)
        assert status["lastAppliedRevision"] == first
        assert "9.9.9" in ready(status)["message"]  # the pull's failure, as before
        versions = kube_emulator.history(WORKSPACES, "pushed", namespace=namespace)
        said = [reconciling(v.get("status") if v else None) for v in versions]
        reasons = [c.get("reason") for c in said if missing[:12] in c.get("message", "")]
        assert "Queued" in reasons, "the planned run was not said to wait for a slot"
        assert "Progressing" not in reasons  # it never started
        assert len(runner.runs) == 2  # the pushed revision never ran
        release.set()
        await until_status(kube_emulator, namespace, "busy", applied(busy.head))

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace, runner.factory, max_concurrent_runs=1):
            try:
                await story()
            finally:
                release.set()  # never leave the busy run held: the operator would not stop

    asyncio.run(scenario())
    events = kube_emulator.list_objects("v1/events", namespace=namespace)
    assert sum(e.get("reason") == "RunQueued" for e in events) == 1


async def push_webhook(port: int, namespace: str, name: str, event: dict[str, Any]) -> int:
    """A GitHub-signed push webhook; the HTTP status of the answer."""
    body = json.dumps(event).encode()
    signature = hmac.new(TOKEN.encode(), body, hashlib.sha256).hexdigest()
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{port}/hook/{namespace}/{name}",
            data=body,
            headers={"X-Hub-Signature-256": f"sha256={signature}"},
        ) as answer,
    ):
        return answer.status


def test_a_push_naming_the_workspaces_branch_is_fetched_without_an_ls_remote_first(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    settings: Settings,
    app_block: str,
    tmp_path: Path,
    git_processes: Path,
) -> None:
    pushed = Staging(GitRepo(tmp_path / "pushed"), app_block, f"{namespace}-pushed", kubeconfig)
    token = base64.b64encode(TOKEN.encode()).decode()
    kube_emulator.create(
        "v1/secrets", {"metadata": {"name": "hook"}, "data": {"token": token}}, namespace
    )
    body = workspace("pushed", pushed.url, interval="1h")
    body["metadata"]["annotations"] = {"cratekeeper.dev/webhook-secret": "hook"}
    runner = RecordingRunner()

    async def story(port: int) -> None:
        kube_emulator.create(WORKSPACES, body, namespace)
        await until_status(kube_emulator, namespace, "pushed", applied(pushed.head))
        git_processes.write_text("")
        bumped = pushed.pin("1.2.0")
        assert await push_webhook(port, namespace, "pushed", {"ref": "refs/heads/main"}) == 202
        await until_status(kube_emulator, namespace, "pushed", applied(bumped))
        ran = commands(git_processes)
        assert "ls-remote" not in ran and ran.count("fetch") == 1, ran

        # A push for another branch (or a body without a ref): the usual one ls-remote.
        git_processes.write_text("")
        assert await push_webhook(port, namespace, "pushed", {"ref": "refs/heads/dev"}) == 202
        for _ in range(200):
            if "ls-remote" in commands(git_processes):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # anything after it would be logged by now
        assert commands(git_processes) == ["ls-remote"]
        assert len(runner.runs) == 2

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace, runner.factory) as operator:
            await story(operator.bound["webhook"])

    asyncio.run(scenario())
