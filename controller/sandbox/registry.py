"""A local OCI registry: Debian's ``docker-registry`` (CNCF distribution v2) on 127.0.0.1.

:func:`start_registry` runs ``docker-registry serve`` on a free loopback port with its own
storage directory and waits until it answers; :func:`stop_registry` ends it. Basic auth is
optional: pass an htpasswd file written elsewhere (hashing it needs bcrypt, which only the
tests depend on).
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

from controller.sandbox.errors import SandboxUnavailable

START_TIMEOUT = 20.0  # seconds until the registry must answer /v2/


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Registry:
    """A running registry: ``host`` is ``127.0.0.1:PORT``; ``storage`` its root directory."""

    host: str
    storage: Path
    credentials: tuple[str, str] | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    owned_dir: Path | None = field(default=None, repr=False)  # removed by stop_registry

    @property
    def url(self) -> str:
        """The base URL (plain HTTP: loopback only)."""
        return f"http://{self.host}"

    def blob_file(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob's bytes (to tamper with it)."""
        hexdigest = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"

    def docker_config(self, user: str | None = None, password: str | None = None) -> str:
        """A docker config JSON for this registry (``auth`` base64 form).

        ``user`` and ``password`` default to the registry's own ``credentials``.
        """
        user = user or (self.credentials[0] if self.credentials else None)
        password = password or (self.credentials[1] if self.credentials else None)
        if user is None or password is None:
            raise ValueError(f"{self.host} has no credentials: pass user and password")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        return json.dumps({"auths": {self.host: {"auth": token}}})


def _config(storage: Path, port: int, htpasswd: Path | None) -> str:
    """The registry's config.yml: quiet logs, deletable blobs, loopback only."""
    auth = ""
    if htpasswd is not None:
        auth = f"auth:\n  htpasswd:\n    realm: test-realm\n    path: {htpasswd}\n"
    return (
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: {secrets.token_hex(16)}\n" + auth
    )


def start_registry(
    workdir: Path | None = None,
    *,
    htpasswd: Path | None = None,
    credentials: tuple[str, str] | None = None,
) -> Registry:
    """Start ``docker-registry serve`` on a free loopback port; wait until it answers.

    ``workdir`` holds the config, the storage and ``registry.log``; without one a temporary
    directory is made (and removed by :func:`stop_registry`). ``htpasswd`` turns on basic
    auth; ``credentials`` are only remembered, for :meth:`Registry.docker_config`.
    """
    binary = shutil.which("docker-registry")
    if binary is None:
        raise SandboxUnavailable(
            "docker-registry is not installed; install the CNCF distribution registry "
            "(Debian/Ubuntu: apt-get install -y docker-registry) and try again"
        )
    owned = None
    if workdir is None:
        workdir = owned = Path(tempfile.mkdtemp(prefix="cratekeeper-registry-"))
    workdir.mkdir(parents=True, exist_ok=True)
    storage = workdir / "storage"
    port = free_port()
    config = workdir / "config.yml"
    config.write_text(_config(storage, port, htpasswd))
    log_path = workdir / "registry.log"
    with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    registry = Registry(f"127.0.0.1:{port}", storage, credentials, process, owned)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log_text = log_path.read_text(errors="replace")
            stop_registry(registry)
            raise SandboxUnavailable(f"docker-registry exited early: {log_text}")
        try:
            if requests.get(f"{registry.url}/v2/", timeout=1).status_code in (200, 401):
                return registry
        except requests.ConnectionError:
            time.sleep(0.05)
    stop_registry(registry)
    raise SandboxUnavailable(f"docker-registry did not start within {START_TIMEOUT:.0f} seconds")


def stop_registry(registry: Registry) -> None:
    """Terminate the registry (kill it after 10 s) and remove a directory it was given."""
    if registry.process is not None and registry.process.poll() is None:
        registry.process.terminate()
        try:
            registry.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            registry.process.kill()
            registry.process.wait()
    if registry.owned_dir is not None:
        shutil.rmtree(registry.owned_dir, ignore_errors=True)


@contextlib.contextmanager
def running_registry(
    workdir: Path | None = None,
    *,
    htpasswd: Path | None = None,
    credentials: tuple[str, str] | None = None,
) -> Iterator[Registry]:
    """:func:`start_registry` for the length of a ``with`` block."""
    registry = start_registry(workdir, htpasswd=htpasswd, credentials=credentials)
    try:
        yield registry
    finally:
        stop_registry(registry)
