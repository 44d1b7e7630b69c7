"""The operator end to end: Kopf against the emulated API, real Git, real registry, real Ansible.

The management cluster and the target cluster are the same emulator; every test has its own
namespace, Git repository and target namespace. Runs are counted from the status history and,
where it matters, from a marker file the playbook appends to.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import shutil
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from controller.api.spec import REQUESTED_AT
from controller.kube import Kube
from controller.operator import Operator, OperatorConfig
from controller.operator.state import WEBHOOK_SECRET_ANNOTATION
from controller.operator.wiring import RunnerFactory, local_runner
from controller.refs import BlockRef
from controller.registry import RegistryClient, RegistryOptions, push_block
from controller.settings import Settings
from tests.support.actions import push_app_deploy
from tests.support.git_servers import GitDaemon, Upstream
from tests.support.gitrepo import GitRepo
from tests.support.kube_emulator import WORKSPACES, KubeEmulator
from tests.support.oci_registry import Registry

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEPLOYMENTS = "apps/v1/deployments"
RUN_TIMEOUT = 90.0  # bounded waits for anything that runs ansible-playbook

MARKER_PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.shell: echo "start {{ block.version }}" >> {{ block.config.marker }}
    - ansible.builtin.wait_for: {path: "{{ block.config.release }}", timeout: 60}
    - ansible.builtin.shell: echo "end {{ block.version }}" >> {{ block.config.marker }}
"""


# --- blocks in the real registry -----------------------------------------------------------


