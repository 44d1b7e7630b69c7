"""Scale benchmark (issue 11 point 7): N Workspaces on one operator, measured, never asserted.

Run from the repository root (minutes; N=1000 longer, bounded by the flags)::

    .venv/bin/python bench/scale.py --sizes 10 100 1000

Each Workspace has its own Git repository over ``git daemon`` and one trivial registry block;
the operator is a real ``cratekeeper run`` process with the local runner, against the emulated
Kubernetes API (this process). Printed as Markdown (copy into bench/README.md):

- the floors, side by side in the same run: one ``git ls-remote`` process, one no-op
  ``ansible-pull --only-if-changed``, one no-op ``cratekeeper reconcile`` process;
- per N: time until all are Ready from a seeded status (the applied commit already recorded)
  and from first apply (every block runs); operator peak RSS; operator CPU per idle minute at a
  30 s interval (measured) and at 5 m (the idle baseline measured between sweeps plus a fifth
  of one sweep); Kubernetes API writes per idle sweep; git processes per check; the webhook
  rows of ``webhooks.py``: run started with free run slots, and check started and queued while
  slow runs hold every run slot.
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixture import Fixture
from floors import floors
from webhooks import SLOTS, TOKEN, busy_slots, condition, free_slots

from controller.sandbox.kube import WORKSPACES
from controller.sandbox.registry import free_port


class Operator:
    """``cratekeeper run`` as a process: its CPU (itself and the children it reaped), RSS."""

    def __init__(self, fx: Fixture, namespace: str) -> None:
        self.webhook_port = free_port()
        env = {
            **os.environ,
            "PATH": f"{fx.wrapper_dir}:{os.environ['PATH']}",
            "CRATEKEEPER_KUBECONFIG": str(fx.kubeconfig),
            "CRATEKEEPER_RUNNER": "local",
            "CRATEKEEPER_NAMESPACES": namespace,
            "CRATEKEEPER_WEBHOOK_PORT": str(self.webhook_port),
            "CRATEKEEPER_METRICS_PORT": str(free_port()),
            "CRATEKEEPER_INSECURE_REGISTRIES": fx.registry.host,
            "CRATEKEEPER_CACHE_DIR": str(fx.work / "cache"),
            "CRATEKEEPER_WORK_DIR": str(fx.work / "runs"),
            "CRATEKEEPER_MAX_CONCURRENT_RUNS": str(SLOTS),
            "CRATEKEEPER_LOG_LEVEL": "WARNING",
        }
        self.log = (fx.work / f"operator-{namespace}.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "run", "--namespace", namespace],
            env=env,
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,
        )

    def cpu(self) -> float:
        """CPU seconds so far: the operator and the children it has waited for (git)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return sum(int(f) for f in fields[11:15]) / ticks  # utime stime cutime cstime

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()


def workspaces(fx: Fixture, namespace: str, repos: list[str], *, seeded: bool) -> None:
    """One Workspace per repository; ``seeded``: its status already records the applied
    template commit (what a restarted operator finds)."""
    fx.api.create("v1/namespaces", {"metadata": {"name": namespace}})
    fx.api.create(
        "v1/secrets",
        {
            "metadata": {"name": "hook"},
            "data": {"token": base64.b64encode(TOKEN.encode()).decode()},
        },
        namespace=namespace,
    )
    session = requests.Session()
    for repo in repos:
        fx.api.create(
            WORKSPACES,
            {
                "apiVersion": "cratekeeper.dev/v1alpha1",
                "kind": "Workspace",
                "metadata": {
                    "name": repo,
                    "annotations": {"cratekeeper.dev/webhook-secret": "hook"},
                },
                "spec": {
                    "source": {"url": fx.url(repo), "ref": {"branch": "main"}, "interval": "30s"}
                },
            },
            namespace=namespace,
        )
        if seeded:
            status = {
                "lastAppliedRevision": fx.template_sha,
                "lastAttemptedRevision": fx.template_sha,
                "lastFetchedRevision": fx.template_sha,
                "lastAppliedRef": "branch:main",
            }
            url = f"{fx.api.url}/apis/cratekeeper.dev/v1alpha1/namespaces/{namespace}"
            session.patch(
                f"{url}/workspaces/{repo}/status",
                json={"status": status},
                headers={"Content-Type": "application/merge-patch+json"},
                timeout=30,
            ).raise_for_status()


def until_ready(fx: Fixture, namespace: str, n: int, started: float, limit: float) -> str:
    """Seconds until all ``n`` Workspaces are Ready=True (or how many were, at ``limit``)."""
    ready = 0
    while time.monotonic() - started < limit:
        objs = fx.api.list_objects(WORKSPACES, namespace=namespace)
        ready = sum(condition(o, "Ready").get("status") == "True" for o in objs)
        if ready == n:
            return f"{time.monotonic() - started:.1f} s"
        time.sleep(0.5)
    return f"{ready}/{n} within {limit:.0f} s"


