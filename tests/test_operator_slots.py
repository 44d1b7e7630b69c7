"""Run slots bound runs only (issue 10 point 8, DESIGN §4): a Git check never waits behind other
Workspaces' runs; the run it finds is queued at once, and says so.

Kopf against the emulated API, real Git and registry; the runs are the recording double's
(tests/support/recording_runner.py): this is about the operator, not about Ansible.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

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
    condition,
    namespace,
    patched,
    running,
    settings,
    until_status,
    workspace,
    workspace_poly,
)
from tests.support.recording_runner import Outcome, RecordingRunner

__all__ = ["app_block", "namespace", "settings"]  # fixtures of tests/support/operator.py


def test_a_push_is_checked_and_queued_at_once_while_other_runs_hold_every_slot(
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
        bumped = pushed.pin("1.2.0")
        annotation = {"metadata": {"annotations": {REQUESTED_AT: "2024-05-01T10:00:00Z"}}}
        loop = asyncio.get_running_loop()
        pushed_at = loop.time()
        assert await patched(kubeconfig, namespace, "pushed", annotation)

        def queued(status: dict[str, Any]) -> bool:
            cond = condition(status, "Reconciling")
            return cond.get("reason") == "Queued" and bumped[:12] in cond.get("message", "")

        status = await until_status(kube_emulator, namespace, "pushed", queued, timeout=10)
        assert loop.time() - pushed_at < 5  # checked at once, not after busy's run
        assert condition(status, "Reconciling")["status"] == "True"
        assert status["lastAppliedRevision"] == first  # nothing ran yet
        assert len(runner.runs) == 2

        release.set()
        await until_status(kube_emulator, namespace, "pushed", applied(bumped))
        await until_status(kube_emulator, namespace, "busy", applied(busy.head))

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace, runner.factory, max_concurrent_runs=1):
            try:
                await story()
            finally:
                release.set()  # never leave the busy run held: the operator would not stop

    asyncio.run(scenario())
    assert runner.max_concurrent == 1  # the slot bounded the runs
    events = kube_emulator.list_objects("v1/events", namespace=namespace)
    assert any(e.get("reason") == "RunQueued" for e in events)
