"""A registry and a Git server behind a private CA are reachable once the CA is configured.

One real HTTPS server (Python's, with a certificate made by ``openssl`` from a throw-away CA)
fronts the real registry and serves a bare repository over Git's "dumb" HTTP protocol. Without
the CA every request fails certificate verification; with ``CRATEKEEPER_CA_BUNDLE`` (the
registry client) and ``GIT_SSL_CAINFO`` (git, which the chart sets alongside) the operator's side
succeeds, and the kubernetes runner hands the same bundle to its Jobs' init container (the run's
Secret, ``--ca-bundle`` and ``GIT_SSL_CAINFO``), which then checks out and pulls through it.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from controller.api.spec import WorkspaceSpec
from controller.errors import RegistryError, SettingsError
from controller.kube import Kube
from controller.operator.wiring import runner_factory
from controller.refs import BlockRef
from controller.registry.client import RegistryClient, RegistryOptions
from controller.registry.pull import pull_block
from controller.registry.push import push_block
from controller.runners.kubernetes import KubernetesRunner
from controller.runners.prepare import main as prepare_main
from controller.settings import Settings, load_settings
from controller.source import gitcmd
from tests.support.oci_registry import Registry
from tests.support.registry_blocks import make_block

_FORWARDED = ("accept", "authorization", "range")


@dataclass(frozen=True)
class Server:
    netloc: str
    ca: Path
    repo: Path
    head: str


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _certificates(tmp: Path) -> tuple[Path, Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    _openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
        *("-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=cratekeeper test CA"),
        cwd=tmp,
    )
    _openssl(
        *("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key"),
        *("-out", "server.csr", "-subj", "/CN=127.0.0.1"),
        cwd=tmp,
    )
    (tmp / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        *("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key"),
        *("-CAcreateserial", "-days", "1", "-out", "server.crt", "-extfile", "san.ext"),
        cwd=tmp,
    )
    return tmp / "ca.crt", tmp / "server.crt", tmp / "server.key"


def _handler(upstream: str) -> type[http.server.SimpleHTTPRequestHandler]:
    class Handler(http.server.SimpleHTTPRequestHandler):
        """``/v2/...``: the real registry at ``upstream``, behind TLS; anything else: files (the
        bare repository, for Git's dumb HTTP protocol)."""

        def _proxy(self) -> bool:
            if not self.path.startswith("/v2/"):
                return False
            headers = {k: v for k, v in self.headers.items() if k.lower() in _FORWARDED}
            reply = requests.request(
                self.command, f"http://{upstream}{self.path}", headers=headers, timeout=30
            )
            self.send_response(reply.status_code)
            for key, value in reply.headers.items():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            body = b"" if self.command == "HEAD" else reply.content
            length = reply.headers.get("Content-Length", str(len(body)))
            self.send_header("Content-Length", length if self.command == "HEAD" else str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return True

        def do_GET(self) -> None:
            if not self._proxy():
                super().do_GET()

        def do_HEAD(self) -> None:
            if not self._proxy():
                super().do_HEAD()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, oci_registry: Registry) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("ca")
    ca, cert, key = _certificates(tmp)
    work, repo = tmp / "work", tmp / "repo.git"
    gitcmd.git(["init", "-q", "-b", "main", str(work)])
    (work / "workspace.poly").write_text("name: acme-staging-1\n")
    gitcmd.git(["add", "."], cwd=work)
    identity = ["-c", "user.name=ck", "-c", "user.email=ck@example.invalid"]
    gitcmd.git([*identity, "commit", "-q", "-m", "first"], cwd=work)
    gitcmd.git(["clone", "-q", "--bare", str(work), str(repo)])
    gitcmd.git(["update-server-info"], git_dir=repo)  # what the dumb protocol reads
    head = gitcmd.git(["rev-parse", "HEAD"], cwd=work).decode().strip()

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler = functools.partial(_handler(oci_registry.host), directory=str(tmp))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(f"127.0.0.1:{httpd.server_address[1]}", ca, repo, head)
    finally:
        httpd.shutdown()
        httpd.server_close()


def _push(server: Server, oci_registry: Registry, tmp_path: Path) -> tuple[BlockRef, str]:
    """A block pushed to the plain registry, named by the TLS front's address."""
    ref = BlockRef.parse(f"{server.netloc}/acme/apps/app-deploy:1.0.0")
    block = make_block(tmp_path / "block", ref.name, "1.0.0")
    plain = RegistryClient(
        RegistryOptions(
            insecure_registries=(oci_registry.host,), mirrors=((server.netloc, oci_registry.host),)
        )
    )
    return ref, push_block(block, ref, client=plain)


def test_registry_behind_a_private_ca_needs_the_ca_bundle(
    server: Server, oci_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref, digest = _push(server, oci_registry, tmp_path)
    without = RegistryClient(RegistryOptions(timeout=10))
    with pytest.raises(RegistryError):
        without.head_manifest(ref.registry, ref.repository, ref.tag)

    monkeypatch.setenv("CRATEKEEPER_CA_BUNDLE", str(server.ca))
    options = RegistryOptions.from_settings(load_settings())
    assert options.ca_bundle == server.ca
    client = RegistryClient(options)
    assert client.head_manifest(ref.registry, ref.repository, ref.tag) == digest
    pulled = pull_block(ref, tmp_path / "ws", client=client, resolved=digest)
    assert pulled.block.version == "1.0.0"


def test_git_server_behind_a_private_ca_needs_git_ssl_cainfo(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"https://{server.netloc}/repo.git"
    monkeypatch.delenv("GIT_SSL_CAINFO", raising=False)
    refused = gitcmd.run(["ls-remote", url, "refs/heads/main"], timeout=30)
    assert refused.returncode != 0
    assert b"certificate" in refused.stderr.lower() or b"ssl" in refused.stderr.lower()

    monkeypatch.setenv("GIT_SSL_CAINFO", str(server.ca))
    out = gitcmd.git(["ls-remote", url, "refs/heads/main"])
    assert out.decode().split() == [server.head, "refs/heads/main"]


def test_the_jobs_init_container_checks_out_and_pulls_through_the_private_ca(
    server: Server, oci_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m controller.runners.prepare`` as the Job runs it: --ca-bundle for the
    registry, GIT_SSL_CAINFO (set on the container) for git."""
    ref, digest = _push(server, oci_registry, tmp_path)
    args = [
        *("--repo", f"https://{server.netloc}/repo.git", "--commit", server.head),
        *("--block", f"{ref}@{digest}", "--dest", str(tmp_path / "workspace")),
        *("--cache", str(tmp_path / "cache")),
    ]
    monkeypatch.delenv("GIT_SSL_CAINFO", raising=False)
    assert prepare_main(args) == 1  # neither git nor the registry trust the server

    monkeypatch.setenv("GIT_SSL_CAINFO", str(server.ca))
    assert prepare_main([*args, "--ca-bundle", str(server.ca)]) == 0
    assert (tmp_path / "workspace" / "workspace.poly").read_text() == "name: acme-staging-1\n"
    pulled = tmp_path / "workspace" / "blocks" / ref.registry / "acme/apps/app-deploy"
    assert (pulled / "block.poly").is_file()


def test_the_operator_gives_its_ca_bundle_to_every_job(server: Server, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"
    )
    kube = Kube.from_kubeconfig(kubeconfig)  # never reached: only manifests are built
    spec = WorkspaceSpec.model_validate({"source": {"url": "https://git.example.com/ws.git"}})
    settings = Settings(runner="kubernetes", ca_bundle=server.ca)
    runner = runner_factory(settings, kube)("acme", "acme-staging-1", spec)
    assert isinstance(runner, KubernetesRunner)
    assert runner._options.ca_bundle == server.ca.read_bytes()

    with pytest.raises(SettingsError, match="CRATEKEEPER_CA_BUNDLE: cannot read"):
        runner_factory(Settings(runner="kubernetes", ca_bundle=tmp_path / "none.pem"), kube)
