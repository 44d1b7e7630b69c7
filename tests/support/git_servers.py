"""Real Git servers on 127.0.0.1 for the tests: ``git daemon``, smart HTTP and ``sshd``.

All three serve the same directory of bare repositories (``git_root``), so one upstream repo
can be reached as ``git://``, ``http://`` (basic auth) and ``ssh://``. Servers start once per
session and stop at its end; each test gets a fresh upstream repository (``upstream``).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import itertools
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

HTTP_USER = "ci-bot"
HTTP_PASSWORD = "s3cret-t0ken-XyZ"

_GIT_ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Ada Author",
    "GIT_AUTHOR_EMAIL": "ada@example.com",
    "GIT_COMMITTER_NAME": "Ada Author",
    "GIT_COMMITTER_EMAIL": "ada@example.com",
    "LC_ALL": "C",
}


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git for test setup with a clean environment; return stdout."""
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=_GIT_ENV, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


def free_port() -> int:
    """A port nothing listens on right now (the caller retries if it is taken meanwhile)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> bool:
    """Whether ``proc`` came to listen on ``port`` (False when it died or took too long)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        time.sleep(0.05)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server this module started: politely, then by force."""
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# ---------------------------------------------------------------------------------------------
# Upstream repositories


@dataclass
class Upstream:
    """A bare repository under ``git_root`` plus a working clone to commit and push from."""

    root: Path
    name: str
    work: Path

    @property
    def bare(self) -> Path:
        return self.root / self.name

    def commit(self, files: Mapping[str, str | None], message: str, branch: str = "main") -> str:
        """Write (or delete, for ``None``) files, commit on ``branch``, push; return the SHA."""
        current = git("symbolic-ref", "--short", "HEAD", cwd=self.work)
        if current != branch:
            exists = bool(git("branch", "--list", branch, cwd=self.work))
            git("checkout", "-q", *([] if exists else ["-b"]), branch, cwd=self.work)
        for rel, content in files.items():
            path = self.work / rel
            if content is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work)
        git("push", "-q", "origin", f"{branch}:{branch}", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def tag(self, name: str, target: str = "HEAD", *, annotated: bool = True) -> None:
        """Create (or move) a tag and push it."""
        extra = ["-a", "-m", f"release {name}"] if annotated else []
        git("tag", "-f", *extra, name, target, cwd=self.work)
        git("push", "-q", "--force", "origin", f"refs/tags/{name}", cwd=self.work)

    def force_reset(self, target: str, branch: str = "main") -> str:
        """Rewrite ``branch`` to ``target`` and force-push it; return the new tip."""
        git("checkout", "-q", branch, cwd=self.work)
        git("reset", "-q", "--hard", target, cwd=self.work)
        git("push", "-q", "--force", "origin", f"{branch}:{branch}", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)


_names = itertools.count()


@pytest.fixture(scope="session")
def git_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory of bare repositories every test server serves."""
    return tmp_path_factory.mktemp("git-root")


@pytest.fixture
def upstream(git_root: Path, tmp_path: Path) -> Upstream:
    """A fresh, empty upstream repository (default branch ``main``)."""
    name = f"repo-{next(_names)}.git"
    git("init", "-q", "--bare", "-b", "main", str(git_root / name))
    work = tmp_path / "upstream-work"
    git("clone", "-q", str(git_root / name), str(work))
    git("symbolic-ref", "HEAD", "refs/heads/main", cwd=work)
    return Upstream(root=git_root, name=name, work=work)


# ---------------------------------------------------------------------------------------------
# git daemon


@dataclass(frozen=True)
class GitDaemon:
    port: int

    def url(self, upstream: Upstream) -> str:
        return f"git://127.0.0.1:{self.port}/{upstream.name}"


