"""The active replica that loses its Lease stops at once: its runs are cancelled before a
standby may take over, and nothing is recorded for them (Kopf on the emulated API, real Git and
registry; runs are the recording double's)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.errors import KubeError, LeaseLostError
from controller.kube import Kube
from controller.operator import Operator, OperatorConfig
from controller.settings import Settings
from tests.support.gitrepo import GitRepo
from tests.support.kube_emulator import WORKSPACES, KubeEmulator
from tests.support.operator import Staging, app_block, namespace, settings, status_of, workspace
from tests.support.recording_runner import RecordingRunner

__all__ = ["app_block", "namespace", "settings"]  # fixtures of tests/support/operator.py

LEASE = 10.0
"""Seconds of the Lease in the lost-Lease scenario."""


async def steal(kubeconfig: Path, namespace: str) -> None:
    """Write another holder into the Lease, as a replica that took it over would."""
    kube = Kube.from_kubeconfig(kubeconfig)
    try:
        for _ in range(10):  # the holder renews meanwhile: a conflict, read again
            lease = await kube.get_lease(namespace, "cratekeeper")
            assert lease is not None
            taken = replace(lease.record, holder="thief", renewed=datetime.now(UTC))
            try:
                await kube.replace_lease(lease, taken)
                return
            except KubeError as exc:
                if exc.status != 409:
                    raise
        pytest.fail("the Lease could not be taken over")
    finally:
        kube.close()


def test_a_replica_whose_lease_is_taken_cancels_its_runs_and_stops_before_the_deadline(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    settings: Settings,
    app_block: str,
    tmp_path: Path,
) -> None:
    staging = Staging(GitRepo(tmp_path / "staging"), app_block, f"{namespace}-app", kubeconfig)
    elected = settings.model_copy(
        update={
            "leader_election": True,
            "lease_namespace": namespace,
            "lease_identity": "active",
            # Long enough that a loaded machine cannot break the bound below (a quiet one stops
            # in well under a second); the bound is the property, not a speed target.
            "lease_duration": LEASE,
            "renew_deadline": LEASE * 2 / 3,
            "retry_period": 0.2,
        }
    )
    runner = RecordingRunner()
    runner.hold()  # the run stays in flight

    async def scenario() -> float:
        operator = Operator(
            elected,
            namespaces=[namespace],
            config=OperatorConfig(kubeconfig=kubeconfig),
            runner_factory=runner.factory,
        )
        task = asyncio.create_task(operator.run())
        kube_emulator.create(WORKSPACES, workspace("ws", staging.url), namespace)
        await runner.until(1)
        # Another replica holds the Lease now (as after a partition the holder did not notice).
        await steal(kubeconfig, namespace)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(LeaseLostError, match="this replica stopped reconciling"):
            await asyncio.wait_for(task, timeout=15)
        return loop.time() - started

    stopped_after = asyncio.run(scenario())
    assert stopped_after < LEASE  # within the lease duration: before the thief could start
    assert [r.cancelled for r in runner.runs] == [True]
    assert "lastAppliedRevision" not in status_of(kube_emulator, namespace, "ws")
