"""Drift detection in the operator (Kopf on the emulated API, real Git and registry): what it
asks the runner for, and what it records.

The runs are the recording double's, scripted as the app-deploy block's playbook behaves on the
emulated target cluster (:class:`AppDeploy`): a deploy sets the Deployment's replicas, a
check-mode run changes nothing and names the task that would change it. That the real playbook
in check mode names the task a hand change drifted, and changes nothing, is
tests/test_drift_check_mode.py's (runner level, real ansible-playbook + kubernetes.core).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from controller.operator import Operator
from controller.runners.base import ActionRequest
from controller.settings import Settings
from tests.support.gitrepo import GitRepo
from tests.support.kube_emulator import WORKSPACES, KubeEmulator
from tests.support.operator import (
    Staging,
    app_block,
    applied,
    condition,
    http,
    namespace,
    patched,
    posted,
    running,
    settings,
    until_status,
    workspace,
)
from tests.support.recording_runner import Outcome, RecordingRunner

__all__ = ["app_block", "namespace", "settings"]  # fixtures of tests/support/operator.py

DEPLOYMENTS = "apps/v1/deployments"


class AppDeploy:
    """The app-deploy block's deploy as its playbook does it, on the emulated cluster: the
    Deployment ``acme-app`` at the config's replicas; in check mode nothing changes and the
    task that would change the Deployment is named (the hand change is drift)."""

    def __init__(self, emulator: KubeEmulator) -> None:
        self.emulator = emulator

    async def __call__(self, request: ActionRequest) -> Outcome:
        target, want = str(request.config["namespace"]), int(request.config["replicas"])
        found = await asyncio.to_thread(replicas, self.emulator, target)
        if request.check:
            return Outcome(changed=0) if found == want else Outcome(changed_tasks=("Deployment",))
        if found < 0:
            body = {"metadata": {"name": "acme-app"}, "spec": {"replicas": want}}
            await asyncio.to_thread(self.emulator.create, DEPLOYMENTS, body, target)
        else:
            await scale(self.emulator, target, want)
        return Outcome(changed_tasks=("Deployment",))


def replicas(emulator: KubeEmulator, target: str) -> int:
    deployment = emulator.get(DEPLOYMENTS, "acme-app", namespace=target) or {}
    return int(deployment.get("spec", {}).get("replicas", -1))


async def scale(emulator: KubeEmulator, target: str, count: int) -> None:
    """What ``kubectl scale`` does: the cluster leaves what Git says."""
    url = f"{emulator.url}/apis/apps/v1/namespaces/{target}/deployments/acme-app"
    merge = {"Content-Type": "application/merge-patch+json"}
    code, text = await http("PATCH", url, json={"spec": {"replicas": count}}, headers=merge)
    assert code == 200, text


def drifted(status: dict[str, Any]) -> dict[str, Any]:
    return condition(status, "Drifted")


def drift_is(state: str, reason: str) -> Any:
    return lambda s: (drifted(s).get("status"), drifted(s).get("reason")) == (state, reason)


def drift_counted(operator: Operator, namespace: str) -> float:
    value = operator.metrics.registry.get_sample_value(
        "cratekeeper_drift_detected_total",
        {"namespace": namespace, "name": "staging", "block": "app"},
    )
    return value or 0.0


def test_a_hand_change_is_reported_as_drift_naming_the_task_and_corrected_on_request(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    settings: Settings,
    app_block: str,
    tmp_path: Path,
) -> None:
    staging = Staging(GitRepo(tmp_path / "staging"), app_block, f"{namespace}-app", kubeconfig)
    runner = RecordingRunner(AppDeploy(kube_emulator))
    runs: dict[str, list[tuple[str, bool]]] = {}

    def since(start: int) -> list[tuple[str, bool]]:
        """(block, check mode) of each run from the ``start``-th."""
        return [(r.request.block, r.request.check) for r in runner.runs[start:]]

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace, runner.factory) as operator:
            body = workspace("staging", staging.url, drift={"interval": "300ms"})
            kube_emulator.create(WORKSPACES, body, namespace)
            first = staging.head
            await until_status(kube_emulator, namespace, "staging", applied(first))
            status = await until_status(
                kube_emulator, namespace, "staging", drift_is("False", "NoDrift")
            )
            assert first[:12] in drifted(status)["message"]
            assert replicas(kube_emulator, staging.target) == 1

            hand_change = len(runner.runs)
            await scale(kube_emulator, staging.target, 5)
            status = await until_status(
                kube_emulator, namespace, "staging", drift_is("True", "DriftDetected")
            )
            message = drifted(status)["message"]
            assert "block app" in message and "'Deployment'" in message, message
            # A check runs in check mode, applies nothing and records no revision.
            runs["checks"] = since(hand_change)
            assert replicas(kube_emulator, staging.target) == 5
            assert status["lastAppliedRevision"] == first
            assert len(status["history"]) == 1
            await posted(kube_emulator, namespace, "DriftDetected")
            assert drift_counted(operator, namespace) >= 1

            asked = len(runner.runs)
            assert await patched(
                kubeconfig, namespace, "staging", {"spec": {"drift": {"correct": True}}}
            )
            status = await until_status(
                kube_emulator, namespace, "staging", drift_is("False", "DriftCorrected")
            )
            runs["correction"] = since(asked)
            assert replicas(kube_emulator, staging.target) == 1
            correction = status["history"][0]
            assert correction["correction"] is True and correction["result"] == "Succeeded"
            assert [c["block"] for c in correction["changes"]] == ["app"]
            assert status["lastAppliedRevision"] == first

            # Drift detection off: no Drifted condition is left to tell an old story.
            assert await patched(kubeconfig, namespace, "staging", {"spec": {"drift": None}})
            await until_status(kube_emulator, namespace, "staging", lambda s: not drifted(s))

    asyncio.run(scenario())
    assert since(0)[:2] == [("app", False), ("app", True)]  # the apply, then a check of it
    assert runs["checks"] and set(runs["checks"]) == {("app", True)}
    # With correct: true, a check found the drift, then the block was applied again (once).
    correcting = runs["correction"]
    assert correcting.count(("app", False)) == 1
    fix = correcting.index(("app", False))
    assert fix > 0 and correcting[fix - 1] == ("app", True)
    assert kube_emulator.errors() == []
