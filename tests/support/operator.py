"""The scaffolding of the in-process operator scenarios, written once.

The scenario modules (``tests/test_operator*.py``, ``test_status_end_to_end.py``,
``test_drift_operator.py``, ``test_notify_operator.py``, ``test_alerts_operator.py``,
``test_cli_workspaces.py``, ``test_ha_*.py``) start a real :class:`~controller.operator.Operator`
(Kopf) in the test's event loop against the session's emulated API, with real Git and the real
registry. Their runs go to the runner a test names -- the recording double
(:mod:`tests.support.recording_runner`) for scenarios about the operator, the local runner
(real ``ansible-playbook``) in the one scenario that applies the example for real.

Fixtures (import them into the module that uses them; ``__all__`` keeps the import)::

    namespace   function  a fresh namespace of the emulator (each test: its own Workspaces)
    settings    function  Settings with a private cache, the test registry, file:// sources
    app_block   module    the example app-deploy 1.1.0 and 1.2.0 in the test registry (pushed
                          once per test process)

Helpers: :func:`running` (the operator until the block ends), :class:`Staging` (the staging
example in a Git repository), :func:`workspace` (a Workspace body), the status look-ups
(:func:`until_status`, :func:`applied`, :func:`failed_with`, :func:`condition`, :func:`ready`),
:func:`ticks` (a worker's checks), events (:func:`posted`, :func:`reasons`), API writes
(:func:`workspace_writes`, :func:`patched`, :func:`secret`, :func:`delete_workspace`) and
:func:`http` (the operator's own webhook and metrics servers), :func:`notification_failures`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from controller.kube import Kube
from controller.operator import Operator, OperatorConfig
from controller.operator.wiring import RunnerFactory
from controller.settings import Settings
from tests.support.actions import push_app_deploy
from tests.support.gitrepo import GitRepo
from tests.support.kube_emulator import WORKSPACES, KubeEmulator
from tests.support.oci_registry import Registry

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RUN_TIMEOUT = 90.0  # bounded waits: ample for real ansible-playbook on a loaded machine
INTERVAL = "200ms"
"""The scenarios' source interval: a new commit is seen within a fifth of a second, and an
idle tick costs one ``ls-remote``."""
POLL = 0.05  # seconds between looks at the emulated API


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def namespace(kube_emulator: KubeEmulator) -> str:
    name = f"op-{uuid.uuid4().hex[:8]}"
    kube_emulator.create("v1/namespaces", {"metadata": {"name": name}})
    return name


@pytest.fixture
def settings(tmp_path: Path, oci_registry: Registry) -> Settings:
    return Settings(
        cache_dir=tmp_path / "cache",
        insecure_registries=[oci_registry.host],
        allow_local_sources=True,  # the tests' repositories are file:// URLs
    )


_pushed: dict[str, str] = {}


@pytest.fixture(scope="module")
def app_block(oci_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """app-deploy 1.1.0 and 1.2.0 in the test registry (the block's name)."""
    if oci_registry.host not in _pushed:  # blocks are immutable: one push serves every module
        _pushed[oci_registry.host] = push_app_deploy(
            oci_registry.host, "app-deploy-op", ("1.1.0", "1.2.0"), tmp_path_factory.mktemp("app")
        )
    return _pushed[oci_registry.host]


# --- the operator under test ---------------------------------------------------------------


@contextlib.asynccontextmanager
async def running(
    settings: Settings,
    kubeconfig: Path,
    namespace: str,
    runner_factory: RunnerFactory,
    *,
    stop: asyncio.Event | None = None,
    **config: Any,
) -> AsyncIterator[Operator]:
    """The operator watching ``namespace`` until the block ends, its webhook and metrics on
    free ports (``operator.bound``); its runs are ``runner_factory``'s. ``config`` overrides
    :class:`OperatorConfig` (retries are quick by default: a fifth of a second, doubling).

    Operators sharing one event loop share ``stop``, so the first block to end stops them all
    at once: Kopf's shutdown waits up to 5 s for every task started while it ran, and then
    cancels it, another operator's tasks included."""
    options = OperatorConfig(
        kubeconfig=kubeconfig, **{"retry_base": 0.2, "retry_max": 1.0, **config}
    )
    operator = Operator(
        settings,
        namespaces=[namespace],
        webhook_port=0,
        metrics_port=0,
        config=options,
        runner_factory=runner_factory,
        host="127.0.0.1",
        notify_backoff=0.05,  # a forge that is down is given up on in a tenth of a second
    )
    stop, ready_flag = stop or asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(operator.run(stop_flag=stop, ready_flag=ready_flag))
    try:
        await asyncio.wait_for(ready_flag.wait(), timeout=15)
        yield operator
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=60)


