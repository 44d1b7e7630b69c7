"""A real Docker engine for tests, and the test execution image built on it offline.

The session starts its own ``dockerd`` (Debian's ``docker.io``) with a private socket, exec-root
and pidfile, no bridge and no iptables rules, so it touches nothing of the machine's own engine
or network. Each checkout (and each pytest-xdist worker) has its own engine: its data root is
``~/.cache/cratekeeper-tests/engines/<checkout>-<worker>/`` (``<checkout>``: a hash of this
repository's path; ``CRATEKEEPER_TEST_DOCKER_ROOT`` overrides the whole path), locked while a
session uses it. A second session of the same checkout waits for the lock (up to
:data:`LOCK_WAIT` seconds) instead of skipping; two checkouts never meet. Engines unused for
:data:`STALE_DAYS` days are removed (fresh clones, such as CI's, leave theirs behind).

The images are built once per machine and shared between engines as tarballs in
``~/.cache/cratekeeper-tests/images/`` (written under a lock, loaded by every other engine):

1. a Debian bookworm root filesystem by ``debootstrap --variant=minbase`` (python3 is 3.11, as
   the project's), from the Debian mirror apt already uses, imported as
   :data:`BASE_IMAGE` -- no image registry is needed;
2. ``execution-test.Dockerfile`` on it: ansible-core and the kubernetes client from PyPI at the
   test virtualenv's versions, and the virtualenv's kubernetes.core collection. The tag carries
   a hash of those inputs, so a change rebuilds and an unchanged tree reuses the image.

Fixtures::

    docker_engine     session  DockerEngine (base_url, client); skips unless root with dockerd
    execution_image   session  the test execution image's tag; skips if it cannot be built

Both skip with the reason (no dockerd, not root, the daemon did not start, no debootstrap, the
build failed) rather than fail: the docker runner's tests need a privileged machine. In CI a skip
fails the run (tests/support/ci_skips.py). Tests using ``docker_engine`` are marked
``xdist_group`` so that ``--dist loadgroup`` keeps them on one worker and one engine starts; with
pytest 9.2 and pytest-xdist 3.8 that grouping has no effect (xdist renames ``item._nodeid``,
which pytest 9.2 no longer reads), so each worker that gets a docker test starts its own engine
on its own data root -- correct, at the cost of a second engine start and image load (~10 s).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DOCKERFILE = HERE / "execution-test.Dockerfile"
BASE_IMAGE = "cratekeeper-test-base:bookworm"
IMAGE_REPOSITORY = "cratekeeper-test-execution"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
START_TIMEOUT = 60.0
LOCK_WAIT = 1800.0
STALE_DAYS = 3
XDIST_GROUP = "docker-engine"


@dataclass
class DockerEngine:
    """A running engine: ``base_url`` is ``unix://<socket>``; ``client`` a DockerClient."""

    base_url: str
    client: Any
    log: Path

    def containers(self, label: str) -> list[Any]:
        """All containers (running or not) carrying ``label``."""
        return list(self.client.containers.list(all=True, filters={"label": label}))


def cache_root() -> Path:
    """Everything these fixtures keep between sessions."""
    return Path.home() / ".cache" / "cratekeeper-tests"


def engine_root() -> Path:
    """This checkout's (and this xdist worker's) engine data root."""
    configured = os.environ.get("CRATEKEEPER_TEST_DOCKER_ROOT")
    if configured:
        return Path(configured)
    checkout = hashlib.sha256(str(REPO).encode()).hexdigest()[:12]
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return cache_root() / "engines" / f"{checkout}-{worker}"


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups into the node ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the engine's tests for one xdist worker (``--dist loadgroup``; see the docstring)."""
    for item in items:
        if "docker_engine" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group(XDIST_GROUP))


