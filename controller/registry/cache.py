"""A content-addressed blob store: ``<cache_dir>/oci/blobs/sha256/<hex>``, as in an OCI layout.

A blob enters the store only after its digest was verified, and is verified again each time it
is used, so a corrupted or edited cache file is fetched again rather than trusted. The store
keeps to a byte budget: after each new blob, the least recently used ones (by mtime, touched on
every use) are removed until the total fits, never one a pull of this process is using.
Concurrent fetches of one digest by threads of this process download it once (single-flight).

The store holds content, not permission: :func:`controller.registry.pull.pull_block` serves a
cached blob only under a manifest the tenant's own credentials were checked against.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, ClassVar

_CHUNK = 1024 * 1024


class BlobCache:
    """Blobs by digest under ``root`` within ``max_bytes``; safe for threads and processes."""

    # Process-wide, keyed by (root, digest): every BlobCache over one directory shares them.
    _guard: ClassVar[threading.Lock] = threading.Lock()
    _flights: ClassVar[dict[tuple[Path, str], tuple[threading.Lock, list[int]]]] = {}
    _in_use: ClassVar[Counter[tuple[Path, str]]] = Counter()

    def __init__(self, root: Path, *, max_bytes: int | None = None) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def path(self, digest: str) -> Path:
        algorithm, _, hexdigest = digest.partition(":")
        return self.root / "blobs" / algorithm / hexdigest

    def lookup(self, digest: str, size: int | None = None) -> Path | None:
        """The cached blob, if present and intact (and marked used); a damaged one is removed."""
        path = self.path(digest)
        if not path.is_file():
            return None
        if (size is None or path.stat().st_size == size) and _sha256(path) == digest:
            with contextlib.suppress(OSError):
                os.utime(path)  # least recently used = oldest mtime
            return path
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return None

    def fetch(self, digest: str, size: int | None, download: Callable[[BinaryIO], None]) -> Path:
        """The blob from the store, or ``download``-ed into it once however many threads ask."""
        cached = self.lookup(digest, size)
        if cached is not None:
            return cached
        with self._flight(digest):
            cached = self.lookup(digest, size)  # another thread may have just fetched it
            if cached is not None:
                return cached
            return self.store(digest, download)

    def store(self, digest: str, fetch: Callable[[BinaryIO], None]) -> Path:
        """Run ``fetch`` (which writes and verifies the blob) into a temp file, then publish it.

        ``fetch`` raises if the content does not match ``digest``; the temp file is removed and
        nothing enters the store.
        """
        path = self.path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".incoming-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                fetch(handle)
                handle.flush()
                os.fsync(handle.fileno())
            Path(tmp_name).replace(path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                Path(tmp_name).unlink()
            raise
        self.evict(keep=digest)
        return path

    @contextlib.contextmanager
    def using(self, *digests: str) -> Iterator[None]:
        """Keep ``digests`` from eviction while a pull reads them."""
        keys = [(self.root, d) for d in digests]
        with self._guard:
            self._in_use.update(keys)
        try:
            yield
        finally:
            with self._guard:
                self._in_use.subtract(keys)
                for key in keys:
                    if self._in_use[key] <= 0:
                        del self._in_use[key]

    def evict(self, *, keep: str | None = None) -> int:
        """Remove least recently used blobs until the store fits its budget; bytes removed."""
        if self.max_bytes is None:
            return 0
        blobs = _blobs(self.root)
        total = sum(size for _, _, size in blobs)
        removed = 0
        with self._guard:
            busy = {digest for (root, digest) in self._in_use if root == self.root}
        for _, path, size in sorted(blobs):
            if total <= self.max_bytes:
                break
            digest = f"{path.parent.name}:{path.name}"
            if digest == keep or digest in busy:
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                total -= size
                removed += size
        return removed

    @contextlib.contextmanager
    def _flight(self, digest: str) -> Iterator[None]:
        key = (self.root, digest)
        with self._guard:
            lock, waiting = self._flights.setdefault(key, (threading.Lock(), [0]))
            waiting[0] += 1
        try:
            with lock:
                yield
        finally:
            with self._guard:
                waiting[0] -= 1
                if waiting[0] == 0:
                    del self._flights[key]


def cache_size(root: Path) -> int:
    """Bytes held by the blob store under ``root`` (for the operator's cache-size metric)."""
    return sum(size for _, _, size in _blobs(root))


def _blobs(root: Path) -> list[tuple[float, Path, int]]:
    """(mtime, path, size) of every published blob (temp files of fetches in flight excluded)."""
    found = []
    for algorithm in (root / "blobs").glob("*"):
        for path in algorithm.glob("*"):
            if path.name.startswith("."):
                continue
            with contextlib.suppress(FileNotFoundError):
                info = path.stat()
                found.append((info.st_mtime, path, info.st_size))
    return found


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()
