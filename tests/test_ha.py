"""Several operator processes against the emulated API: one active per Lease, shards by label.

Every operator here is a real ``cratekeeper run`` subprocess (local runner, real
ansible-playbook). "Killing a replica" kills the process and everything it started, as the end
of a pod's container does (the local runner's playbook runs in its own session, so killing the
operator's process group alone would leave it behind). Runs are counted from a marker file the
playbook appends to.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from controller.api.spec import REQUESTED_AT
from controller.kube import Kube
from controller.operator.shards import SHARD_KEY
from controller.refs import BlockRef
from controller.registry import RegistryClient, RegistryOptions, push_block
from tests.support.gitrepo import GitRepo
from tests.support.kube_emulator import WORKSPACES, KubeEmulator
from tests.support.oci_registry import Registry

ROOT = Path(__file__).resolve().parent.parent
LEASES = "coordination.k8s.io/v1/leases"
LEASE_DURATION = 3.0
WAIT = 90.0  # bounded waits for anything that runs ansible-playbook

SLOW_PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.shell: echo start >> {{ block.config.marker }}
    - ansible.builtin.wait_for: {path: "{{ block.config.release }}", timeout: 60}
    - ansible.builtin.shell: echo end >> {{ block.config.marker }}
"""
QUICK_PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.debug: {msg: applied}
"""

T = TypeVar("T")


def until(check: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (read from /proc: the playbooks of the local runner)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class OperatorProcess:
    """``cratekeeper run`` watching one namespace, as one replica of a Deployment would."""

    def __init__(
        self, name: str, kubeconfig: Path, namespace: str, tmp: Path, registry: str, **env: str
    ) -> None:
        self.name = name
        self.log = tmp / f"{name}.log"
        environment = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "CRATEKEEPER_KUBECONFIG": str(kubeconfig),
            "CRATEKEEPER_CACHE_DIR": str(tmp / f"cache-{name}"),
            "CRATEKEEPER_ALLOW_LOCAL_SOURCES": "true",
            "CRATEKEEPER_INSECURE_REGISTRIES": registry,
            "CRATEKEEPER_RETRY_BASE": "0.5",
            "CRATEKEEPER_RETRY_MAX": "2",
            **env,
        }
        command = [sys.executable, "-m", "controller.cli", "run", "--namespace", namespace]
        command += ["--runner", "local", "--webhook-port", "0", "--metrics-port", "0"]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, env=environment, stdout=log, stderr=subprocess.STDOUT
            )

    def kill(self) -> None:
        """SIGKILL the operator and everything it started (a pod's container ending)."""
        tree = [self.process.pid, *descendants(self.process.pid)]
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def namespace(kube_emulator: KubeEmulator) -> str:
    name = f"ha-{uuid.uuid4().hex[:8]}"
    kube_emulator.create("v1/namespaces", {"metadata": {"name": name}})
    return name


@pytest.fixture
def operators() -> Iterator[list[OperatorProcess]]:
    started: list[OperatorProcess] = []
    yield started
    for operator in started:
        operator.stop()


@pytest.fixture(scope="module")
def blocks(oci_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``slow`` (appends start, waits for a release file, appends end) and ``quick`` in the
    test registry, by reference."""
    client = RegistryClient(RegistryOptions(insecure_registries=(oci_registry.host,)))
    refs = {}
    for kind, playbook, config in (
        ("slow", SLOW_PLAYBOOK, {"marker": "", "release": ""}),
        ("quick", QUICK_PLAYBOOK, {}),
    ):
        name = f"{oci_registry.host}/acme/tests/ha-{kind}"
        block = tmp_path_factory.mktemp(kind)
        manifest = {
            "name": name,
            "version": "1.0.0",
            "kind": "generic",
            "config": config,
            "actions": [{"name": "deploy", "playbook": "deploy.yml"}],
        }
        (block / "block.poly").write_text(yaml.safe_dump(manifest))
        (block / "deploy.yml").write_text(playbook)
        push_block(block, BlockRef.parse(f"{name}:1.0.0"), client=client)
        refs[kind] = f"{name}:1.0.0"
    return refs


def workspace_repo(path: Path, kubeconfig: Path, block: str, **config: str) -> GitRepo:
    """A Git repository whose workspace has one block instance ``app`` of ``block``."""
    repo = GitRepo(path)
    repo.write("artifacts/secrets/kubeconfig.yml", kubeconfig.read_text())
    instance = {"name": "app", "from": block, "config": config}
    poly = {"name": "acme-staging-1", "organization": "acme", "blocks": [instance]}
    repo.write("workspace.poly", yaml.safe_dump(poly, sort_keys=False))
    repo.commit("one block")
    return repo


def workspace(
    name: str, url: str, labels: dict[str, str] | None = None, interval: str = "2s"
) -> dict[str, Any]:
    return {
        "apiVersion": "cratekeeper.dev/v1alpha1",
        "kind": "Workspace",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"source": {"url": url, "ref": {"branch": "main"}, "interval": interval}},
    }


def status(emulator: KubeEmulator, namespace: str, name: str) -> dict[str, Any]:
    return dict((emulator.get(WORKSPACES, name, namespace=namespace) or {}).get("status") or {})


def condition(found: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in found.get("conditions", []) if c["type"] == kind), {})


def holder(emulator: KubeEmulator, namespace: str) -> str:
    lease = emulator.get(LEASES, "cratekeeper", namespace=namespace) or {}
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def test_killing_the_active_replica_mid_run_hands_over_without_running_a_revision_twice(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    tmp_path: Path,
    operators: list[OperatorProcess],
    oci_registry: Registry,
    blocks: dict[str, str],
) -> None:
    marker, release = tmp_path / "marker.log", tmp_path / "release"
    repo = workspace_repo(
        tmp_path / "ws", kubeconfig, blocks["slow"], marker=str(marker), release=str(release)
    )
    head = repo.head()

    def lines() -> list[str]:
        return marker.read_text().splitlines() if marker.exists() else []

    def replica(name: str) -> OperatorProcess:
        operator = OperatorProcess(
            name,
            kubeconfig,
            namespace,
            tmp_path,
            oci_registry.host,
            CRATEKEEPER_LEADER_ELECTION="true",
            CRATEKEEPER_LEASE_NAMESPACE=namespace,
            CRATEKEEPER_LEASE_IDENTITY=name,
            CRATEKEEPER_LEASE_DURATION=str(LEASE_DURATION),
            CRATEKEEPER_RENEW_DEADLINE="2",
            CRATEKEEPER_RETRY_PERIOD="0.3",
        )
        operators.append(operator)
        return operator

    first = replica("first")
    until(lambda: holder(kube_emulator, namespace) == "first", 30, "the first replica to lead")
    second = replica("second")
    until(lambda: "standing by" in second.output(), 30, "the second replica to stand by")

    kube_emulator.create(WORKSPACES, workspace("ws", f"file://{repo.path}"), namespace)
    until(lambda: lines() == ["start"], WAIT, "the first replica's run to start")
    assert condition(status(kube_emulator, namespace, "ws"), "Reconciling")["reason"] == (
        "Progressing"
    )
    assert "kopf.objects" not in second.output()  # the standby has not started Kopf at all

    # The active replica dies mid-run; its playbook dies with it.
    first.kill()
    killed = time.monotonic()
    until(lambda: holder(kube_emulator, namespace) == "second", 30, "the takeover")
    handover = time.monotonic() - killed
    assert handover < LEASE_DURATION + 2.0, handover
    third = replica("third")  # the next standby starts while the second runs
    # Local runner: no record says the run finished, so the new holder runs the revision again.
    until(lambda: lines() == ["start", "start"], WAIT, "the second replica's run to start")
    release.touch()
    done = until(
        lambda: (
            (s := status(kube_emulator, namespace, "ws")).get("lastAppliedRevision") == head and s
        ),
        WAIT,
        "the revision to be recorded as applied",
    )
    assert lines() == ["start", "start", "end"]
    assert [(e["revision"], e["result"]) for e in done["history"]] == [(head, "Succeeded")]

    # Now the holder dies after recording: whoever takes over sees it applied, runs nothing.
    until(lambda: "standing by" in third.output(), 30, "the third replica to stand by")
    second.kill()
    until(lambda: holder(kube_emulator, namespace) == "third", 30, "the third replica to lead")
    asked = "2026-12-01T12:00:00Z"
    patch_annotation(kubeconfig, namespace, "ws", {REQUESTED_AT: asked})
    answered = until(
        lambda: (
            (s := status(kube_emulator, namespace, "ws")).get("lastHandledReconcileAt") == asked
            and s
        ),
        WAIT,
        "the third replica to answer the reconcile request",
    )
    assert lines() == ["start", "start", "end"]  # a revision recorded as applied never runs again
    assert answered["lastAppliedRevision"] == head
    assert len(answered["history"]) == 1
    assert third.process.poll() is None

    # A clean stop (SIGTERM: a rolling update) releases the Lease at once, for the next replica.
    third.process.send_signal(signal.SIGTERM)
    until(lambda: holder(kube_emulator, namespace) == "", 4.0, "the third replica to release")
    third.process.wait(timeout=30)


def patch_annotation(kubeconfig: Path, namespace: str, name: str, values: dict[str, str]) -> None:
    """Annotate the Workspace through the API, as ``cratekeeper reconcile workspace`` does."""

    async def patch() -> None:
        kube = Kube.from_kubeconfig(kubeconfig)
        try:
            await kube.patch_workspace(namespace, name, {"metadata": {"annotations": values}})
        finally:
            kube.close()

    asyncio.run(patch())


def test_each_shard_reconciles_only_the_workspaces_its_selector_matches(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    tmp_path: Path,
    operators: list[OperatorProcess],
    oci_registry: Registry,
    blocks: dict[str, str],
) -> None:
    repo = workspace_repo(tmp_path / "ws", kubeconfig, blocks["quick"])
    url = f"file://{repo.path}"

    def shard(name: str, selector: str, **env: str) -> OperatorProcess:
        operator = OperatorProcess(
            name,
            kubeconfig,
            namespace,
            tmp_path,
            oci_registry.host,
            CRATEKEEPER_LABEL_SELECTOR=selector,
            **env,
        )
        operators.append(operator)
        return operator

    def applied(name: str) -> bool:
        return status(kube_emulator, namespace, name).get("lastAppliedRevision") == repo.head()

    def touched(name: str) -> bool:
        """Any sign of an operator: a status, Kopf's finalizer or its annotations."""
        body = kube_emulator.get(WORKSPACES, name, namespace=namespace) or {}
        meta = body.get("metadata", {})
        kopf = [k for k in meta.get("annotations") or {} if "cratekeeper.dev/" in k]
        return bool(body.get("status") or meta.get("finalizers") or kopf)

    shard("shard1", f"{SHARD_KEY} in (shard1)", CRATEKEEPER_SHARD="shard1")
    for name, labels in (("on-main", {}), ("on-shard1", {SHARD_KEY: "shard1"})):
        kube_emulator.create(WORKSPACES, workspace(name, url, labels, "1s"), namespace)
    on_shard2 = workspace("on-shard2", url, {SHARD_KEY: "shard2"}, "1s")
    kube_emulator.create(WORKSPACES, on_shard2, namespace)
    until(lambda: applied("on-shard1"), WAIT, "shard1 to apply its Workspace")
    assert not touched("on-main") and not touched("on-shard2")

    shard("main", f"!{SHARD_KEY}")
    until(lambda: applied("on-main"), WAIT, "the main instance to apply its Workspace")
    time.sleep(1.5)  # an interval (1 s) more: nothing serves shard2, so nothing touches it
    assert not touched("on-shard2")
    # Idle, the two instances write nothing: neither undoes the other's Kopf bookkeeping.
    mark = kube_emulator.mark()
    time.sleep(2.0)  # two intervals
    writes = [str(r) for r in kube_emulator.writes(since=mark) if r.namespace == namespace]
    assert not writes, writes
    assert len(status(kube_emulator, namespace, "on-shard1")["history"]) == 1
    assert len(status(kube_emulator, namespace, "on-main")["history"]) == 1
    # Each instance keeps its own finalizer (Kopf drops its own from what it does not serve).
    for name, finalizer in (
        ("on-main", "cratekeeper.dev/finalizer"),
        ("on-shard1", "shard1.cratekeeper.dev/finalizer"),
    ):
        found = kube_emulator.get(WORKSPACES, name, namespace=namespace) or {}
        assert found["metadata"]["finalizers"] == [finalizer], name