@pytest.fixture(scope="session")
def git_daemon(git_root: Path) -> Iterator[GitDaemon]:
    """``git daemon --export-all`` serving ``git_root`` on a free port."""
    for _attempt in range(5):
        port = free_port()
        proc = subprocess.Popen(
            [
                "git",
                "daemon",
                "--export-all",
                "--reuseaddr",
                f"--base-path={git_root}",
                "--listen=127.0.0.1",
                f"--port={port}",
                "--informative-errors",
                str(git_root),
            ],
            env=_GIT_ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if _wait_for_port(port, proc):
            break
        _stop(proc)
    else:
        pytest.fail("git daemon did not start")
    yield GitDaemon(port)
    _stop(proc)


# ---------------------------------------------------------------------------------------------
# Smart HTTP: git http-backend as CGI behind http.server, with basic auth


@dataclass(frozen=True)
class HttpRequest:
    """One request the HTTP server saw; ``command`` is the protocol-v2 command, if any."""

    method: str
    path: str
    query: str
    status: int
    command: str | None
    body: bytes


@dataclass
class GitHttpServer:
    port: int
    requests: list[HttpRequest] = field(default_factory=list)
    user: str = HTTP_USER
    password: str = HTTP_PASSWORD

    def url(self, upstream: Upstream) -> str:
        return f"http://127.0.0.1:{self.port}/{upstream.name}"

    def take_requests(self) -> list[HttpRequest]:
        """The requests since the last call (and forget them)."""
        taken, self.requests[:] = list(self.requests), []
        return taken


def _http_backend() -> str:
    exec_path = subprocess.run(
        ["git", "--exec-path"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return str(Path(exec_path) / "git-http-backend")


def _v2_command(body: bytes) -> str | None:
    """The ``command=`` of a protocol-v2 request body (pkt-lines), if it has one."""
    with contextlib.suppress(ValueError):
        length = int(body[:4], 16)
        first = body[4:length].decode().strip()
        if first.startswith("command="):
            return first.removeprefix("command=")
    return None


def _make_handler(root: Path, log: list[HttpRequest]) -> type[BaseHTTPRequestHandler]:
    """A handler running ``git http-backend`` as CGI for ``root``, behind basic auth."""
    backend = _http_backend()
    expected = "Basic " + base64.b64encode(f"{HTTP_USER}:{HTTP_PASSWORD}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().strip().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            body = self._body() if self.command == "POST" else b""
            gzipped = self.headers.get("Content-Encoding") == "gzip"
            plain = gzip.decompress(body) if gzipped else body
            command = _v2_command(plain)
            if self.headers.get("Authorization") != expected:
                log.append(HttpRequest(self.command, parts.path, parts.query, 401, command, plain))
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.end_headers()
                return
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_PROJECT_ROOT": str(root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": os.devnull,
                "REQUEST_METHOD": self.command,
                "PATH_INFO": parts.path,
                "QUERY_STRING": parts.query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_USER": HTTP_USER,
                "REMOTE_ADDR": "127.0.0.1",
                "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            }
            proc = subprocess.run([backend], input=body, env=env, capture_output=True, check=False)
            head, _, payload = proc.stdout.partition(b"\r\n\r\n")
            status, headers = 200, []
            for line in head.decode().split("\r\n"):
                key, _, value = line.partition(":")
                if key.lower() == "status":
                    status = int(value.split()[0])
                elif key:
                    headers.append((key, value.strip()))
            log.append(HttpRequest(self.command, parts.path, parts.query, status, command, plain))
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _handle
        do_POST = _handle

    return Handler


@pytest.fixture(scope="session")
def git_http(git_root: Path) -> Iterator[GitHttpServer]:
    """Smart HTTP (``git http-backend``) with basic auth ``HTTP_USER``/``HTTP_PASSWORD``.

    Every request is logged, with the protocol-v2 command (``ls-refs``, ``fetch``) it carried,
    so tests can count what a client really asked the server for.
    """
    log: list[HttpRequest] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(git_root, log))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield GitHttpServer(port=int(server.server_address[1]), requests=log)
    server.shutdown()
    server.server_close()
    thread.join(5)


# ---------------------------------------------------------------------------------------------
# sshd


@dataclass(frozen=True)
class SshServer:
    port: int
    user: str
    identity: Path
    """The client's private key, authorised on the server."""
    known_hosts: Path
    """A known_hosts file holding the server's real host key."""
    wrong_known_hosts: Path
    """A known_hosts file listing some other key for this host."""

    def url(self, upstream: Upstream) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{upstream.bare}"


def _keygen(path: Path) -> str:
    """Make an ed25519 key pair at ``path``; return the public key line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return Path(f"{path}.pub").read_text().strip()


@pytest.fixture(scope="session")
def ssh_server(git_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """``sshd`` on a free high port that accepts one client key and serves ``git_root``.

    Skips when OpenSSH's server or client is not installed (Debian: openssh-server,
    openssh-client).
    """
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(sshd).is_file() or shutil.which("ssh") is None:
        pytest.skip("sshd/ssh not installed (apt-get install openssh-server openssh-client)")
    d = tmp_path_factory.mktemp("sshd")
    host_pub = _keygen(d / "host_key")
    client_pub = _keygen(d / "client_key")
    other_pub = _keygen(d / "other_key")
    (d / "authorized_keys").write_text(client_pub + "\n")
    user = (
        os.environ.get("USER")
        or subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    for _attempt in range(5):
        port = free_port()
        config = d / "sshd_config"
        config.write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\n"
            f"PidFile {d / 'sshd.pid'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            "PermitRootLogin prohibit-password\nLogLevel ERROR\n"
            f"SetEnv PATH={os.environ.get('PATH', '/usr/bin:/bin')}\n"
        )
        proc = subprocess.Popen(
            [sshd, "-D", "-e", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=(d / "sshd.log").open("wb"),
        )
        if _wait_for_port(port, proc):
            break
        _stop(proc)
    else:
        pytest.skip(f"sshd did not start: {(d / 'sshd.log').read_text()[-500:]}")
    host_key = " ".join(host_pub.split()[:2])
    other_key = " ".join(other_pub.split()[:2])
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key}\n")
    (d / "wrong_known_hosts").write_text(f"[127.0.0.1]:{port} {other_key}\n")
    yield SshServer(
        port=port,
        user=user,
        identity=d / "client_key",
        known_hosts=d / "known_hosts",
        wrong_known_hosts=d / "wrong_known_hosts",
    )
    _stop(proc)


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connections are refused)."""
    return free_port()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections but never answers (a hung server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])
