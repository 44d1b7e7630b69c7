"""The operator end to end: Kopf against the emulated API, real Git, real registry.

The management cluster and the target cluster are the same emulator; every test has its own
namespace, Git repository and target namespace. One scenario runs real Ansible (the apply, bump
and rollback of the example); the others are about the operator and use the recording runner
(tests/support/recording_runner.py). This module also holds the helpers the other operator
scenario modules share (test_operator_sources.py, test_operator_lifecycle.py, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.kube import Kube
from controller.operator import Operator, OperatorConfig
from controller.operator.wiring import RunnerFactory, local_runner
from controller.settings import Settings
from tests.support.actions import push_app_deploy
from tests.support.gitrepo import GitRepo
from tests.support.kube_emulator import WORKSPACES, KubeEmulator
from tests.support.oci_registry import Registry
from tests.support.recording_runner import RecordingRunner

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEPLOYMENTS = "apps/v1/deployments"
RUN_TIMEOUT = 90.0  # bounded waits for anything that runs ansible-playbook


# --- blocks in the real registry -----------------------------------------------------------


@pytest.fixture(scope="module")
def app_block(oci_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """app-deploy 1.1.0 and 1.2.0 in the test registry."""
    return push_app_deploy(
        oci_registry.host, "app-deploy-op", ("1.1.0", "1.2.0"), tmp_path_factory.mktemp("app")
    )


# --- workspaces in Git ---------------------------------------------------------------------


def workspace_poly(blocks: list[dict[str, Any]], name: str = "acme-staging-1") -> str:
    return yaml.safe_dump({"name": name, "organization": "acme", "blocks": blocks}, sort_keys=False)


def app(name: str, ref: str, target: str, **config: Any) -> dict[str, Any]:
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

    def pin(self, version: str) -> str:
        self.write([app("app", f"{self.block}:{version}", self.target)])
        self.head = self.repo.commit(f"app-deploy -> {version}")
        return self.head

    @property
    def url(self) -> str:
        return f"file://{self.repo.path}"


# --- the operator under test ---------------------------------------------------------------


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


@contextlib.asynccontextmanager
async def running(
    settings: Settings,
    kubeconfig: Path,
    namespace: str,
    runner_factory: RunnerFactory = local_runner,
    **config: Any,
) -> AsyncIterator[Operator]:
    """The operator watching ``namespace``, with a webhook port, until the block ends; its runs
    are ``runner_factory``'s (the local runner: real ansible-playbook, unless a test swaps in
    the recording double)."""
    options = OperatorConfig(kubeconfig=kubeconfig, retry_base=0.2, retry_max=1.0, **config)
    operator = Operator(
        settings,
        namespaces=[namespace],
        webhook_port=0,
        metrics_port=0,
        config=options,
        runner_factory=runner_factory,
        host="127.0.0.1",
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(operator.run(stop_flag=stop, ready_flag=ready))
    try:
        await asyncio.wait_for(ready.wait(), timeout=15)
        yield operator
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=60)


def workspace(name: str, url: str, interval: str = "1s", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "cratekeeper.dev/v1alpha1",
        "kind": "Workspace",
        "metadata": {"name": name},
        "spec": {"source": {"url": url, "ref": {"branch": "main"}, "interval": interval}, **spec},
    }


def status_of(emulator: KubeEmulator, namespace: str, name: str) -> dict[str, Any]:
    obj = emulator.get(WORKSPACES, name, namespace=namespace) or {}
    return dict(obj.get("status") or {})


def ready(status: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})


async def until_status(
    emulator: KubeEmulator,
    namespace: str,
    name: str,
    predicate: Callable[[dict[str, Any]], bool],
    timeout: float = RUN_TIMEOUT,
) -> dict[str, Any]:
    seen: list[dict[str, Any]] = [{}]

    def check() -> dict[str, Any] | None:
        seen[0] = status = status_of(emulator, namespace, name)
        return status if predicate(status) else None

    try:
        return await emulator.until(check, timeout=timeout, interval=0.1)
    except TimeoutError:
        pytest.fail(f"status of {namespace}/{name} never matched; last seen:\n{seen[0]}")


async def patched(kubeconfig: Path, namespace: str, name: str, patch: dict[str, Any]) -> bool:
    """Merge-patch the Workspace's metadata/spec as a person (or the CLI) would."""
    kube = Kube.from_kubeconfig(kubeconfig)
    try:
        return await kube.patch_workspace(namespace, name, patch) is not None
    finally:
        kube.close()