def until_checked(fx: Fixture, n: int, since: int, limit: float) -> None:
    """Wait until the operator has checked ``n`` repositories since git call ``since``."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        calls = fx.git_calls()[since:]
        if len({a for _, a in calls if a.startswith("ls-remote")}) >= n:
            return
        time.sleep(0.5)


def idle_window(fx: Fixture, op: Operator, seconds: float) -> tuple[float, int, list[str]]:
    """CPU seconds, API writes and git processes of the operator during ``seconds`` idle."""
    mark, calls, cpu = fx.api.mark(), len(fx.git_calls()), op.cpu()
    time.sleep(seconds)
    git_args = [args for _, args in fx.git_calls()[calls:]]
    return op.cpu() - cpu, len(fx.api.writes(since=mark)), git_args


def scale(fx: Fixture, n: int, args: argparse.Namespace) -> list[list[str]]:
    rows: list[list[str]] = []
    namespace = f"bench-{n}"
    repos = fx.repos(namespace, n)
    workspaces(fx, namespace, repos, seeded=True)
    started, calls = time.monotonic(), len(fx.git_calls())
    op = Operator(fx, namespace)
    try:
        rows.append(
            [
                f"N={n}: all Ready from a seeded status",
                until_ready(fx, namespace, n, started, args.limit),
            ]
        )
        until_checked(fx, n, calls, args.limit)
        time.sleep(5)  # let the first checks' writes settle
        cpu, writes, git_args = idle_window(fx, op, args.idle)
        checks = sum(a.startswith("ls-remote") for a in git_args) or 1
        sweeps = args.idle / 30
        per_min_30s = cpu * 60 / args.idle
        rows.append(
            [f"N={n}: operator CPU per idle minute, 30 s interval", f"{per_min_30s:.2f} CPU-s"]
        )
        rows.append([f"N={n}: API writes per idle sweep", f"{writes / sweeps:.1f}"])
        kinds = sorted({a.split()[0] for a in git_args})
        rows.append(
            [
                f"N={n}: git processes per check",
                f"{len(git_args) / checks:.2f} ({', '.join(kinds)}; {checks} checks)",
            ]
        )

        port, label = op.webhook_port, f"N={n}"
        rows += free_slots(fx, port, namespace, repos[: min(args.webhooks, n)], label)
        if n > SLOTS + args.webhooks:  # the busy ones, then others: not the free-slot samples
            others = repos[args.webhooks : min(args.webhooks * 2, n - SLOTS)]
            rows += busy_slots(fx, port, namespace, repos[-SLOTS:], others, label)
        rows.append([f"N={n}: operator peak RSS", f"{op.peak_rss_mib():.0f} MiB"])
    finally:
        op.stop()

    # 5 m interval: the idle baseline between sweeps, plus a fifth of one 30 s sweep's cost.
    patch_intervals(fx, namespace, repos, "5m")
    calls = len(fx.git_calls())
    op = Operator(fx, namespace)
    try:
        until_checked(fx, n, calls, args.limit)  # each Workspace checked once after the start
        time.sleep(5)
        baseline, _, _ = idle_window(fx, op, args.idle)
        base_min = baseline * 60 / args.idle
        sweep = max(0.0, (per_min_30s - base_min) / 2)
        rows.append(
            [
                f"N={n}: operator CPU per idle minute, 5 m interval",
                f"{base_min + sweep / 5:.2f} CPU-s ({base_min:.2f} between sweeps"
                f" + {sweep:.2f} per sweep / 5)",
            ]
        )
    finally:
        op.stop()

    if n <= args.first_apply_max:
        fresh = f"fresh-{n}"
        new_repos = fx.repos(fresh, n)
        workspaces(fx, fresh, new_repos, seeded=False)
        started = time.monotonic()
        op = Operator(fx, fresh)
        try:
            rows.append(
                [
                    f"N={n}: all Ready from first apply ({SLOTS} run slots)",
                    until_ready(fx, fresh, n, started, args.first_apply_limit),
                ]
            )
        finally:
            op.stop()
    return rows


def patch_intervals(fx: Fixture, namespace: str, repos: list[str], interval: str) -> None:
    session = requests.Session()
    base = f"{fx.api.url}/apis/cratekeeper.dev/v1alpha1/namespaces/{namespace}/workspaces"
    for repo in repos:
        session.patch(
            f"{base}/{repo}",
            json={"spec": {"source": {"interval": interval}}},
            headers={"Content-Type": "application/merge-patch+json"},
            timeout=30,
        ).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--idle", type=float, default=65.0, help="idle window, seconds")
    parser.add_argument("--limit", type=float, default=300.0, help="seconds to wait for Ready")
    parser.add_argument("--webhooks", type=int, default=10, help="webhook samples per N")
    parser.add_argument("--first-apply-max", type=int, default=1000, help="largest N applied")
    parser.add_argument("--first-apply-limit", type=float, default=600.0)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # clean up (finally) on SIGTERM
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="cratekeeper-scale-") as tmp:
        fx = Fixture.start(Path(tmp))
        try:
            rows += floors(fx)
            for n in args.sizes:
                rows += scale(fx, n, args)
                print(f"(N={n} done)", file=sys.stderr, flush=True)
        finally:
            fx.close()
    print("| what | measured |")
    print("| --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