# --- workspaces in Git ---------------------------------------------------------------------


def workspace_poly(blocks: list[dict[str, Any]], name: str = "acme-staging-1") -> str:
    return yaml.safe_dump({"name": name, "organization": "acme", "blocks": blocks}, sort_keys=False)


def app(name: str, ref: str, target: str, **config: Any) -> dict[str, Any]:
    """A block instance of ``ref`` deploying into namespace ``target``."""
    return {"name": name, "from": ref, "config": {"namespace": target, **config}}


class Staging:
    """The staging example in a Git repo, pinned to the test registry's app-deploy."""

    def __init__(self, repo: GitRepo, block: str, target: str, kubeconfig: Path) -> None:
        self.repo, self.block, self.target = repo, block, target
        shutil.copytree(EXAMPLES / "acme-staging-1", repo.path, dirs_exist_ok=True)
        shutil.copy(kubeconfig, repo.path / "artifacts/secrets/kubeconfig.yml")
        self.write([app("app", f"{block}:1.1.0", target)])
        self.head = repo.commit("acme-staging-1 on app-deploy 1.1.0")

    def write(self, blocks: list[dict[str, Any]]) -> None:
        self.repo.write("workspace.poly", workspace_poly(blocks))

    def pin(self, version: str, **config: Any) -> str:
        """Commit the app at ``version`` (with ``config``); the new head."""
        self.write([app("app", f"{self.block}:{version}", self.target, **config)])
        self.head = self.repo.commit(f"app-deploy -> {version}")
        return self.head

    @property
    def url(self) -> str:
        return f"file://{self.repo.path}"


def workspace(name: str, url: str, interval: str = INTERVAL, **spec: Any) -> dict[str, Any]:
    """A Workspace following ``main`` of ``url``; ``spec`` adds fields."""
    return {
        "apiVersion": "cratekeeper.dev/v1alpha1",
        "kind": "Workspace",
        "metadata": {"name": name},
        "spec": {"source": {"url": url, "ref": {"branch": "main"}, "interval": interval}, **spec},
    }


# --- what the status says ------------------------------------------------------------------

Status = dict[str, Any]


def status_of(emulator: KubeEmulator, namespace: str, name: str) -> Status:
    obj = emulator.get(WORKSPACES, name, namespace=namespace) or {}
    return dict(obj.get("status") or {})


def condition(status: Status, kind: str) -> dict[str, Any]:
    """The condition of type ``kind`` ({} when there is none)."""
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})


def ready(status: Status) -> dict[str, Any]:
    return condition(status, "Ready")


async def until_status(
    emulator: KubeEmulator,
    namespace: str,
    name: str,
    predicate: Callable[[Status], bool],
    timeout: float = RUN_TIMEOUT,
) -> Status:
    """The Workspace's status once ``predicate`` holds (the test fails, showing the last
    status seen, after ``timeout``)."""
    seen: list[Status] = [{}]

    def check() -> Status | None:
        seen[0] = status = status_of(emulator, namespace, name)
        return status if predicate(status) else None

    try:
        return await emulator.until(check, timeout=timeout, interval=POLL)
    except TimeoutError:
        pytest.fail(f"status of {namespace}/{name} never matched; last seen:\n{seen[0]}")


def applied(revision: str) -> Callable[[Status], bool]:
    def check(status: Status) -> bool:
        cond = ready(status)
        return status.get("lastAppliedRevision") == revision and cond.get("status") == "True"

    return check


def failed_with(reason: str) -> Callable[[Status], bool]:
    return lambda status: ready(status).get("reason") == reason


