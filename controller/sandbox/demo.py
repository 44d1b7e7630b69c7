"""``cratekeeper demo``: the seed's story end to end on one machine, with no cluster needed.

A real OCI registry (Debian's docker-registry), real Git repositories, the real operator (Kopf)
and real ``ansible-playbook`` runs; only the Kubernetes API servers are emulated — one for the
management cluster that holds the Workspace objects, one per target cluster. The story:
staging runs app-deploy 1.2.0 and production 1.1.0; a commit promotes production to 1.2.0; a
``git revert`` rolls it back. The workspaces keep the seed's pins unchanged
(``registry.acme-corp.com/...``): the local registry serves as that registry's mirror.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyrage
import requests

from controller.api.crd import render, render_alert
from controller.api.spec import REQUESTED_AT
from controller.operator import Operator, OperatorConfig
from controller.refs import BlockRef
from controller.registry import RegistryClient, RegistryOptions, push_block
from controller.sandbox.demo_output import NAMESPACE, describe, workspaces_table
from controller.sandbox.errors import SandboxUnavailable
from controller.sandbox.kube import WORKSPACES, KubeEmulator
from controller.sandbox.registry import Registry, running_registry
from controller.sandbox.stopping import Stopped, Stopper
from controller.settings import Settings

SEED_REGISTRY = "registry.acme-corp.com"
BLOCK = f"{SEED_REGISTRY}/acme/apps/app-deploy"
STEP_TIMEOUT = 120.0
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada Admin",
    "GIT_AUTHOR_EMAIL": "ada@acme-corp.com",
    "GIT_COMMITTER_NAME": "Ada Admin",
    "GIT_COMMITTER_EMAIL": "ada@acme-corp.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


class DemoError(SandboxUnavailable):
    """A step of the demo did not reach the state it waits for."""

    reason = "DemoFailed"


def find_examples() -> Path:
    """The repository's ``examples/`` (the demo runs from a checkout)."""
    for base in (Path.cwd(), *Path(__file__).resolve().parents):
        if (base / "examples" / "blocks" / "app-deploy" / "block.poly").is_file():
            return base / "examples"
    raise SandboxUnavailable("examples/ not found: run the demo from a cratekeeper checkout")


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` as the demo's author; its output."""
    env = {**os.environ, **_GIT_ENV}
    done = subprocess.run(
        ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


@dataclass
class Cluster:
    """One emulated target cluster and the Git repository of its workspace."""

    name: str
    api: KubeEmulator
    repo: Path
    namespace: str

    def image(self) -> str:
        deployment = self.api.get("apps/v1/deployments", "acme-app", namespace=self.namespace)
        if deployment is None:
            return "(nothing deployed)"
        return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])

    def pin(self, version: str, message: str) -> str:
        poly = self.repo / "workspace.poly"
        lines = poly.read_text().splitlines(keepends=True)
        poly.write_text(
            "".join(
                f"{line.split('from:')[0]}from: {BLOCK}:{version}\n" if "from:" in line else line
                for line in lines
            )
        )
        git(self.repo, "commit", "-q", "-am", message)
        return git(self.repo, "rev-parse", "HEAD")


class Demo:
    """The story, step by step, printed as it goes."""

    def __init__(self, work: Path, say: Callable[[str], None] = print) -> None:
        self.work = work
        self.say = say
        self.examples = find_examples()
        # nothing reads its request log
        self.management = KubeEmulator(crds=[render(), render_alert()], request_log=0)
        self.identity = pyrage.x25519.Identity.generate()
        self.clusters: dict[str, Cluster] = {}

    # --- setting the stage ------------------------------------------------------------------

    def push_blocks(self, registry: Registry) -> None:
        client = RegistryClient(self._registry_options(registry))
        for version in ("1.1.0", "1.2.0"):
            block = self.work / "blocks" / version
            shutil.copytree(self.examples / "blocks" / "app-deploy", block)
            poly = block / "block.poly"
            poly.write_text(poly.read_text().replace("version: 1.2.0", f"version: {version}"))
            digest = push_block(block, BlockRef.parse(f"{BLOCK}:{version}"), client=client)
            self.say(f"  pushed {BLOCK}:{version} ({digest[:19]}…)")

    def _registry_options(self, registry: Registry) -> RegistryOptions:
        return RegistryOptions(
            insecure_registries=(registry.host,), mirrors=((SEED_REGISTRY, registry.host),)
        )

    def make_workspace(self, name: str, api: KubeEmulator, *, encrypt: bool) -> Cluster:
        """The seed's workspace as a Git repository, its kubeconfig pointing at ``api``."""
        repo = self.work / "git" / name
        shutil.copytree(self.examples / name, repo)
        secrets = repo / "artifacts" / "secrets"
        kubeconfig = api.write_kubeconfig(secrets / "kubeconfig.yml")
        if encrypt:  # production's kubeconfig is age-encrypted, as a real one should be
            sealed = pyrage.encrypt(kubeconfig.read_bytes(), [self.identity.to_public()])
            (secrets / "kubeconfig.yml.age").write_bytes(sealed)
            kubeconfig.unlink()
        git(repo, "init", "-q", "-b", "main")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"{name}: initial workspace")
        cluster = Cluster(name, api, repo, f"acme-app-{name}")
        self.clusters[name] = cluster
        return cluster

    def create_workspace(self, cluster: Cluster) -> None:
        self.management.create(
            WORKSPACES,
            {
                "apiVersion": "cratekeeper.dev/v1alpha1",
                "kind": "Workspace",
                "metadata": {"name": cluster.name},
                "spec": {
                    "source": {
                        "url": f"file://{cluster.repo}",
                        "ref": {"branch": "main"},
                        "interval": "30s",
                    },
                    # What a real API server stores after applying the CRD's defaults (the
                    # emulator does no defaulting), so SUSPENDED reads as kubectl shows it.
                    "suspend": False,
                },
            },
            namespace=NAMESPACE,
        )

    def request_reconcile(self, cluster: Cluster) -> None:
        """What `kubectl annotate ws NAME cratekeeper.dev/requested-at=...` does."""
        url = (
            f"{self.management.url}/apis/cratekeeper.dev/v1alpha1/namespaces/{NAMESPACE}"
            f"/workspaces/{cluster.name}"
        )
        patch = {"metadata": {"annotations": {REQUESTED_AT: datetime.now(UTC).isoformat()}}}
        requests.patch(
            url,
            json=patch,
            headers={"Content-Type": "application/merge-patch+json"},
            timeout=10,
        ).raise_for_status()

    # --- watching ---------------------------------------------------------------------------

    def status(self, cluster: Cluster) -> dict[str, Any]:
        obj = self.management.get(WORKSPACES, cluster.name, namespace=NAMESPACE) or {}
        return dict(obj.get("status") or {})

    async def applied(self, cluster: Cluster, revision: str) -> dict[str, Any]:
        """Wait until ``revision`` is applied to ``cluster`` (bounded); its status."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while time.monotonic() < deadline:
            status = self.status(cluster)
            if status.get("lastAppliedRevision") == revision:
                return status
            await asyncio.sleep(0.2)
        conditions: list[dict[str, Any]] = self.status(cluster).get("conditions", [])
        ready = next((c for c in conditions if c["type"] == "Ready"), {})
        raise DemoError(
            f"{cluster.name} did not apply {revision[:12]} within {STEP_TIMEOUT:.0f}s: "
            f"{ready.get('reason', 'no status')}: {ready.get('message', '')}"
        )

    def show(self) -> None:
        """The `kubectl get workspaces` table and the image each target cluster runs."""
        self.say("")
        self.say(f"$ kubectl get workspaces -n {NAMESPACE}")
        for line in workspaces_table(self.management).splitlines():
            self.say(line)
        for cluster in self.clusters.values():
            self.say(f"  {cluster.name} (emulated) runs {cluster.image()}")
        self.say("")

    # --- the story --------------------------------------------------------------------------

    async def play(self) -> None:
        staging, production = self.clusters["acme-staging-1"], self.clusters["acme-production-1"]
        self.say("1. Two workspaces, two clusters: staging on 1.2.0, production on 1.1.0")
        for cluster in (staging, production):
            self.create_workspace(cluster)
        for cluster in (staging, production):
            await self.applied(cluster, git(cluster.repo, "rev-parse", "HEAD"))
        self.show()

        self.say("2. Promotion: a commit pins production to the version staging runs")
        head = production.pin("1.2.0", "Promote app-deploy 1.2.0 from acme-staging-1")
        self.say(f"  acme-production-1 {git(production.repo, 'log', '--oneline', '-1')}")
        self.request_reconcile(production)
        status = await self.applied(production, head)
        self.say(f"  history: {describe(status['history'][0])}")
        self.show()

        self.say("3. Rollback: git revert of the promotion")
        git(production.repo, "revert", "--no-edit", "HEAD")
        head = git(production.repo, "rev-parse", "HEAD")
        self.say(f"  acme-production-1 {git(production.repo, 'log', '--oneline', '-1')}")
        self.request_reconcile(production)
        status = await self.applied(production, head)
        self.say(f"  history: {describe(status['history'][0])}")
        self.show()


@contextlib.contextmanager
def _emulators(demo: Demo) -> Iterator[tuple[KubeEmulator, KubeEmulator]]:
    with (
        demo.management,
        KubeEmulator(request_log=0) as staging,
        KubeEmulator(request_log=0) as production,
    ):
        demo.management.create("v1/namespaces", {"metadata": {"name": NAMESPACE}})
        yield staging, production


def playground(demo: Demo, bound: dict[str, int]) -> None:
    """What ``--keep`` prints: where everything is, and commands to try against it."""
    kubeconfig = demo.work / "management.kubeconfig"  # its context's namespace: NAMESPACE
    demo.say("Still running (--keep). In another terminal:")
    demo.say(f"  kubectl --kubeconfig {kubeconfig} get workspaces")
    demo.say(f"  export KUBECONFIG={kubeconfig}   (context namespace: {NAMESPACE}), then:")
    demo.say("  cratekeeper get workspaces -o wide")
    demo.say("  cratekeeper history acme-production-1   cratekeeper logs acme-production-1")
    demo.say("  cratekeeper reconcile workspace acme-staging-1 --reapply")
    demo.say("  cratekeeper suspend acme-production-1   cratekeeper resume acme-production-1")
    demo.say("  cratekeeper diff acme-production-1")
    for cluster in demo.clusters.values():
        target = cluster.api.write_kubeconfig(
            demo.work / f"{cluster.name}.kubeconfig", namespace=cluster.namespace
        )
        demo.say(f"  target cluster {cluster.name}: kubectl --kubeconfig {target} get deployments")
        demo.say(f"    its Git repository: {cluster.repo} (commit there, then reconcile)")
    if "webhook" in bound:
        demo.say(
            f"  push webhook: http://127.0.0.1:{bound['webhook']}/hook/{NAMESPACE}/<workspace>"
        )
    if "metrics" in bound:
        demo.say(f"  metrics: http://127.0.0.1:{bound['metrics']}/metrics")
    demo.say("Press Ctrl-C to stop and clean up.")


async def _run(demo: Demo, registry: Registry, keep: bool, stopper: Stopper) -> bool:
    """Run the operator and the story until the story ends (with ``keep``: until a signal).
    Whether the story was told to its end."""
    loop = asyncio.get_running_loop()
    stopping = stopper.attach(loop)
    settings = Settings(
        cache_dir=demo.work / "cache",
        insecure_registries=[registry.host],
        registry_mirrors={SEED_REGISTRY: registry.host},
        age_identity=str(demo.identity),
        allow_local_sources=True,  # the demo's repositories are file:// URLs
        runner="local",  # the demo has no kubelet: its playbooks run in this process
    )
    config = OperatorConfig(
        kubeconfig=demo.management.write_kubeconfig(
            demo.work / "management.kubeconfig", namespace=NAMESPACE
        ),
        retry_base=1.0,
        retry_max=5.0,
        work_dir=demo.work,
    )
    port = 0 if keep else None  # --keep: webhook and metrics on free ports, printed
    operator = Operator(
        settings,
        namespaces=[NAMESPACE],
        config=config,
        host="127.0.0.1",
        webhook_port=port,
        metrics_port=port,
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    told = False

    async def story() -> None:
        nonlocal told
        await asyncio.wait_for(ready.wait(), timeout=30)
        stopper.attach(loop)  # Kopf took SIGINT/SIGTERM for itself when it started
        await demo.play()
        told = True
        if keep:
            playground(demo, operator.bound)
            await asyncio.Event().wait()

    tasks = {
        "operator": asyncio.create_task(operator.run(stop_flag=stop, ready_flag=ready)),
        "story": asyncio.create_task(story()),
        "signal": asyncio.create_task(stopping.wait()),
    }
    try:
        await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_COMPLETED)
        if tasks["story"].done():
            tasks["story"].result()  # a DemoError says which step did not get there
        elif tasks["operator"].done() and not stopper.requested:
            tasks["operator"].result()
            raise DemoError("the operator stopped before the story ended")
    finally:
        for name in ("story", "signal"):
            tasks[name].cancel()
        stop.set()  # the operator finishes what it is doing and stops
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(tasks["operator"], timeout=60)
        await asyncio.gather(tasks["story"], tasks["signal"], return_exceptions=True)
    return told


def run_demo(*, keep: bool = False, say: Callable[[str], None] = print) -> bool:
    """Play the whole story; everything it starts is stopped and removed at the end.

    Ctrl-C or SIGTERM stops it at any step (with ``keep``, that is how it ends) and cleans up
    the same way; a second signal changes nothing. Whether the story was told to its end.
    """
    started = time.monotonic()
    stopper = Stopper()
    stopper.install()
    told = False
    try:
        told = _play(stopper, keep, say)
    except Stopped:
        pass
    finally:
        stopper.restore()
    ended = "Stopped" if stopper.requested else "Done"
    took = time.monotonic() - started
    say(f"{ended} in {took:.0f}s; everything it started is stopped and removed.")
    return told


def _play(stopper: Stopper, keep: bool, say: Callable[[str], None]) -> bool:
    say("cratekeeper demo: promotion and rollback across two clusters")
    say("  The Kubernetes API servers here are EMULATED (kmock's KubernetesEmulator, completed):")
    say("  one management cluster holding the Workspaces, and two target clusters. Git, the OCI")
    say("  registry, the operator (Kopf) and ansible-playbook with kubernetes.core are real.")
    say("")
    with tempfile.TemporaryDirectory(prefix="cratekeeper-demo-") as tmp:
        demo = Demo(Path(tmp), say)
        with running_registry(demo.work / "registry") as registry, _emulators(demo) as targets:
            stopper.check()
            say(f"Starting: OCI registry at {registry.host} (mirror of {SEED_REGISTRY})")
            demo.push_blocks(registry)
            stopper.check()
            staging = demo.make_workspace("acme-staging-1", targets[0], encrypt=False)
            production = demo.make_workspace("acme-production-1", targets[1], encrypt=True)
            for cluster in (staging, production):
                say(f"  git repository {cluster.name}: {cluster.repo}")
            say("")
            stopper.check()
            try:
                return asyncio.run(_run(demo, registry, keep, stopper))
            finally:
                stopper.install()  # closing the loop reset the signals to their defaults
