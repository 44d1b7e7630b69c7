"""Which runner the operator gives each Workspace's runs, from the settings."""

from __future__ import annotations

from controller.api.spec import WorkspaceSpec
from controller.kube import Kube
from controller.operator.worker import RunnerFactory
from controller.runners.base import Runner
from controller.runners.docker import DockerRunner
from controller.runners.kubernetes import LABEL_WORKSPACE, KubernetesRunner
from controller.runners.local import LocalRunner
from controller.settings import Settings


def local_runner(namespace: str, name: str, spec: WorkspaceSpec) -> Runner:
    """The ``local`` runner (``CRATEKEEPER_RUNNER=local``): ansible-playbook in this process's
    environment."""
    return LocalRunner()


def runner_factory(settings: Settings, kube: Kube) -> RunnerFactory:
    """How the operator makes a runner per Workspace, from the settings; the kubernetes runner
    uses the operator's own adapter (``kube``), so Jobs go to the cluster Kopf watches."""
    if settings.runner == "local":
        return local_runner
    if settings.runner == "docker":

        def docker(namespace: str, name: str, spec: WorkspaceSpec) -> Runner:
            image = spec.runner.image or settings.execution_image
            return DockerRunner(image, network_mode=settings.docker_network)

        return docker

    def kubernetes(namespace: str, name: str, spec: WorkspaceSpec) -> Runner:
        return KubernetesRunner.for_workspace(
            kube,
            namespace,
            spec,
            default_image=settings.execution_image,
            default_image_pull_secrets=settings.job_image_pull_secrets,
            prepare_image=settings.prepare_image,
            insecure_registries=settings.insecure_registries,
            labels={LABEL_WORKSPACE: name},
        )

    return kubernetes