@contextlib.contextmanager
def _locked(path: Path, what: str, wait: float = LOCK_WAIT) -> Iterator[None]:
    """An exclusive lock on ``path``, waiting up to ``wait`` seconds for another session."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test session held {what} ({path}) for {wait:g}s")
                time.sleep(1.0)
        yield


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    """A private dockerd for the session, stopped at the end."""
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        pytest.skip("dockerd is not installed (Debian: apt-get install docker.io)")
    if os.geteuid() != 0:
        pytest.skip("starting a Docker engine needs root")
    root = engine_root()
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_engines(keep=root)
    with _locked(root / ".lock", "this checkout's Docker engine"):
        (root / ".lock").touch()  # marks the engine as used (see _remove_stale_engines)
        # The socket path must stay short (unix sockets: 108 bytes), hence /tmp.
        run = Path(tempfile.mkdtemp(prefix="ckd-"))
        try:
            yield from _serve(dockerd, root, run)
        finally:
            _unmount_under(run)
            shutil.rmtree(run, ignore_errors=True)


def _remove_stale_engines(keep: Path) -> None:
    """Engines of checkouts gone or idle for :data:`STALE_DAYS` days (not locked by anyone)."""
    engines = cache_root() / "engines"
    cutoff = time.time() - STALE_DAYS * 86400
    legacy = cache_root() / "docker"  # the one shared engine of earlier versions
    for root in [*(engines.iterdir() if engines.is_dir() else ()), legacy]:
        lock_path = root / ".lock"
        with contextlib.suppress(OSError):
            if root == keep or lock_path.stat().st_mtime > cutoff:
                continue
            with lock_path.open("w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # in use: OSError, skip it
                shutil.rmtree(root / "data", ignore_errors=True)
            shutil.rmtree(root, ignore_errors=True)


def _serve(dockerd: str, root: Path, run: Path) -> Iterator[DockerEngine]:
    log = root / "dockerd.log"
    socket = run / "docker.sock"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                dockerd,
                f"--data-root={root / 'data'}",
                f"--exec-root={run / 'exec'}",
                f"--pidfile={run / 'docker.pid'}",
                f"-H=unix://{socket}",
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    client: Any = None
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while client is None:
            if proc.poll() is not None:
                pytest.skip(f"dockerd exited with {proc.returncode}: {_tail(log)}")
            if socket.exists():
                with contextlib.suppress(docker.errors.DockerException, OSError):
                    # The client asks the engine for its API version as it is made.
                    client = docker.DockerClient(base_url=f"unix://{socket}", timeout=120)
            if client is None and time.monotonic() > deadline:
                pytest.skip(f"dockerd did not answer within {START_TIMEOUT:g}s: {_tail(log)}")
            time.sleep(0.2)
        yield DockerEngine(base_url=f"unix://{socket}", client=client, log=log)
    finally:
        if client is not None:
            client.close()
        _stop(proc, run)


def _stop(proc: subprocess.Popen[bytes], run: Path) -> None:
    """SIGTERM (dockerd then stops its containers and containerd), SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
            return
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # containerd runs in a session of its own: a dockerd that died leaves it behind.
    with contextlib.suppress(OSError, ValueError):
        pid = int((run / "exec" / "containerd" / "containerd.pid").read_text())
        os.kill(pid, signal.SIGKILL)


