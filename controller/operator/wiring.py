"""What the operator builds for each reconcile from its settings: the runner (inside a run
slot) and the registry client."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from pathlib import Path

from controller.api.spec import WorkspaceSpec
from controller.errors import SettingsError
from controller.kube import Kube
from controller.operator.events import Step
from controller.plan import Run
from controller.registry import RegistryClient, RegistryOptions
from controller.runners.base import ActionRequest, OutputHandler, Runner, RunResult
from controller.runners.docker import DockerRunner
from controller.runners.kubernetes import LABEL_WORKSPACE, KubernetesRunner
from controller.runners.local import LocalRunner
from controller.settings import Settings

RunnerFactory = Callable[[str, str, WorkspaceSpec], Runner]
"""``(namespace, name, spec)`` of a Workspace → the runner of its next reconcile."""


def local_runner(namespace: str, name: str, spec: WorkspaceSpec) -> Runner:
    """The ``local`` runner (``CRATEKEEPER_RUNNER=local``): ansible-playbook in this process's
    environment."""
    return LocalRunner()


def runner_factory(settings: Settings, kube: Kube) -> RunnerFactory:
    """How the operator makes a runner per Workspace, from the settings: Kubernetes Jobs unless
    ``settings.runner`` says otherwise (DESIGN §5: running Ansible in the operator's own
    process is an explicit choice). The kubernetes runner uses the operator's own adapter
    (``kube``), so Jobs go to the cluster Kopf watches."""
    if settings.runner == "local":
        return local_runner
    if settings.runner == "docker":

        def docker(namespace: str, name: str, spec: WorkspaceSpec) -> Runner:
            image = spec.runner.image or settings.execution_image
            return DockerRunner(image, network_mode=settings.docker_network)

        return docker

    # Read once: the Jobs' init container gets the same CAs as the operator (in the run's Secret).
    ca_bundle = _read_ca_bundle(settings.ca_bundle)

    def kubernetes(namespace: str, name: str, spec: WorkspaceSpec) -> Runner:
        return KubernetesRunner.for_workspace(
            kube,
            namespace,
            spec,
            default_image=settings.execution_image,
            default_image_pull_secrets=settings.job_image_pull_secrets,
            prepare_image=settings.prepare_image,
            insecure_registries=settings.insecure_registries,
            ca_bundle=ca_bundle,
            # The Job pulls from where the operator resolved the block, within its size limit.
            registry_mirrors=settings.registry_mirrors,
            max_block_size=settings.max_block_size,
            # A Job's pod may take as long to stop as the operator (DESIGN §5).
            termination_grace_seconds=math.ceil(settings.shutdown_grace),
            labels={LABEL_WORKSPACE: name},
        )

    return kubernetes


def _read_ca_bundle(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SettingsError(
            f"CRATEKEEPER_CA_BUNDLE: cannot read {path}: {exc.strerror}; name a PEM file"
        ) from None


def registry_client(settings: Settings, docker_config: Path | None) -> RegistryClient:
    """A registry client for one reconcile, with the Workspace's own registry credentials."""
    return RegistryClient(RegistryOptions.from_settings(settings, docker_config=docker_config))


Announce = Callable[[ActionRequest], Awaitable[None]]
AnnounceQueued = Callable[[Step], Awaitable[None]]


class SlottedRunner:
    """The runner of one reconcile, each run inside one of the operator's run slots.

    Only the run holds a slot (issue 10 point 8): Git checks, parsing, planning and pulls never
    wait behind other Workspaces' runs. Before the first run of the reconcile it announces
    ``on_queued`` once when every slot is taken (the run waits), and ``on_start`` once it has
    one. :meth:`planned` (the pipeline's ``on_planned``) announces the wait as soon as the plan
    has a run, so a push is seen queued without waiting for the export and the pulls, which
    go on meanwhile and need no slot.
    """

    def __init__(
        self,
        inner: Runner,
        slots: asyncio.Semaphore,
        on_queued: AnnounceQueued,
        on_start: Announce,
    ) -> None:
        self._inner = inner
        self._slots = slots
        self._on_queued = on_queued
        self._on_start = on_start
        self._started = False
        self._queued = False

    async def planned(self, run: Run) -> None:
        """The plan has ``run`` first: say it waits when every slot is taken now."""
        await self._queue(run)

    async def _queue(self, step: Step) -> None:
        if not self._started and not self._queued and self._slots.locked():
            self._queued = True
            await self._on_queued(step)

    async def run(
        self, request: ActionRequest, on_output: OutputHandler | None = None
    ) -> RunResult:
        await self._queue(request)
        async with self._slots:
            if not self._started:
                self._started = True
                await self._on_start(request)
            return await self._inner.run(request, on_output)
