"""Commands on the operator's Workspaces, as Flux's CLI has them: ``get workspaces``,
``reconcile workspace``, ``suspend``, ``resume``, ``history``, ``logs`` (``diff``: diffing.py).

They talk to the cluster through the one Kubernetes adapter (:class:`controller.kube.Kube`),
with kubectl's flags (``--kubeconfig``, ``--context``, ``-n``, ``-A``); the ``kubernetes``
client is imported only when such a command runs (start-up cost, issue 11).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from controller.api.spec import REAPPLY_AT, REQUESTED_AT
from controller.cli import views
from controller.errors import CratekeeperError
from controller.runners.sealed import split_log

if TYPE_CHECKING:
    from controller.kube import Kube, Workspace

T = TypeVar("T")
OUTPUTS = ("text", "json", "yaml")


def add_kube_flags(p: argparse.ArgumentParser, *, all_namespaces: bool = False) -> None:
    """kubectl's flags: which cluster, which namespace."""
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context (default: its current context)")
    p.add_argument(
        "-n", "--namespace", help="the Workspaces' namespace (default: the context's namespace)"
    )
    if all_namespaces:
        p.add_argument(
            "-A", "--all-namespaces", action="store_true", help="Workspaces of every namespace"
        )


def add_output_flag(p: argparse.ArgumentParser, *choices: str) -> None:
    p.add_argument(
        "-o",
        "--output",
        choices=choices or OUTPUTS,
        default="text",
        help="text (a table), "
        + ("wide (the table with source, ref and last run), " if "wide" in choices else "")
        + "json or yaml",
    )


def with_kube(args: argparse.Namespace, work: Callable[[Kube, str], Coroutine[Any, Any, T]]) -> T:
    """Run ``work(kube, namespace)`` against the cluster the flags name."""
    from controller.kube import Kube  # the kubernetes client: only for these commands

    kube = Kube.connect(args.kubeconfig, context=args.context)
    try:
        return asyncio.run(work(kube, args.namespace or kube.namespace))
    finally:
        kube.close()


async def existing(kube: Kube, namespace: str, name: str) -> Workspace:
    """The Workspace, or an error that says where it was looked for."""
    found = await kube.get_workspace(namespace, name)
    if found is None:
        raise CratekeeperError(
            f"no Workspace {name!r} in namespace {namespace!r}: "
            f"`cratekeeper get workspaces -n {namespace}` lists them (-A: every namespace)"
        )
    return found


# get


def _cmd_get(args: argparse.Namespace) -> int:
    wide = args.output == "wide"

    def show(found: list[Workspace]) -> None:
        if args.output in ("json", "yaml"):
            doc = {"items": [views.workspace_document(w) for w in found]}
            print(views.dumps(doc, args.output), flush=True)
        elif not found:
            where = "any namespace" if args.all_namespaces else f"namespace {args.ns}"
            print(f"no Workspaces in {where}", flush=True)
        else:
            table = views.workspaces_table(found, wide=wide, namespaced=args.all_namespaces)
            print(table, flush=True)

    async def work(kube: Kube, namespace: str) -> int:
        args.ns = namespace
        scope = None if args.all_namespaces else namespace
        if args.name:
            found = [await existing(kube, namespace, args.name)]
        else:
            found = await kube.list_workspaces(scope)
        show(found)
        seen = {(w.namespace, w.name): w.resource_version for w in found}
        while args.watch:
            await asyncio.sleep(args.interval)
            now = [await existing(kube, namespace, args.name)] if args.name else None
            now = now or await kube.list_workspaces(scope)
            versions = {(w.namespace, w.name): w.resource_version for w in now}
            if versions != seen:
                seen = versions
                print(flush=True)
                show(now)
        return 0

    return with_kube(args, work)


# reconcile workspace


