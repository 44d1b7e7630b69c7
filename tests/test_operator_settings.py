"""Settings that change how the operator runs: which runner by default (issue 10 point 14) and
how long a shutdown waits for a run in flight (issue 10 point 7)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from controller.api.spec import WorkspaceSpec
from controller.operator import Operator, OperatorConfig
from controller.runners.kubernetes import KubernetesRunner
from controller.runners.local import LocalRunner
from controller.settings import Settings, load_settings
from tests.support.gitrepo import GitRepo
from tests.support.kube_emulator import WORKSPACES, KubeEmulator
from tests.support.oci_registry import Registry
from tests.support.operator import Staging, app_block, running, workspace
from tests.support.recording_runner import Outcome, RecordingRunner

__all__ = ["app_block"]  # a fixture of tests/support/operator.py

SPEC = WorkspaceSpec.model_validate({"source": {"url": "https://git.example/ws.git"}})


def runner_of(settings: Settings, kubeconfig: Path) -> object:
    operator = Operator(settings, namespaces=["ns"], config=OperatorConfig(kubeconfig=kubeconfig))
    try:
        return operator.state.shared.runner_factory("ns", "ws", SPEC)
    finally:
        operator.kube.close()


def test_the_operators_default_runner_is_the_kubernetes_job_runner(
    kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CRATEKEEPER_RUNNER", raising=False)
    assert isinstance(runner_of(load_settings(), kubeconfig), KubernetesRunner)
    # Ansible in the operator's own process only when asked for by name.
    monkeypatch.setenv("CRATEKEEPER_RUNNER", "local")
    assert isinstance(runner_of(load_settings(), kubeconfig), LocalRunner)


def test_the_shutdown_grace_setting_bounds_how_long_a_stop_waits_for_a_run(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    oci_registry: Registry,
    app_block: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CRATEKEEPER_SHUTDOWN_GRACE reaches Kopf's daemon cancellation: past it, a run still in
    flight is cancelled (the next operator runs it again) and the operator exits."""
    namespace = f"grace-{uuid.uuid4().hex[:8]}"
    kube_emulator.create("v1/namespaces", {"metadata": {"name": namespace}})
    monkeypatch.setenv("CRATEKEEPER_SHUTDOWN_GRACE", "0.5")
    settings = load_settings(
        cache_dir=tmp_path / "cache",
        insecure_registries=oci_registry.host,
        allow_local_sources=True,
    )
    grace = OperatorConfig.from_settings(settings).shutdown_grace
    assert grace == 0.5
    staging = Staging(GitRepo(tmp_path / "ws"), app_block, f"{namespace}-app", kubeconfig)
    runner = RecordingRunner(Outcome(delay=600))  # a run that would outlast any grace
    loop_time: dict[str, float] = {}

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with running(settings, kubeconfig, namespace, runner.factory, shutdown_grace=grace):
            kube_emulator.create(WORKSPACES, workspace("ws", staging.url), namespace)
            await runner.until(1)
            loop_time["stop"] = loop.time()
        loop_time["stopped"] = loop.time()

    asyncio.run(scenario())
    assert loop_time["stopped"] - loop_time["stop"] < 15  # not the run's 600 s
    (only,) = runner.runs
    assert only.cancelled and only.result is None
