"""Where the operator's Workspaces come from: a switched ref, Git and registry outages, and
sources on the controller's own disk (Kopf on the emulated API, real Git and registry; runs are
the recording double's)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from controller.refs import BlockRef
from controller.settings import Settings
from tests.support.actions import push_app_deploy
from tests.support.git_servers import GitDaemon, Upstream
from tests.support.gitrepo import GitRepo
from tests.support.kube_emulator import WORKSPACES, KubeEmulator
from tests.support.oci_registry import Registry
from tests.support.operator import (
    Staging,
    app,
    app_block,
    applied,
    change,
    failed_with,
    namespace,
    patched,
    ready,
    running,
    settings,
    until_status,
    workspace,
    workspace_poly,
)
from tests.support.recording_runner import RecordingRunner

__all__ = ["app_block", "namespace", "settings"]  # fixtures of tests/support/operator.py


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

    runner = RecordingRunner()

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace, runner.factory):
            kube_emulator.create(WORKSPACES, workspace("ws", staging.url), namespace)
            status = await until_status(kube_emulator, namespace, "ws", applied(first))
            assert status["lastAppliedRef"] == "branch:main"

            patch = {"spec": {"source": {"ref": {"branch": "other"}}}}
            assert await patched(kubeconfig, namespace, "ws", patch)
            status = await until_status(kube_emulator, namespace, "ws", applied(other))
            assert status["lastAppliedRef"] == "branch:other"
            assert change(status["history"][0]) == ("1.1.0", "1.2.0", False)

    asyncio.run(scenario())
    assert [":1.2.0" in pin for _, pin, _ in runner.pins()] == [False, True]


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

    runner = RecordingRunner()

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace, runner.factory):
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
    assert [BlockRef.parse(pin).tag for _, pin, _ in runner.pins()] == ["1.1.0", "1.2.0", "1.1.0"]


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

    runner = RecordingRunner()

    async def scenario() -> None:
        async with running(strict, kubeconfig, namespace, runner.factory):
            kube_emulator.create(WORKSPACES, workspace("local", staging.url), namespace)
            status = await until_status(
                kube_emulator, namespace, "local", failed_with("GitFetchFailed"), timeout=20
            )
            assert "path on the controller's own disk" in ready(status)["message"]
            assert "history" not in status or status["history"] == []

    asyncio.run(scenario())
    assert runner.runs == []