@pytest.fixture(scope="module")
def app_block(oci_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """app-deploy 1.1.0 and 1.2.0 in the test registry."""
    return push_app_deploy(
        oci_registry.host, "app-deploy-op", ("1.1.0", "1.2.0"), tmp_path_factory.mktemp("app")
    )


@pytest.fixture(scope="module")
def marker_block(oci_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A block whose deploy appends to a marker file and waits for a release file."""
    name = f"{oci_registry.host}/acme/tests/marker"
    block = tmp_path_factory.mktemp("marker")
    (block / "block.poly").write_text(
        yaml.safe_dump(
            {
                "name": name,
                "version": "1.0.0",
                "kind": "generic",
                "config": {"marker": "", "release": ""},
                "actions": [{"name": "deploy", "playbook": "deploy.yml"}],
            }
        )
    )
    (block / "deploy.yml").write_text(MARKER_PLAYBOOK)
    client = RegistryClient(RegistryOptions(insecure_registries=(oci_registry.host,)))
    push_block(block, BlockRef.parse(f"{name}:1.0.0"), client=client)
    return name


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

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace):
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
    deployment = kube_emulator.get(DEPLOYMENTS, "acme-app", namespace=f"{namespace}-two")
    assert deployment is not None and deployment["spec"]["replicas"] == 3


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

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace) as operator:
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
            mark = kube_emulator.mark()
            await ticks(operator, namespace, "ws", 2)
            assert workspace_writes(kube_emulator, mark, namespace) == []

            fixed = staging.pin("1.1.0")
            status = await until_status(kube_emulator, namespace, "ws", applied(fixed))
            assert status["blocks"] == before["blocks"]  # same pin: nothing ran
            assert ready(status)["reason"] == "Succeeded"

    asyncio.run(scenario())


def test_switching_spec_source_ref_to_an_unrelated_branch_applies_it(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    settings: Settings,
    app_block: str,
    tmp_path: Path,
) -> None:
    staging = Staging(GitRepo(tmp_path / "staging"), app_block, f"{namespace}-app", kubeconfig)
    first = staging.head
    staging.repo.git("checkout", "-q", "--orphan", "other")  # no history shared with main
    other = staging.pin("1.2.0")

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace):
            kube_emulator.create(WORKSPACES, workspace("ws", staging.url), namespace)
            status = await until_status(kube_emulator, namespace, "ws", applied(first))
            assert status["lastAppliedRef"] == "branch:main"

            patch = {"spec": {"source": {"ref": {"branch": "other"}}}}
            assert await patched(kubeconfig, namespace, "ws", patch)
            status = await until_status(kube_emulator, namespace, "ws", applied(other))
            assert status["lastAppliedRef"] == "branch:other"
            assert change(status["history"][0]) == ("1.1.0", "1.2.0", False)
            assert image(kube_emulator, staging.target) == "ghcr.io/acme/myapp:1.2.0"

    asyncio.run(scenario())


class Forwarder:
    """A TCP port on 127.0.0.1 forwarding to ``target`` that the test can close and reopen."""

    def __init__(self, target: int) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(16)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(OSError):  # wakes the thread blocked in accept()
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
            self._server = None
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.close()
        self._conns.clear()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@pytest.fixture
def forwarders(git_daemon: GitDaemon, oci_registry: Registry) -> Any:
    git = Forwarder(git_daemon.port)
    registry = Forwarder(int(oci_registry.host.rsplit(":", 1)[1]))
    git.start()
    registry.start()
    yield git, registry
    git.stop()
    registry.stop()


def test_git_and_registry_outages_are_reported_and_recovered_from(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    tmp_path: Path,
    upstream: Upstream,
    forwarders: tuple[Forwarder, Forwarder],
) -> None:
    git, registry = forwarders
    block = push_app_deploy(registry.host, "app-deploy-outage", ("1.1.0", "1.2.0"), tmp_path)
    target = f"{namespace}-app"
    kube = kubeconfig.read_text()

    def commit(version: str) -> str:
        files = {
            "workspace.poly": workspace_poly([app("app", f"{block}:{version}", target)]),
            "artifacts/secrets/kubeconfig.yml": kube,
        }
        return upstream.commit(files, f"app-deploy {version}")

    first = commit("1.1.0")
    url = f"git://{git.host}/{upstream.name}"
    settings = Settings(cache_dir=tmp_path / "cache", insecure_registries=[registry.host])

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace):
            kube_emulator.create(WORKSPACES, workspace("ws", url), namespace)
            before = await until_status(kube_emulator, namespace, "ws", applied(first))

            git.stop()
            second = commit("1.2.0")
            status = await until_status(
                kube_emulator, namespace, "ws", failed_with("GitUnreachable")
            )
            assert status["lastFetchedRevision"] == first
            assert status["history"] == before["history"]  # no run
            git.start()
            status = await until_status(kube_emulator, namespace, "ws", applied(second))
            assert change(status["history"][0]) == ("1.1.0", "1.2.0", False)

            registry.stop()
            third = commit("1.1.0")
            status = await until_status(
                kube_emulator, namespace, "ws", failed_with("RegistryUnreachable")
            )
            assert status["lastAppliedRevision"] == second
            assert status["blocks"][0]["version"] == "1.2.0"
            assert status["history"][0]["result"] == "Failed"
            assert status["history"][0]["changes"] == []  # nothing ran
            registry.start()
            status = await until_status(kube_emulator, namespace, "ws", applied(third))
            assert change(status["history"][0]) == ("1.2.0", "1.1.0", True)

    asyncio.run(scenario())
    assert image(kube_emulator, target) == "ghcr.io/acme/myapp:1.1.0"


def github_signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def test_a_webhook_push_or_the_requested_at_annotation_reconciles_at_once(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    settings: Settings,
    app_block: str,
    tmp_path: Path,
) -> None:
    staging = Staging(GitRepo(tmp_path / "staging"), app_block, f"{namespace}-app", kubeconfig)
    token = b"hook-s3cret"
    kube_emulator.create(
        "v1/secrets",
        {"metadata": {"name": "hook"}, "data": {"token": base64.b64encode(token).decode()}},
        namespace,
    )
    body = workspace("ws", staging.url, interval="1h")
    body["metadata"]["annotations"] = {WEBHOOK_SECRET_ANNOTATION: "hook"}

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace) as operator:
            kube_emulator.create(WORKSPACES, body, namespace)
            await until_status(kube_emulator, namespace, "ws", applied(staging.head))
            url = f"http://127.0.0.1:{operator.bound['webhook']}/hook/{namespace}/ws"
            push = json.dumps({"ref": "refs/heads/main"}).encode()

            def post(headers: dict[str, str], path: str = url) -> int:
                return requests.post(path, data=push, headers=headers, timeout=10).status_code

            bumped = staging.pin("1.2.0")
            bad = await asyncio.to_thread(
                post, {"X-Hub-Signature-256": github_signature(b"wrong", push)}
            )
            unknown = await asyncio.to_thread(
                post,
                {"X-Hub-Signature-256": github_signature(token, push)},
                url.replace("/ws", "/nope"),
            )
            assert (bad, unknown) == (404, 404)
            good = await asyncio.to_thread(
                post,
                {"X-Hub-Signature-256": github_signature(token, push), "X-GitHub-Event": "push"},
            )
            assert good == 202
            await until_status(kube_emulator, namespace, "ws", applied(bumped))

            back = staging.pin("1.1.0")
            patch = {"metadata": {"annotations": {REQUESTED_AT: "2024-05-01T10:00:00Z"}}}
            assert await patched(kubeconfig, namespace, "ws", patch)
            status = await until_status(kube_emulator, namespace, "ws", applied(back))
            assert change(status["history"][0]) == ("1.2.0", "1.1.0", True)

            probes = f"http://127.0.0.1:{operator.bound['metrics']}"
            for probe in ("/healthz", "/readyz"):
                response = await asyncio.to_thread(requests.get, probes + probe, timeout=10)
                assert response.status_code == 200
            metrics = await asyncio.to_thread(requests.get, probes + "/metrics", timeout=10)
            runs = f'cratekeeper_runs_total{{name="ws",namespace="{namespace}",result="Succeeded"}}'
            assert f"{runs} 3.0" in metrics.text

    asyncio.run(scenario())


def test_an_operator_stopped_mid_run_does_not_run_the_revision_twice(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    settings: Settings,
    marker_block: str,
    tmp_path: Path,
) -> None:
    repo = GitRepo(tmp_path / "ws")
    marker, release = tmp_path / "marker.log", tmp_path / "release"
    repo.write("artifacts/secrets/kubeconfig.yml", kubeconfig.read_text())
    config = {"marker": str(marker), "release": str(release)}
    repo.write(
        "workspace.poly",
        workspace_poly([{"name": "slow", "from": f"{marker_block}:1.0.0", "config": config}]),
    )
    head = repo.commit("a slow block")

    def lines() -> list[str]:
        return marker.read_text().splitlines() if marker.exists() else []

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace):
            kube_emulator.create(WORKSPACES, workspace("ws", f"file://{repo.path}"), namespace)
            await kube_emulator.until(lambda: lines() == ["start 1.0.0"], timeout=RUN_TIMEOUT)
            status = status_of(kube_emulator, namespace, "ws")
            reconciling = next(c for c in status["conditions"] if c["type"] == "Reconciling")
            assert (reconciling["status"], reconciling["reason"]) == ("True", "Progressing")
            # Stop the operator while the playbook waits; release the playbook meanwhile.
            asyncio.get_running_loop().call_later(0.5, release.touch)
        assert lines() == ["start 1.0.0", "end 1.0.0"]
        status = status_of(kube_emulator, namespace, "ws")
        assert status["lastAppliedRevision"] == head  # recorded before the operator exited

        async with running(settings, kubeconfig, namespace) as operator:
            await ticks(operator, namespace, "ws", 2)
            status = await until_status(kube_emulator, namespace, "ws", applied(head))
        assert lines() == ["start 1.0.0", "end 1.0.0"]  # no second run
        assert len(status["history"]) == 1
        assert next(c for c in status["conditions"] if c["type"] == "Reconciling")["status"] == (
            "False"
        )

    asyncio.run(scenario())


def test_suspend_stops_runs_and_delete_removes_what_runs_left(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    settings: Settings,
    app_block: str,
    tmp_path: Path,
) -> None:
    staging = Staging(GitRepo(tmp_path / "staging"), app_block, f"{namespace}-app", kubeconfig)
    # What the kubernetes runner writes on its Jobs and Secrets; "not-ours" lacks managed-by.
    labels = {"cratekeeper.dev/workspace": "ws", "app.kubernetes.io/managed-by": "cratekeeper"}
    job = {"metadata": {"name": "ws-run", "labels": labels}, "spec": {"template": {}}}
    kube_emulator.create("batch/v1/jobs", job, namespace)
    kube_emulator.create(
        "v1/secrets", {"metadata": {"name": "ws-kube", "labels": labels}}, namespace
    )
    kube_emulator.create("v1/secrets", {"metadata": {"name": "other"}}, namespace)
    not_ours = {"name": "not-ours", "labels": {"cratekeeper.dev/workspace": "ws"}}
    kube_emulator.create("v1/secrets", {"metadata": not_ours}, namespace)
    suspended = workspace("ws", staging.url)
    suspended["spec"]["suspend"] = True

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace) as operator:
            mark = kube_emulator.mark()
            kube_emulator.create(WORKSPACES, suspended, namespace)
            await ticks(operator, namespace, "ws", 1, total=True)
            status = status_of(kube_emulator, namespace, "ws")  # no runs; suspend is visible
            assert not status.get("history") and "lastFetchedRevision" not in status
            condition = next(c for c in status["conditions"] if c["type"] == "Suspended")
            assert (condition["status"], condition["reason"]) == ("True", "Suspended")
            assert ready(status)["message"].startswith("suspended (spec.suspend)")
            # One status write (the condition), nothing else.
            writes = [w for w in workspace_writes(kube_emulator, mark, namespace) if "/status" in w]
            assert len(writes) == 1

            path = f"{kube_emulator.url}/apis/cratekeeper.dev/v1alpha1/namespaces/{namespace}"
            path += "/workspaces/ws"
            await asyncio.to_thread(requests.delete, path, timeout=10)
            await kube_emulator.until(
                lambda: kube_emulator.get(WORKSPACES, "ws", namespace=namespace) is None,
                timeout=20,
            )

    asyncio.run(scenario())
    assert kube_emulator.get("batch/v1/jobs", "ws-run", namespace=namespace) is None
    assert kube_emulator.get("v1/secrets", "ws-kube", namespace=namespace) is None
    assert kube_emulator.get("v1/secrets", "other", namespace=namespace) is not None
    assert kube_emulator.get("v1/secrets", "not-ours", namespace=namespace) is not None


def test_a_file_url_is_refused_unless_local_sources_are_allowed(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    settings: Settings,
    app_block: str,
    tmp_path: Path,
) -> None:
    """A Workspace must not read repositories on the controller's disk (another tenant's
    cache included) in a real cluster."""
    staging = Staging(GitRepo(tmp_path / "staging"), app_block, f"{namespace}-app", kubeconfig)
    strict = settings.model_copy(update={"allow_local_sources": False})

    async def scenario() -> None:
        async with running(strict, kubeconfig, namespace):
            kube_emulator.create(WORKSPACES, workspace("local", staging.url), namespace)
            status = await until_status(
                kube_emulator, namespace, "local", failed_with("GitFetchFailed"), timeout=20
            )
            assert "path on the controller's own disk" in ready(status)["message"]
            assert "history" not in status or status["history"] == []

    asyncio.run(scenario())