def change(entry: Mapping[str, Any]) -> tuple[str, str, bool]:
    """``(old, new, rollback)`` versions of a history entry's one change."""
    (only,) = entry["changes"]
    old = only["from"].rsplit(":", 1)[1] if only.get("from") else "(new)"
    return old, only["to"].rsplit(":", 1)[1], only["rollback"]


async def ticks(
    operator: Operator, namespace: str, name: str, count: int, *, total: bool = False
) -> None:
    """Wait (bounded) until the Workspace's worker has completed ``count`` more ticks
    (``total``: ``count`` ticks since it started)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10 * count
    while (namespace, name) not in operator.state.workers:
        assert loop.time() < deadline, "no worker for the Workspace"
        await asyncio.sleep(0.02)
    worker = operator.state.workers[namespace, name]
    target = count if total else worker.ticks + count
    while worker.ticks < target:
        assert loop.time() < deadline, "the worker stopped ticking"
        await asyncio.sleep(0.02)


# --- events and API writes -----------------------------------------------------------------


def reasons(emulator: KubeEmulator, namespace: str) -> list[str]:
    """The reasons of the namespace's Events, in the order they were posted."""
    return [str(e.get("reason")) for e in emulator.list_objects("v1/events", namespace)]


async def posted(emulator: KubeEmulator, namespace: str, reason: str) -> None:
    """Wait (bounded) until an Event of ``reason`` is stored: Kopf posts events from a queue, so
    one may reach the API after the status write it goes with."""
    await emulator.until(lambda: reason in reasons(emulator, namespace), timeout=10)


def workspace_writes(emulator: KubeEmulator, since: int, namespace: str) -> list[str]:
    """The API writes in ``namespace`` since the emulator's mark ``since``."""
    return [str(r) for r in emulator.writes(since=since) if r.namespace == namespace]


async def patched(kubeconfig: Path, namespace: str, name: str, patch: dict[str, Any]) -> bool:
    """Merge-patch the Workspace's metadata/spec as a person (or the CLI) would."""
    kube = Kube.from_kubeconfig(kubeconfig)
    try:
        return await kube.patch_workspace(namespace, name, patch) is not None
    finally:
        kube.close()


def secret(emulator: KubeEmulator, namespace: str, name: str, **data: str | bytes) -> None:
    """Create Secret ``name`` holding ``data``."""
    encoded = {
        key: base64.b64encode(value if isinstance(value, bytes) else value.encode()).decode()
        for key, value in data.items()
    }
    emulator.create("v1/secrets", {"metadata": {"name": name}, "data": encoded}, namespace)


async def delete_workspace(emulator: KubeEmulator, namespace: str, name: str) -> None:
    """Delete the Workspace as kubectl would and wait (bounded) until it is gone (the
    operator's finalizer has run)."""
    path = f"{emulator.url}/apis/cratekeeper.dev/v1alpha1/namespaces/{namespace}/workspaces"
    await http("DELETE", f"{path}/{name}")
    await emulator.until(
        lambda: emulator.get(WORKSPACES, name, namespace=namespace) is None, timeout=20
    )


# --- the operator's own servers ------------------------------------------------------------


async def http(method: str, url: str, **options: Any) -> tuple[int, str]:
    """One HTTP request (from a thread), its status and text. The connection is closed after
    it: Kopf's shutdown waits up to 5 s for every task started while it ran, and a server's
    kept-alive connection is such a task."""

    def call() -> tuple[int, str]:
        headers = {**options.pop("headers", {}), "Connection": "close"}
        with requests.request(method, url, headers=headers, timeout=10, **options) as response:
            return response.status_code, response.text

    return await asyncio.to_thread(call)


def notification_failures(operator: Operator, namespace: str) -> float:
    """Notifications of ``namespace`` the operator gave up on (its failure counter)."""
    return sum(
        sample.value
        for family in operator.metrics.notification_failures.collect()
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels["namespace"] == namespace
    )


def github_signature(secret: bytes, body: bytes) -> str:
    """GitHub's ``X-Hub-Signature-256`` of ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
