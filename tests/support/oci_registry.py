"""Real OCI registries for tests: Debian's ``docker-registry`` (CNCF distribution v2).

The launcher is product code (``controller/sandbox/registry.py``, shared with ``cratekeeper
demo``); this module adds what only tests need: htpasswd files (bcrypt is a dev dependency),
a skip when the binary is missing, and the fixtures. Session fixtures start one registry
without auth and one with htpasswd basic auth, each on a free port of 127.0.0.1 with its own
storage directory. ``registry_proxy`` puts a small HTTP proxy in front of a registry that
records every request (to count blob downloads) and can demand bearer tokens from its own
token endpoint (to exercise the WWW-Authenticate flow).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import secrets
import shutil
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from controller.refs import BlockRef
from controller.registry import RegistryClient
from controller.registry import format as fmt
from controller.sandbox import registry as sandbox_registry
from controller.sandbox.registry import Registry, free_port, stop_registry

__all__ = [
    "PASSWORD",
    "USER",
    "Registry",
    "RegistryProxy",
    "free_port",
    "go_layer",
    "oci_registry",
    "oci_registry_basic_auth",
    "polycrate_layer",
    "push_polycrate_image",
    "registry_proxy",
    "start_registry",
    "stop_registry",
    "write_htpasswd",
]

USER = "ci-user"
PASSWORD = "s3cret-pa55word"


def write_htpasswd(path: Path, credentials: tuple[str, str]) -> Path:
    """An htpasswd file with one bcrypt entry (cost 4: fast, tests only)."""
    import bcrypt

    hashed = bcrypt.hashpw(credentials[1].encode(), bcrypt.gensalt(rounds=4)).decode()
    path.write_text(f"{credentials[0]}:{hashed}\n")
    return path


def start_registry(workdir: Path, credentials: tuple[str, str] | None = None) -> Registry:
    """Start a registry in ``workdir`` (basic auth if ``credentials``); skip without the binary."""
    if shutil.which("docker-registry") is None:
        pytest.skip(
            "docker-registry is not installed (apt-get install -y docker-registry); "
            "the registry tests need the real CNCF distribution registry"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    htpasswd = None if credentials is None else write_htpasswd(workdir / "htpasswd", credentials)
    return sandbox_registry.start_registry(workdir, htpasswd=htpasswd, credentials=credentials)


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry without authentication."""
    registry = start_registry(tmp_path_factory.mktemp("registry-open"))
    yield registry
    stop_registry(registry)