def _cmd_reconcile(args: argparse.Namespace) -> int:
    async def work(kube: Kube, namespace: str) -> int:
        ws = await existing(kube, namespace, args.name)
        if ws.spec.get("suspend"):
            raise CratekeeperError(
                f"Workspace {namespace}/{args.name} is suspended; "
                f"`cratekeeper resume {args.name} -n {namespace}` first"
            )
        stamp = datetime.now(UTC).isoformat()
        notes = {REQUESTED_AT: stamp, **({REAPPLY_AT: stamp} if args.reapply else {})}
        await kube.patch_workspace(namespace, args.name, {"metadata": {"annotations": notes}})
        what = "re-apply of every block" if args.reapply else "reconcile"
        print(f"► annotating Workspace {namespace}/{args.name}: {what} requested at {stamp}")
        print("◎ waiting for the operator to answer (status.lastHandledReconcileAt)", flush=True)
        try:
            done = await kube.wait_for_workspace(
                namespace,
                args.name,
                lambda w: w is None or w.status.get("lastHandledReconcileAt") == stamp,
                timeout=args.timeout,
                interval=0.5,
            )
        except TimeoutError:
            raise CratekeeperError(
                f"the operator did not answer within {args.timeout:g}s: is it running and "
                f"watching namespace {namespace}? (raise --timeout for long runs)"
            ) from None
        if done is None:
            raise CratekeeperError(f"Workspace {namespace}/{args.name} was deleted meanwhile")
        return _outcome(done, stamp if args.reapply else None, args.output)

    return with_kube(args, work)


def _outcome(ws: Workspace, reapply: str | None, output: str) -> int:
    """Print how the requested reconcile ended; 0 when the Workspace is Ready."""
    status = views.status_of(ws)
    ready = status.condition("Ready")
    ok = ready is not None and ready.status == "True"
    if reapply is not None:
        ok = ok and status.last_handled_reapply_at == reapply
    if output != "text":
        print(views.dumps(views.workspace_document(ws), output))
        return 0 if ok else 1
    revision = status.last_applied_short_revision or "-"
    if ok:
        print(f"✔ applied revision {revision}: {ready.message if ready else ''}")
    else:
        detail = f"{ready.reason}: {ready.message}" if ready else "no result recorded"
        print(f"✗ not ready: {detail} (applied revision: {revision})")
    if status.history:
        entry = status.history[0]
        changes = ", ".join(str(c) for c in entry.changes) or "no block changed"
        print(f"  last: {entry.revision[:12]} {entry.result}: {changes}")
    return 0 if ok else 1


# suspend / resume


def _set_suspend(args: argparse.Namespace, suspend: bool) -> int:
    async def work(kube: Kube, namespace: str) -> int:
        await existing(kube, namespace, args.name)
        await kube.patch_workspace(namespace, args.name, {"spec": {"suspend": suspend}})
        verb = "suspended" if suspend else "resumed"
        print(f"► Workspace {namespace}/{args.name}: spec.suspend set to {str(suspend).lower()}")

        def answered(w: Workspace | None) -> bool:
            if w is None:
                return True
            condition = views.status_of(w).condition("Suspended")
            shown = condition is not None and condition.status == "True"
            return shown == suspend

        try:
            await kube.wait_for_workspace(
                namespace, args.name, answered, timeout=args.timeout, interval=0.5
            )
        except TimeoutError:
            print(f"! the operator has not confirmed within {args.timeout:g}s (is it running?)")
            return 1
        print(f"✔ {verb}")
        return 0

    return with_kube(args, work)


# history


def _cmd_history(args: argparse.Namespace) -> int:
    async def work(kube: Kube, namespace: str) -> int:
        status = views.status_of(await existing(kube, namespace, args.name))
        if args.output == "text":
            print(views.history_table(status.history))
        else:
            print(
                views.dumps(
                    [e.model_dump(mode="json", by_alias=True) for e in status.history], args.output
                )
            )
        return 0

    return with_kube(args, work)


# logs


