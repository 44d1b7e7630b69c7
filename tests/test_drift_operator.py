"""Drift detection end to end: the operator (Kopf on the emulated API), real Git, the real
registry and real ansible-playbook + kubernetes.core against the emulated target cluster."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from controller.operator import Operator
from controller.settings import Settings
from tests.support.actions import push_app_deploy
from tests.support.gitrepo import GitRepo
from tests.support.kube_emulator import WORKSPACES, KubeEmulator
from tests.support.oci_registry import Registry
from tests.test_drift_check_mode import needs_ansible, scale_by_hand
from tests.test_operator import (
    DEPLOYMENTS,
    Staging,
    applied,
    namespace,
    patched,
    posted,
    running,
    settings,
    until_status,
    workspace,
)

pytestmark = needs_ansible
__all__ = ["namespace", "settings"]  # fixtures of test_operator, used here


@pytest.fixture(scope="module")
def drift_block(oci_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    return push_app_deploy(
        oci_registry.host, "app-deploy-drift", ("1.1.0",), tmp_path_factory.mktemp("drift")
    )


def drifted(status: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == "Drifted"), {})


def drift_is(state: str, reason: str) -> Any:
    return lambda s: (drifted(s).get("status"), drifted(s).get("reason")) == (state, reason)


def replicas(emulator: KubeEmulator, target: str) -> int:
    deployment = emulator.get(DEPLOYMENTS, "acme-app", namespace=target) or {}
    return int(deployment.get("spec", {}).get("replicas", -1))


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
    drift_block: str,
    tmp_path: Path,
) -> None:
    staging = Staging(GitRepo(tmp_path / "staging"), drift_block, f"{namespace}-app", kubeconfig)

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace) as operator:
            body = workspace("staging", staging.url, drift={"interval": "2s"})
            kube_emulator.create(WORKSPACES, body, namespace)
            first = staging.head
            await until_status(kube_emulator, namespace, "staging", applied(first))
            status = await until_status(
                kube_emulator, namespace, "staging", drift_is("False", "NoDrift")
            )
            assert first[:12] in drifted(status)["message"]

            scale_by_hand(kubeconfig, staging.target, 5)
            status = await until_status(
                kube_emulator, namespace, "staging", drift_is("True", "DriftDetected")
            )
            message = drifted(status)["message"]
            assert "block app" in message and "'Deployment'" in message, message
            assert "'Service'" not in message
            # A check applies nothing and records no revision.
            assert replicas(kube_emulator, staging.target) == 5
            assert status["lastAppliedRevision"] == first
            assert len(status["history"]) == 1
            await posted(kube_emulator, namespace, "DriftDetected")
            assert drift_counted(operator, namespace) >= 1

            assert await patched(
                kubeconfig, namespace, "staging", {"spec": {"drift": {"correct": True}}}
            )
            status = await until_status(
                kube_emulator, namespace, "staging", drift_is("False", "DriftCorrected")
            )
            assert replicas(kube_emulator, staging.target) == 1
            correction = status["history"][0]
            assert correction["correction"] is True and correction["result"] == "Succeeded"
            assert [c["block"] for c in correction["changes"]] == ["app"]
            assert status["lastAppliedRevision"] == first

            # Drift detection off: no Drifted condition is left to tell an old story.
            assert await patched(kubeconfig, namespace, "staging", {"spec": {"drift": None}})
            await until_status(kube_emulator, namespace, "staging", lambda s: not drifted(s))

    asyncio.run(scenario())
    assert kube_emulator.errors() == []