def _unmount_under(directory: Path) -> None:
    """Unmount what dockerd left mounted below ``directory`` (its ``netns/default``)."""
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    points = [line.split()[1] for line in mounts if len(line.split()) > 1]
    for point in sorted((p for p in points if p.startswith(f"{directory}/")), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _tail(log: Path, lines: int = 5) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(log.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


@pytest.fixture(scope="session")
def execution_image(docker_engine: DockerEngine) -> str:
    """The test execution image's tag: in the engine, loaded from the shared tarball, or built."""
    collection = _kubernetes_core()
    versions = {
        "ANSIBLE_CORE_VERSION": importlib.metadata.version("ansible-core"),
        "KUBERNETES_VERSION": importlib.metadata.version("kubernetes"),
    }
    digest = hashlib.sha256(DOCKERFILE.read_bytes())
    digest.update(repr(sorted(versions.items())).encode())
    digest.update((collection / "MANIFEST.json").read_bytes())
    tag = f"{IMAGE_REPOSITORY}:{digest.hexdigest()[:12]}"
    client = docker_engine.client
    if _has_image(client, tag):
        return tag
    images = cache_root() / "images"
    saved = images / f"{tag.replace(':', '-')}.tar"
    with _locked(images / ".lock", "the shared test images"):
        if saved.is_file():
            with saved.open("rb") as archive:
                client.images.load(archive)
            if _has_image(client, tag):
                return tag
        if not _has_image(client, BASE_IMAGE):
            _import_base(client, images / "cratekeeper-test-base-bookworm.rootfs.tar")
        _build(client, tag, versions, collection)
        _save(client, tag, saved)
    return tag


def _build(client: Any, tag: str, versions: dict[str, str], collection: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="ck-image-") as tmp:
        context = Path(tmp)
        shutil.copy(DOCKERFILE, context / "Dockerfile")
        shutil.copy(_ca_bundle(), context / "ca-certificates.crt")
        shutil.copytree(collection, context / "kubernetes.core", ignore=_no_caches)
        try:
            client.images.build(
                path=str(context),
                tag=tag,
                buildargs={"BASE": BASE_IMAGE, **versions},
                network_mode="host",
                rm=True,
                forcerm=True,
            )
        except docker.errors.BuildError as exc:
            log = " ".join(str(step.get("stream", step.get("error", ""))) for step in exc.build_log)
            pytest.skip(f"the test execution image did not build: {exc.msg}: {log[-600:]}")


def _save(client: Any, tag: str, saved: Path) -> None:
    """``docker save`` of ``tag`` into the shared cache, replacing older execution images."""
    partial = saved.with_suffix(".partial")
    with partial.open("wb") as out:
        for chunk in client.images.get(tag).save(named=True):
            out.write(chunk)
    for old in saved.parent.glob(f"{IMAGE_REPOSITORY}-*.tar"):
        old.unlink(missing_ok=True)
    partial.rename(saved)


def _has_image(client: Any, tag: str) -> bool:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def _import_base(client: Any, rootfs_tar: Path) -> None:
    """Import :data:`BASE_IMAGE` from the shared rootfs tarball, debootstrapping it first."""
    if not rootfs_tar.is_file():
        _debootstrap(rootfs_tar)
    repository, tag = BASE_IMAGE.split(":")
    client.api.import_image_from_file(str(rootfs_tar), repository=repository, tag=tag)


def _debootstrap(rootfs_tar: Path) -> None:
    """A minimal bookworm with python3, as a tarball at ``rootfs_tar``."""
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        pytest.skip("debootstrap is not installed (Debian: apt-get install debootstrap)")
    with tempfile.TemporaryDirectory(prefix="ck-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        done = subprocess.run(
            [
                debootstrap,
                "--variant=minbase",
                "--include=python3,python3-venv",
                "bookworm",
                str(rootfs),
                _debian_mirror(),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"debootstrap failed: {(done.stdout + done.stderr)[-600:]}")
        for bulky in ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
            shutil.rmtree(rootfs / bulky, ignore_errors=True)
        partial = rootfs_tar.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True)
        partial.rename(rootfs_tar)


def _debian_mirror() -> str:
    """The Debian mirror apt uses here (deb822 or one-line sources), else deb.debian.org."""
    sources = Path("/etc/apt/sources.list.d")
    for path in sorted(sources.glob("*.sources")) if sources.is_dir() else []:
        for stanza in path.read_text().split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.MULTILINE)
            suites = re.search(r"^Suites:(.*)$", stanza, re.MULTILINE)
            if uris and suites and "bookworm" in suites[1].split():
                return uris[1]
    one_line = Path("/etc/apt/sources.list")
    if one_line.is_file():
        for line in one_line.read_text().splitlines():
            found = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", line)
            if found:
                return found[1]
    return DEFAULT_MIRROR


def _ca_bundle() -> Path:
    """The CA bundle the host's pip trusts, so the build works behind the same proxy."""
    for variable in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        value = os.environ.get(variable)
        if value and Path(value).is_file():
            return Path(value)
    return Path("/etc/ssl/certs/ca-certificates.crt")


def _kubernetes_core() -> Path:
    """The kubernetes.core collection the test virtualenv's ``ansible`` package ships."""
    import ansible_collections.kubernetes.core as core  # type: ignore[import-untyped]

    return Path(next(iter(core.__path__)))


def _no_caches(directory: str, names: list[str]) -> list[str]:
    return [name for name in names if name == "__pycache__"]