def _cmd_logs(args: argparse.Namespace) -> int:
    async def work(kube: Kube, namespace: str) -> int:
        status = views.status_of(await existing(kube, namespace, args.name))
        if not status.history:
            raise CratekeeperError(f"Workspace {namespace}/{args.name} has not run anything yet")
        entry = status.history[0]
        jobs = [j for j in entry.job_names if args.block is None or args.block in j]
        if args.block and not any(c.block == args.block for c in entry.changes):
            ran = ", ".join(c.block for c in entry.changes) or "none"
            raise CratekeeperError(
                f"block {args.block!r} did not run in the last reconcile ({ran})"
            )
        shown = False
        for job in jobs:
            for pod in await kube.list_pods(namespace, {"job-name": job}):
                # "ansible": the kubernetes runner's main container (runners/kubernetes), not
                # imported here, so that this command loads no runner code.
                log = await kube.read_pod_log(namespace, pod.name, container="ansible")
                if log is not None:
                    print(f"==> job {job}, pod {pod.name} <==")
                    # The sealed artifacts at its end are ciphertext, for the runner only.
                    print("\n".join(split_log(log)[0]).rstrip())
                    shown = True
        if not shown:
            # The local and docker runners keep no log in the cluster: the status keeps the
            # last lines of each run (redacted), and the message of a failure.
            when = entry.finished.isoformat(timespec="seconds")
            print(f"revision {entry.revision[:12]} {entry.result} ({when}):")
            for change in entry.changes:
                if args.block is None or change.block == args.block:
                    print(f"==> {change} <==")
                    print("\n".join(change.log_tail) or "(no output recorded)")
            if entry.message:
                print(entry.message)
        return 0

    return with_kube(args, work)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register get, suspend, resume, history and logs (``reconcile workspace``: see
    :func:`reconcile_parser`)."""
    p = sub.add_parser(
        "get",
        help="list the operator's Workspaces (like kubectl get, with their state)",
        epilog="example: cratekeeper get workspaces -n gitops -o wide",
    )
    p.add_argument("kind", choices=("workspaces", "workspace", "ws"), help="what to list")
    p.add_argument("name", nargs="?", help="only this Workspace")
    add_kube_flags(p, all_namespaces=True)
    add_output_flag(p, "text", "wide", "json", "yaml")
    p.add_argument("-w", "--watch", action="store_true", help="print again on every change")
    p.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_get)

    for verb, help_, func in (
        ("suspend", "stop applying a Workspace (spec.suspend: true)", True),
        ("resume", "apply a suspended Workspace again", False),
    ):
        p = sub.add_parser(verb, help=help_, epilog=f"example: cratekeeper {verb} acme-production")
        p.add_argument("name", metavar="NAME", help="the Workspace")
        add_kube_flags(p)
        p.add_argument(
            "--timeout", type=float, default=30.0, help="seconds to wait for the operator's answer"
        )
        p.set_defaults(func=lambda a, s=func: _set_suspend(a, s))

    p = sub.add_parser(
        "history",
        help="what a Workspace applied: revision, changes old → new, result, attempts",
        epilog="example: cratekeeper history acme-production -o yaml",
    )
    p.add_argument("name", metavar="NAME", help="the Workspace")
    add_kube_flags(p)
    add_output_flag(p)
    p.set_defaults(func=_cmd_history)

    p = sub.add_parser(
        "logs",
        help="the log of a Workspace's last run (its Job's pods, else the recorded tail)",
        epilog="example: cratekeeper logs acme-production --block app",
    )
    p.add_argument("name", metavar="NAME", help="the Workspace")
    p.add_argument("--block", help="only this block's run")
    add_kube_flags(p)
    p.set_defaults(func=_cmd_logs)


def reconcile_parser() -> argparse.ArgumentParser:
    """``cratekeeper reconcile workspace NAME``: ask the operator to reconcile now and wait."""
    p = argparse.ArgumentParser(
        prog="cratekeeper reconcile workspace",
        description="Ask the operator to reconcile a Workspace now (the requested-at "
        "annotation) and wait for its answer (status.lastHandledReconcileAt), like "
        "`flux reconcile`. For a local checkout or a Git URL: cratekeeper reconcile PATH_OR_URL.",
        epilog="example: cratekeeper reconcile workspace acme-staging-1 -n gitops --reapply",
    )
    p.add_argument("name", metavar="NAME", help="the Workspace")
    p.add_argument(
        "--with-source",
        action="store_true",
        help="fetch the Git source first (the operator always does on a requested reconcile: "
        "accepted for flux users)",
    )
    p.add_argument(
        "--reapply",
        action="store_true",
        help="run every block of the current revision again (repair a cluster changed by hand)",
    )
    p.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for the outcome (300)"
    )
    add_kube_flags(p)
    add_output_flag(p)
    p.set_defaults(func=_cmd_reconcile)
    return p
