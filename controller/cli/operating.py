"""``run``: the operator, namespace-scoped or cluster-wide; ``demo``: the whole story."""

from __future__ import annotations

import argparse
import logging

from controller.errors import CratekeeperError
from controller.settings import load_settings


def _cmd_run(args: argparse.Namespace) -> int:
    # Imported here: Kopf and the Kubernetes client take ~0.5 s to import, which the other
    # commands (validate, plan in a PR check) should not pay.
    from controller.operator import run_operator

    overrides: dict[str, object] = {}
    for flag in (
        "kubeconfig",
        "runner",
        "webhook_port",
        "metrics_port",
        "health_port",
        "log_level",
    ):
        if getattr(args, flag) is not None:
            overrides[flag] = getattr(args, flag)
    if args.namespaces:
        overrides["namespaces"] = ",".join(args.namespaces)
    if args.watch_label_selector is not None:
        overrides["label_selector"] = args.watch_label_selector
    if args.leader_elect:
        overrides["leader_election"] = True
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
    told = run_demo(keep=args.keep)
    return 0 if told else 130  # stopped by Ctrl-C or SIGTERM before the story's end


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register run."""
    p = sub.add_parser(
        "run",
        help="run the operator (CRATEKEEPER_* settings, flags on top)",
        epilog="example: cratekeeper run --namespace gitops --runner kubernetes",
    )
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", action="append", dest="namespaces", help="watch this namespace (repeat)"
    )
    scope.add_argument("--all-namespaces", action="store_true", help="watch the whole cluster")
    p.add_argument(
        "--kubeconfig", help="the management cluster (else $KUBECONFIG, ~/.kube/config, in-cluster)"
    )
    p.add_argument("--runner", choices=("local", "docker", "kubernetes"), help="where actions run")
    p.add_argument("--webhook-port", type=int, help="port of the push webhook receiver")
    p.add_argument("--metrics-port", type=int, help="port of /metrics, /healthz and /readyz")
    p.add_argument("--health-port", type=int, help="a separate port for the health probes")
    p.add_argument("--log-level", help="debug, info, warning or error")
    p.add_argument(
        "--watch-label-selector",
        help="reconcile only Workspaces matching it, e.g. 'sharding.fluxcd.io/key in (shard1)'",
    )
    p.add_argument(
        "--leader-elect", action="store_true", help="reconcile only while holding the Lease"
    )
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "demo",
        help="the staging/production promotion and rollback story, on this machine",
        epilog="example: cratekeeper demo --keep   (then try cratekeeper get workspaces)",
    )
    p.add_argument("--keep", action="store_true", help="leave it running and print the kubeconfig")
    p.set_defaults(func=_cmd_demo)
