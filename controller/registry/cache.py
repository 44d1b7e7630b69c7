"""A content-addressed blob store: ``<cache_dir>/oci/blobs/sha256/<hex>``, as in an OCI layout.

A blob enters the store only after its digest was verified, and is verified again each time it
is used, so a corrupted or edited cache file is fetched again rather than trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

_CHUNK = 1024 * 1024


class BlobCache:
    """Blobs by digest under ``root``; safe for several processes sharing one cache dir."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        algorithm, _, hexdigest = digest.partition(":")
        return self.root / "blobs" / algorithm / hexdigest

    def lookup(self, digest: str, size: int | None = None) -> Path | None:
        """The cached blob, if present and intact; a damaged file is removed."""
        path = self.path(digest)
        if not path.is_file():
            return None
        if (size is None or path.stat().st_size == size) and _sha256(path) == digest:
            return path
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return None

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
        return path


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()
