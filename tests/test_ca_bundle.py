"""A registry and a Git server behind a private CA are reachable once the CA is configured.

One real HTTPS server (Python's, with a certificate made by ``openssl`` from a throw-away CA)
serves both a registry's manifest HEAD and a bare repository over Git's "dumb" HTTP protocol.
Without the CA every request fails certificate verification; with ``CRATEKEEPER_CA_BUNDLE``
(the registry client) and ``GIT_SSL_CAINFO`` (git, which the chart sets alongside) it succeeds.
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

from controller.errors import RegistryError
from controller.registry.client import RegistryClient, RegistryOptions
from controller.settings import load_settings
from controller.source import gitcmd

DIGEST = "sha256:" + "ab" * 32


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


class _Handler(http.server.SimpleHTTPRequestHandler):
    """``/v2/...``: a registry that knows one tag; anything else: files of the bare repo."""

    def do_HEAD(self) -> None:
        if self.path.startswith("/v2/"):
            self.send_response(200)
            self.send_header("Docker-Content-Digest", DIGEST)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_HEAD()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
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
    handler = functools.partial(_Handler, directory=str(tmp))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(f"127.0.0.1:{httpd.server_address[1]}", ca, repo, head)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_registry_behind_a_private_ca_needs_the_ca_bundle(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    without = RegistryClient(RegistryOptions(timeout=10))
    with pytest.raises(RegistryError):
        without.head_manifest(server.netloc, "acme/app-deploy", "1.0.0")

    monkeypatch.setenv("CRATEKEEPER_CA_BUNDLE", str(server.ca))
    options = RegistryOptions.from_settings(load_settings())
    assert options.ca_bundle == server.ca
    client = RegistryClient(options)
    assert client.head_manifest(server.netloc, "acme/app-deploy", "1.0.0") == DIGEST


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