def applied(revision: str) -> Callable[[dict[str, Any]], bool]:
    def check(status: dict[str, Any]) -> bool:
        cond = ready(status)
        return status.get("lastAppliedRevision") == revision and cond.get("status") == "True"

    return check


def failed_with(reason: str) -> Callable[[dict[str, Any]], bool]:
    return lambda status: ready(status).get("reason") == reason


async def ticks(
    operator: Operator, namespace: str, name: str, count: int, *, total: bool = False
) -> None:
    """Wait (bounded) until the Workspace's worker has completed ``count`` more ticks
    (``total``: ``count`` ticks since it started)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10 * count
    while (namespace, name) not in operator.state.workers:
        assert loop.time() < deadline, "no worker for the Workspace"
        await asyncio.sleep(0.05)
    worker = operator.state.workers[namespace, name]
    target = count if total else worker.ticks + count
    while worker.ticks < target:
        assert asyncio.get_running_loop().time() < deadline, "the worker stopped ticking"
        await asyncio.sleep(0.05)


def image(emulator: KubeEmulator, target: str) -> str | None:
    deployment = emulator.get(DEPLOYMENTS, "acme-app", namespace=target)
    if deployment is None:
        return None
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


async def posted(emulator: KubeEmulator, namespace: str, reason: str) -> None:
    """Wait (bounded) until an Event of ``reason`` is stored: Kopf posts events from a queue, so
    one may reach the API after the status write it goes with."""

    def found() -> bool:
        events = emulator.list_objects("v1/events", namespace=namespace)
        return any(e.get("reason") == reason for e in events)

    await emulator.until(found, timeout=10, interval=0.05)


def workspace_writes(emulator: KubeEmulator, since: int, namespace: str) -> list[str]:
    return [str(r) for r in emulator.writes(since=since) if r.namespace == namespace]


def change(entry: dict[str, Any]) -> tuple[str, str, bool]:
    (only,) = entry["changes"]
    old = only["from"].rsplit(":", 1)[1] if only.get("from") else "(new)"
    return old, only["to"].rsplit(":", 1)[1], only["rollback"]


# --- scenarios -----------------------------------------------------------------------------


def test_applies_bumps_and_rolls_back_a_workspace(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    settings: Settings,
    app_block: str,
    tmp_path: Path,
) -> None:
    staging = Staging(GitRepo(tmp_path / "staging"), app_block, f"{namespace}-app", kubeconfig)

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace) as operator:
            kube_emulator.create(WORKSPACES, workspace("staging", staging.url), namespace)
            first = staging.head
            status = await until_status(kube_emulator, namespace, "staging", applied(first))
            assert image(kube_emulator, staging.target) == "ghcr.io/acme/myapp:1.1.0"
            (block,) = status["blocks"]
            assert (block["name"], block["version"], block["phase"]) == ("app", "1.1.0", "Applied")
            assert block["digest"].startswith("sha256:")
            assert [change(e) for e in status["history"]] == [("(new)", "1.1.0", False)]
            assert status["lastFetchedRevision"] == status["lastAttemptedRevision"] == first
            assert {c["type"]: c["status"] for c in status["conditions"]} == {
                "Ready": "True",
                "Reconciling": "False",
                "Stalled": "False",
            }
            assert "kopf" not in status  # .status is exactly our schema

            # Interval ticks that find nothing new write nothing (1s interval: wait for 3).
            await posted(kube_emulator, namespace, "RunSucceeded")  # Kopf posts events later
            mark = kube_emulator.mark()
            await ticks(operator, namespace, "staging", 3)
            assert workspace_writes(kube_emulator, mark, namespace) == []

            bumped = staging.pin("1.2.0")
            status = await until_status(kube_emulator, namespace, "staging", applied(bumped))
            assert image(kube_emulator, staging.target) == "ghcr.io/acme/myapp:1.2.0"
            assert change(status["history"][0]) == ("1.1.0", "1.2.0", False)
            assert status["blocks"][0]["version"] == "1.2.0"

            reverted = staging.repo.revert()
            status = await until_status(kube_emulator, namespace, "staging", applied(reverted))
            assert image(kube_emulator, staging.target) == "ghcr.io/acme/myapp:1.1.0"
            assert change(status["history"][0]) == ("1.2.0", "1.1.0", True)
            assert len(status["history"]) == 3

    asyncio.run(scenario())
    events = kube_emulator.list_objects("v1/events", namespace=namespace)
    reasons = {e.get("reason") for e in events}
    assert {"NewRevision", "RunStarted", "RunSucceeded"} <= reasons
    assert any("1.1.0 → 1.2.0" in e.get("message", "") for e in events)
    assert kube_emulator.errors() == []


def test_only_the_block_whose_config_changed_runs(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    settings: Settings,
    app_block: str,
    tmp_path: Path,
) -> None:
    staging = Staging(GitRepo(tmp_path / "staging"), app_block, f"{namespace}-one", kubeconfig)
    one = app("app", f"{app_block}:1.2.0", f"{namespace}-one")
    staging.write([one, app("app2", f"{app_block}:1.2.0", f"{namespace}-two", replicas=1)])
    both = staging.repo.commit("two app instances")

    runner = RecordingRunner()

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace, runner.factory):
            kube_emulator.create(WORKSPACES, workspace("two", staging.url), namespace)
            status = await until_status(kube_emulator, namespace, "two", applied(both))
            assert [c["block"] for c in status["history"][0]["changes"]] == ["app", "app2"]
            before = {b["name"]: b for b in status["blocks"]}

            staging.write([one, app("app2", f"{app_block}:1.2.0", f"{namespace}-two", replicas=3)])
            scaled = staging.repo.commit("app2: 3 replicas")
            status = await until_status(kube_emulator, namespace, "two", applied(scaled))
            (only,) = status["history"][0]["changes"]
            assert (only["block"], only["reason"]) == ("app2", "config")
            after = {b["name"]: b for b in status["blocks"]}
            assert after["app"] == before["app"]  # untouched: not run again
            assert after["app2"]["configHash"] != before["app2"]["configHash"]

    asyncio.run(scenario())
    assert [block for block, _, _ in runner.pins()] == ["app", "app2", "app2"]


def test_an_invalid_commit_is_reported_and_a_fix_recovers(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    settings: Settings,
    app_block: str,
    tmp_path: Path,
) -> None:
    staging = Staging(GitRepo(tmp_path / "staging"), app_block, f"{namespace}-app", kubeconfig)
    good = staging.head

    runner = RecordingRunner()

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace, runner.factory) as operator:
            kube_emulator.create(WORKSPACES, workspace("ws", staging.url), namespace)
            before = await until_status(kube_emulator, namespace, "ws", applied(good))

            broken = staging.pin("latest")
            status = await until_status(
                kube_emulator, namespace, "ws", failed_with("InvalidWorkspace")
            )
            cond = ready(status)
            assert cond["status"] == "False"
            assert "workspace.poly:" in cond["message"] and "latest" in cond["message"]
            assert status["lastAppliedRevision"] == good
            assert status["lastAttemptedRevision"] == broken
            assert status["blocks"] == before["blocks"]
            assert status["history"][0]["result"] == "Invalid"
            stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
            assert stalled["status"] == "True"

            # Stalled: interval ticks neither retry nor write while the commit stays.
            await posted(kube_emulator, namespace, "ValidationFailed")  # Kopf posts events later
            mark = kube_emulator.mark()
            await ticks(operator, namespace, "ws", 2)
            assert workspace_writes(kube_emulator, mark, namespace) == []

            fixed = staging.pin("1.1.0")
            status = await until_status(kube_emulator, namespace, "ws", applied(fixed))
            assert status["blocks"] == before["blocks"]  # same pin: nothing ran
            assert ready(status)["reason"] == "Succeeded"

    asyncio.run(scenario())
    assert len(runner.runs) == 1  # the broken commit ran nothing, the fix (same pin) neither
