"""``run``: the operator, namespace-scoped or cluster-wide; ``demo``: the whole story."""

from __future__ import annotations

import argparse
import logging

from controller.api.spec import WorkspaceSpec
from controller.errors import CratekeeperError
from controller.kube import Kube
from controller.operator import run_operator
from controller.operator.main import local_runner
from controller.operator.worker import RunnerFactory
from controller.runners.base import Runner
from controller.runners.docker import DockerRunner
from controller.runners.kubernetes import LABEL_WORKSPACE, KubernetesRunner
from controller.settings import Settings, load_settings


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


def _cmd_run(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {}
    for flag in ("runner", "webhook_port", "metrics_port", "health_port", "log_level"):
        if getattr(args, flag) is not None:
            overrides[flag] = getattr(args, flag)
    if args.namespaces:
        overrides["namespaces"] = ",".join(args.namespaces)
    settings = load_settings(**overrides)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    clusterwide = args.all_namespaces or not settings.namespaces
    run_operator(
        settings,
        namespaces=None if clusterwide else settings.namespaces,
        clusterwide=clusterwide,
        webhook_port=settings.webhook_port,
        metrics_port=settings.metrics_port,
        health_port=settings.health_port,
        runner_factory=runner_factory(settings),
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    try:
        from controller.sandbox.demo import run_demo
    except ImportError as exc:  # the demo extra is not installed
        raise CratekeeperError(
            f"the demo needs the 'demo' extra ({exc.name} is missing): "
            "pip install 'cratekeeper[demo]', or run scripts/demo"
        ) from None
    run_demo(keep=args.keep)
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register run."""
    p = sub.add_parser("run", help="run the operator (CRATEKEEPER_* settings, flags on top)")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", action="append", dest="namespaces", help="watch this namespace (repeat)"
    )
    scope.add_argument("--all-namespaces", action="store_true", help="watch the whole cluster")
    p.add_argument("--runner", choices=("local", "docker", "kubernetes"))
    p.add_argument("--webhook-port", type=int)
    p.add_argument("--metrics-port", type=int)
    p.add_argument("--health-port", type=int)
    p.add_argument("--log-level")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "demo", help="the staging/production promotion and rollback story, on this machine"
    )
    p.add_argument("--keep", action="store_true", help="leave it running and print the kubeconfig")
    p.set_defaults(func=_cmd_demo)