@pytest.fixture(scope="session")
def oci_registry_basic_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry behind htpasswd basic auth (``USER``/``PASSWORD``, bcrypt cost 4)."""
    registry = start_registry(tmp_path_factory.mktemp("registry-auth"), (USER, PASSWORD))
    yield registry
    stop_registry(registry)


# --- a recording (and optionally token-demanding) proxy ------------------------------------

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass
class RegistryProxy:
    """A proxy at ``host`` forwarding to ``upstream``; ``requests`` lists (method, path)."""

    host: str
    upstream: Registry
    requests: list[tuple[str, str]] = field(default_factory=list)
    bearer_credentials: tuple[str, str] | None = None
    tokens: set[str] = field(default_factory=set)
    token_requests: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def blob_downloads(self) -> list[str]:
        return [path for method, path in self.requests if method == "GET" and "/blobs/" in path]

    def docker_config(self, user: str, password: str) -> str:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        return json.dumps({"auths": {self.host: {"auth": token}}})


def _handler(proxy: RegistryProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _token(self) -> None:
            proxy.token_requests += 1
            expected = proxy.bearer_credentials
            assert expected is not None
            wanted = "Basic " + base64.b64encode(f"{expected[0]}:{expected[1]}".encode()).decode()
            if self.headers.get("Authorization") != wanted:
                self._reply(401, b'{"details":"bad credentials"}', {})
                return
            token = secrets.token_hex(16)
            proxy.tokens.add(token)
            self._reply(200, json.dumps({"token": token}).encode(), {})

        def _forward(self) -> None:
            if self.path.startswith("/token"):
                self._token()
                return
            proxy.requests.append((self.command, self.path.split("?")[0]))
            if proxy.bearer_credentials is not None and self.path.startswith("/v2/"):
                given = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if given not in proxy.tokens:
                    challenge = (
                        f'Bearer realm="{proxy.url}/token",service="test-registry",'
                        'scope="repository:acme:pull"'
                    )
                    self._reply(401, b"{}", {"WWW-Authenticate": challenge})
                    return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {
                key: value
                for key, value in self.headers.items()
                if key.lower() not in _HOP_BY_HOP and key.lower() != "authorization"
            }
            upstream = requests.request(
                self.command,
                proxy.upstream.url + self.path,
                headers=headers,
                data=body,
                allow_redirects=False,
                stream=True,
                timeout=30,
            )
            content = upstream.raw.read(decode_content=False)
            self.send_response(upstream.status_code)
            for key, value in upstream.headers.items():
                if key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(content)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    return Handler


@pytest.fixture
def registry_proxy(
    oci_registry: Registry,
) -> Iterator[Callable[..., RegistryProxy]]:
    """Factory: ``registry_proxy(bearer=(user, password) | None)`` in front of ``oci_registry``."""
    servers: list[ThreadingHTTPServer] = []

    def make(bearer: tuple[str, str] | None = None) -> RegistryProxy:
        proxy = RegistryProxy("", oci_registry, bearer_credentials=bearer)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
        proxy.host = f"127.0.0.1:{server.server_address[1]}"
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return proxy

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


# --- blocks as `polycrate blocks push` writes them ------------------------------------------
#
# Polycrate (cmd/oci.go WrapOCIImage) pulls its configured base image, appends one layer made
# by layerFromDir (a filepath.Walk of the block directory: a "." entry, relative names,
# permission bits, directories and regular files only) with go-containerregistry's
# mutate.AppendLayers, adds the block's labels and polycrate.block.version to the config and
# pushes :<version> and :latest. docs/block-artifacts.md has the details.

Layer = list[tuple[str, bytes | None]]  # (name, data); None is a directory


def go_layer(entries: Layer, modes: dict[str, int] | None = None) -> bytes:
    """A tar as Go's archive/tar writes ``layerFromDir``'s headers (USTAR, uid 0, no mtime,
    ``info.Mode().Perm()``)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.mode, info.size = (modes or {}).get(name, 0o644), len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def polycrate_layer(block: Path) -> bytes:
    """``layerFromDir(block, "")`` as Polycrate builds the block layer."""
    modes = {
        path.relative_to(block).as_posix(): path.stat().st_mode & 0o777 for path in block.rglob("*")
    }
    return go_layer(walk_layer(block), modes)


def walk_layer(block: Path) -> Layer:
    """``layerFromDir(path, "")``: the root as ``.``, then Walk order, names relative."""
    entries: Layer = [(".", None)]

    def walk(directory: Path) -> None:
        for path in sorted(directory.iterdir(), key=lambda p: p.name.encode()):
            rel = path.relative_to(block).as_posix()
            if path.is_dir():
                entries.append((rel, None))
                walk(path)
            else:
                entries.append((rel, path.read_bytes()))

    walk(block)
    return entries


def push_polycrate_image(
    client: RegistryClient,
    ref: BlockRef,
    layers: list[bytes],
    labels: dict[str, str],
    *,
    oci_manifest: bool = False,
) -> str:
    """``mutate.AppendLayers`` + ``mutate.Config`` + ``crane.Push`` of ``:tag`` and ``:latest``."""
    descriptors = []
    diff_ids = []
    for layer in layers:
        blob = gzip.compress(layer, compresslevel=1)
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        client.upload_blob(ref.registry, ref.repository, digest, blob)
        layer_type = fmt.DOCKER_LAYER_GZIP
        descriptors.append({"mediaType": layer_type, "size": len(blob), "digest": digest})
        diff_ids.append("sha256:" + hashlib.sha256(layer).hexdigest())
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": labels},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": "0001-01-01T00:00:00Z"} for _ in layers],
        }
    ).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    client.upload_blob(ref.registry, ref.repository, config_digest, config)
    manifest_type = fmt.OCI_MANIFEST if oci_manifest else fmt.DOCKER_MANIFEST
    config_type = fmt.OCI_CONFIG if oci_manifest else fmt.DOCKER_CONFIG
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {"mediaType": config_type, "size": len(config), "digest": config_digest},
            "layers": descriptors,
        }
    ).encode()
    for tag in (ref.tag, fmt.LATEST):
        digest = client.put_manifest(ref.registry, ref.repository, tag, manifest, manifest_type)
    return digest
