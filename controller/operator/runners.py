"""Which runner the operator gives each Workspace's runs, from the settings."""

from __future__ import annotations

from controller.api.spec import WorkspaceSpec
from controller.kube import Kube
from controller.operator.main import local_runner
from controller.operator.worker import RunnerFactory
from controller.runners.base import Runner
from controller.runners.docker import DockerRunner
from controller.runners.kubernetes import LABEL_WORKSPACE, KubernetesRunner
from controller.settings import Settings


def runner_factory(settings: Settings) -> RunnerFactory:
    """How the operator makes a runner per Workspace, from the settings."""
    if settings.runner == "local":
        return local_runner
    if settings.runner == "docker":

        def docker(namespace: str, name: str, spec: WorkspaceSpec) -> Runner:
            image = spec.runner.image or settings.execution_image
            return DockerRunner(image, network_mode=settings.docker_network)

        return docker
    kube = Kube.connect(settings.kubeconfig)  # KubeError (a CratekeeperError) when it cannot

    def kubernetes(namespace: str, name: str, spec: WorkspaceSpec) -> Runner:
        return KubernetesRunner.for_workspace(
            kube,
            namespace,
            spec,
            default_image=settings.execution_image,
            prepare_image=settings.prepare_image,
            insecure_registries=settings.insecure_registries,
            labels={LABEL_WORKSPACE: name},
        )

    return kubernetes
