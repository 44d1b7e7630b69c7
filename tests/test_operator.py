"""The operator end to end: Kopf against the emulated API, real Git, real registry.

The management cluster and the target cluster are the same emulator; every test has its own
namespace, Git repository and target namespace. One scenario runs real Ansible (the apply, bump
and rollback of the example); the others are about the operator and use the recording runner
(tests/support/recording_runner.py). The scaffolding the scenario modules share is in
tests/support/operator.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from controller.operator.wiring import local_runner
from controller.settings import Settings
from tests.support.gitrepo import GitRepo
from tests.support.kube_emulator import WORKSPACES, KubeEmulator
from tests.support.operator import (
    Staging,
    app,
    app_block,
    applied,
    change,
    condition,
    failed_with,
    namespace,
    posted,
    ready,
    running,
    settings,
    ticks,
    until_status,
    workspace,
    workspace_writes,
)
from tests.support.recording_runner import RecordingRunner

__all__ = ["app_block", "namespace", "settings"]  # fixtures of tests/support/operator.py

DEPLOYMENTS = "apps/v1/deployments"


def image(emulator: KubeEmulator, target: str) -> str | None:
    deployment = emulator.get(DEPLOYMENTS, "acme-app", namespace=target)
    if deployment is None:
        return None
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


# --- scenarios -----------------------------------------------------------------------------


def test_applies_bumps_and_rolls_back_a_workspace(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    settings: Settings,
    app_block: str,
    tmp_path: Path,
) -> None:
    staging = Staging(GitRepo(tmp_path / "staging"), app_block, f"{namespace}-app", kubeconfig)

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace, local_runner) as operator:
            kube_emulator.create(WORKSPACES, workspace("staging", staging.url), namespace)
            first = staging.head
            status = await until_status(kube_emulator, namespace, "staging", applied(first))
            assert image(kube_emulator, staging.target) == "ghcr.io/acme/myapp:1.1.0"
            (block,) = status["blocks"]
            assert (block["name"], block["version"], block["phase"]) == ("app", "1.1.0", "Applied")
            assert block["digest"].startswith("sha256:")
            assert [change(e) for e in status["history"]] == [("(new)", "1.1.0", False)]
            assert status["lastFetchedRevision"] == status["lastAttemptedRevision"] == first
            assert {c["type"]: c["status"] for c in status["conditions"]} == {
                "Ready": "True",
                "Reconciling": "False",
                "Stalled": "False",
            }
            assert "kopf" not in status  # .status is exactly our schema

            # Interval ticks that find nothing new write nothing.
            await posted(kube_emulator, namespace, "RunSucceeded")  # Kopf posts events later
            mark = kube_emulator.mark()
            await ticks(operator, namespace, "staging", 3)
            assert workspace_writes(kube_emulator, mark, namespace) == []

            bumped = staging.pin("1.2.0")
            status = await until_status(kube_emulator, namespace, "staging", applied(bumped))
            assert image(kube_emulator, staging.target) == "ghcr.io/acme/myapp:1.2.0"
            assert change(status["history"][0]) == ("1.1.0", "1.2.0", False)
            assert status["blocks"][0]["version"] == "1.2.0"

            reverted = staging.repo.revert()
            status = await until_status(kube_emulator, namespace, "staging", applied(reverted))
            assert image(kube_emulator, staging.target) == "ghcr.io/acme/myapp:1.1.0"
            assert change(status["history"][0]) == ("1.2.0", "1.1.0", True)
            assert len(status["history"]) == 3

    asyncio.run(scenario())
    events = kube_emulator.list_objects("v1/events", namespace=namespace)
    reasons = {e.get("reason") for e in events}
    assert {"NewRevision", "RunStarted", "RunSucceeded"} <= reasons
    assert any("1.1.0 → 1.2.0" in e.get("message", "") for e in events)
    assert kube_emulator.errors() == []


def test_only_the_block_whose_config_changed_runs(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    settings: Settings,
    app_block: str,
    tmp_path: Path,
) -> None:
    staging = Staging(GitRepo(tmp_path / "staging"), app_block, f"{namespace}-one", kubeconfig)
    one = app("app", f"{app_block}:1.2.0", f"{namespace}-one")
    staging.write([one, app("app2", f"{app_block}:1.2.0", f"{namespace}-two", replicas=1)])
    both = staging.repo.commit("two app instances")

    runner = RecordingRunner()

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace, runner.factory):
            kube_emulator.create(WORKSPACES, workspace("two", staging.url), namespace)
            status = await until_status(kube_emulator, namespace, "two", applied(both))
            assert [c["block"] for c in status["history"][0]["changes"]] == ["app", "app2"]
            before = {b["name"]: b for b in status["blocks"]}

            staging.write([one, app("app2", f"{app_block}:1.2.0", f"{namespace}-two", replicas=3)])
            scaled = staging.repo.commit("app2: 3 replicas")
            status = await until_status(kube_emulator, namespace, "two", applied(scaled))
            (only,) = status["history"][0]["changes"]
            assert (only["block"], only["reason"]) == ("app2", "config")
            after = {b["name"]: b for b in status["blocks"]}
            assert after["app"] == before["app"]  # untouched: not run again
            assert after["app2"]["configHash"] != before["app2"]["configHash"]

    asyncio.run(scenario())
    assert [block for block, _, _ in runner.pins()] == ["app", "app2", "app2"]


def test_an_invalid_commit_is_reported_and_a_fix_recovers(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    settings: Settings,
    app_block: str,
    tmp_path: Path,
) -> None:
    staging = Staging(GitRepo(tmp_path / "staging"), app_block, f"{namespace}-app", kubeconfig)
    good = staging.head

    runner = RecordingRunner()

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace, runner.factory) as operator:
            kube_emulator.create(WORKSPACES, workspace("ws", staging.url), namespace)
            before = await until_status(kube_emulator, namespace, "ws", applied(good))

            broken = staging.pin("latest")
            status = await until_status(
                kube_emulator, namespace, "ws", failed_with("InvalidWorkspace")
            )
            cond = ready(status)
            assert cond["status"] == "False"
            assert "workspace.poly:" in cond["message"] and "latest" in cond["message"]
            assert status["lastAppliedRevision"] == good
            assert status["lastAttemptedRevision"] == broken
            assert status["blocks"] == before["blocks"]
            assert status["history"][0]["result"] == "Invalid"
            assert condition(status, "Stalled")["status"] == "True"

            # Stalled: interval ticks neither retry nor write while the commit stays.
            await posted(kube_emulator, namespace, "ValidationFailed")  # Kopf posts events later
            mark = kube_emulator.mark()
            await ticks(operator, namespace, "ws", 2)
            assert workspace_writes(kube_emulator, mark, namespace) == []

            fixed = staging.pin("1.1.0")
            status = await until_status(kube_emulator, namespace, "ws", applied(fixed))
            assert status["blocks"] == before["blocks"]  # same pin: nothing ran
            assert ready(status)["reason"] == "Succeeded"

    asyncio.run(scenario())
    assert len(runner.runs) == 1  # the broken commit ran nothing, the fix (same pin) neither
