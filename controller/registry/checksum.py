"""Polycrate's block checksum: an MD5 over a directory's paths and file contents.

Polycrate computes block checksums with ``hashdir.Make(dir, "md5")`` (github.com/gosimple/hashdir,
used by ``polycrate checksum``) and records them in the image labels
``polycrate.blocks.checksum`` / ``polycrate.blocks.checksum_algo`` (docs/block-artifacts.md).
:func:`polycrate_md5` reproduces that walk: ``filepath.Walk`` order (each directory's entries
sorted by name, a directory before its contents), and for every entry below the root its path
relative to the root with a leading ``/`` (``strings.TrimPrefix(path, root)``), followed for a
file by its bytes, all into one MD5, hex-encoded. hashdir's source was not at hand when this was
written; the byte layout is our reading of its documentation (docs/block-artifacts.md says how
to check it against ``polycrate checksum``), which is why a pull only compares it.
"""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Collection
from pathlib import Path, PurePosixPath

from controller.errors import RegistryError

ALGORITHM = "md5"
_CHUNK = 1024 * 1024


def _go_order(path: Path) -> bytes:
    """Go's ``sort.Strings``: byte order of the names."""
    return path.name.encode("utf-8", "surrogateescape")


def polycrate_md5(root: Path, only: Collection[PurePosixPath] | None = None) -> str:
    """The hex MD5 Polycrate records for the block directory ``root``.

    ``only`` limits the walk to these relative paths: a pulled block flattened onto a base
    image's files is checked over what the block layer itself holds, which is what Polycrate
    hashed when it pushed the block directory.
    """
    digest = hashlib.md5(usedforsecurity=False)
    _walk(root, PurePosixPath(), digest, None if only is None else set(only))
    return digest.hexdigest()


def _walk(
    directory: Path, rel: PurePosixPath, digest: hashlib._Hash, only: set[PurePosixPath] | None
) -> None:
    for path in sorted(directory.iterdir(), key=_go_order):
        entry = rel / path.name
        if only is not None and entry not in only:
            continue
        child = f"/{entry.as_posix()}"
        digest.update(child.encode("utf-8", "surrogateescape"))
        mode = path.lstat().st_mode
        if stat.S_ISDIR(mode):
            _walk(path, entry, digest, only)
            continue
        if path.is_dir():  # a symlink to a directory: Go's os.Open + io.Copy fails on it
            raise RegistryError(
                f"block entry {child.lstrip('/')} is a symlink to a directory; the Polycrate "
                "checksum cannot be computed over it"
            )
        try:
            with path.open("rb") as handle:  # like Go's os.Open, a symlink is followed
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
        except OSError as exc:
            raise RegistryError(
                f"block entry {child.lstrip('/')} cannot be read for the Polycrate checksum "
                f"({exc.strerror})"
            ) from None
