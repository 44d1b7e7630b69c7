"""Block directories to layer tarballs and back: reproducible packing, refusing extraction.

Extraction is written for hostile input: a registry (or anyone who can push to it) must not be
able to write outside the block directory, create device files, or fill the disk. Every check
runs on what the stream really contains, never on sizes a header claims.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from controller.errors import BlockError, Problem, UnsafeArchiveError

_CHUNK = 1024 * 1024
_WHITEOUT = ".wh."  # the OCI image spec's whiteout prefix
_OPAQUE = ".wh..wh..opq"


class PackedLayer:
    """A block directory as one gzip tar layer, plus the digests the image config records."""

    def __init__(self, tar_bytes: bytes) -> None:
        self.diff_id = "sha256:" + hashlib.sha256(tar_bytes).hexdigest()
        self.uncompressed_size = len(tar_bytes)
        # mtime=0 and no file name in the gzip header: the same directory gives the same digest.
        self.data = gzip.compress(tar_bytes, compresslevel=6, mtime=0)
        self.digest = "sha256:" + hashlib.sha256(self.data).hexdigest()


def pack_block(block_dir: Path, *, limit: int) -> PackedLayer:
    """Tar and gzip ``block_dir`` the way Polycrate does, but reproducibly.

    Entries are relative paths (``block.poly``, ``templates/x.yml``), sorted, with permission
    bits only, owner 0:0 and mtime 0. Like Polycrate, only directories and regular files are
    archived; anything else is refused rather than silently dropped.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in _walk_sorted(block_dir):
            rel = path.relative_to(block_dir).as_posix()
            info = path.lstat()
            entry = tarfile.TarInfo(rel)
            entry.mode = stat.S_IMODE(info.st_mode) & 0o755
            entry.mtime = 0
            if stat.S_ISDIR(info.st_mode):
                entry.type = tarfile.DIRTYPE
                tar.addfile(entry)
            elif stat.S_ISREG(info.st_mode):
                entry.size = info.st_size
                with path.open("rb") as handle:
                    tar.addfile(entry, handle)
            else:
                kind = "a symlink" if stat.S_ISLNK(info.st_mode) else "not a regular file"
                raise BlockError(
                    [
                        Problem(
                            rel,
                            None,
                            f"is {kind}; a block archive holds only directories and regular "
                            "files (Polycrate refuses the same), replace it with a copy",
                        )
                    ]
                )
            if buffer.tell() > limit:
                raise UnsafeArchiveError(
                    f"block directory {block_dir} is larger than the limit of {limit} bytes "
                    "(CRATEKEEPER_MAX_BLOCK_SIZE); a pull would refuse it"
                )
    tar_bytes = buffer.getvalue()
    if len(tar_bytes) > limit:
        raise UnsafeArchiveError(
            f"block directory {block_dir} is larger than the limit of {limit} bytes "
            "(CRATEKEEPER_MAX_BLOCK_SIZE); a pull would refuse it"
        )
    return PackedLayer(tar_bytes)


def _walk_sorted(root: Path) -> list[Path]:
    found: list[Path] = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        found.append(entry)
        if entry.is_dir() and not entry.is_symlink():
            found.extend(_walk_sorted(entry))
    return found


class _MeteredReader:
    """Reads a stream while hashing it and refusing to go past ``budget`` bytes (what is left
    of ``limit`` after the layers before)."""

    def __init__(self, raw: BinaryIO, budget: int, limit: int) -> None:
        self._raw = raw
        self._budget = budget
        self._limit = limit
        self.size = 0
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.size += len(data)
        if self.size > self._budget:
            raise UnsafeArchiveError(
                f"block archive unpacks to more than the limit of {self._limit} bytes "
                "(CRATEKEEPER_MAX_BLOCK_SIZE); refusing to unpack it"
            )
        self.sha256.update(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


def extract_layer(stream: BinaryIO, dest: Path, *, gzipped: bool, limit: int) -> str:
    """Unpack one layer tarball into the empty directory ``dest``; return its diff_id.

    The one-layer case of :class:`Flattener`, with every check it makes.
    """
    flattener = Flattener(dest, limit=limit)
    diff_id = flattener.add_layer(stream, gzipped=gzipped)
    flattener.finish()
    return diff_id


class Flattener:
    """Unpacks an image's layers in order into the empty directory ``root``, as overlayfs would.

    Later layers replace what earlier ones wrote; whiteouts (``.wh.NAME`` deletes NAME of the
    layers below, ``.wh..wh..opq`` empties its directory of what the layers below put there)
    are honoured and never written. Refuses, with :class:`UnsafeArchiveError`: absolute paths,
    ``..``, writing or deleting through a symlink, symlinks or hardlinks that point outside the
    block, device files, fifos and other special files, and more than ``limit`` bytes of
    uncompressed tar stream over all layers together. The caller owns ``root`` (a temporary
    directory) and deletes it when this raises.
    """

    def __init__(self, root: Path, *, limit: int) -> None:
        self.root = root
        self.budget = limit
        self.limit = limit
        self.files: set[PurePosixPath] = set()  # regular files, for hardlinks
        self.layer: set[PurePosixPath] = set()  # what the current layer wrote
        self.layer_dirs: set[PurePosixPath] = set()  # and the directories it wrote into

    def add_layer(self, stream: BinaryIO, *, gzipped: bool) -> str:
        """Apply one layer on top of the ones before; return its diff_id."""
        source: BinaryIO = (
            gzip.GzipFile(fileobj=stream, mode="rb") if gzipped else stream  # type: ignore[assignment]
        )
        metered = _MeteredReader(source, self.budget, self.limit)
        self.layer = set()
        self.layer_dirs = set()
        try:
            with tarfile.open(fileobj=metered, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    self._member(tar, member)
            metered.drain()  # the diff_id covers the whole stream, padding included
        except (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise UnsafeArchiveError(
                f"block layer is not a valid {'gzip ' if gzipped else ''}tar archive ({exc})"
            ) from exc
        self.budget -= metered.size
        return "sha256:" + metered.sha256.hexdigest()

    def finish(self) -> frozenset[PurePosixPath]:
        """Check the result as a whole (symlink chains that each looked harmless); return the
        paths the last layer (the block layer) wrote."""
        _check_symlinks_resolve_inside(self.root)
        parents = {parent for rel in self.layer for parent in rel.parents}
        return frozenset(self.layer | parents - {PurePosixPath()})

    def _member(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        rel = _safe_name(member.name, what="entry")
        if rel is None:  # the archive root itself ("." or "./")
            return
        if rel.name == _OPAQUE:
            self._opaque(rel.parent)
            return
        if rel.name.startswith(_WHITEOUT):
            self._whiteout(rel)
            return
        target = self._prepare(rel, member)
        self.layer.add(rel)
        self.layer_dirs.update(rel.parents)
        if member.isdir():
            target.mkdir(mode=0o755, exist_ok=True)
            target.chmod((member.mode & 0o755) | 0o700)
        elif member.isreg() and not member.issparse():
            self._write_file(tar, member, target, rel)
        elif member.issym():
            _check_symlink(rel, member.linkname)
            target.symlink_to(member.linkname)
        elif member.islnk():
            linked = _safe_name(member.linkname, what=f"hardlink {rel} target")
            if linked is None or linked not in self.files:
                raise UnsafeArchiveError(
                    f"block archive entry {rel} is a hardlink to {member.linkname!r}, "
                    "which is not a file earlier in the block; refusing to unpack it"
                )
            os.link(self.root.joinpath(*linked.parts), target, follow_symlinks=False)
            self.files.add(rel)
        else:
            raise UnsafeArchiveError(
                f"block archive entry {rel} is {_kind(member)}; a block may only hold "
                "directories, regular files and symlinks inside the block"
            )

    def _whiteout(self, rel: PurePosixPath) -> None:
        """``dir/.wh.NAME``: NAME, as the layers below left it, is gone."""
        name = rel.name.removeprefix(_WHITEOUT)
        if name in ("", ".", ".."):
            raise UnsafeArchiveError(
                f"block archive entry {rel} is a whiteout of {name!r}; refusing to unpack it"
            )
        self._hide(rel.parent / name, rel)

    def _opaque(self, directory: PurePosixPath) -> None:
        """``dir/.wh..wh..opq``: what the layers below put in ``dir`` is gone."""
        why = directory / _OPAQUE
        here = self._directory(directory, why)
        if here is not None:
            for child in sorted(here.iterdir()):
                self._hide(directory / child.name, why)

    def _hide(self, rel: PurePosixPath, why: PurePosixPath) -> None:
        """Remove what the layers below left at ``rel``, keeping what this layer wrote there
        (a whiteout applies to the layers below only, wherever it comes in the layer)."""
        if rel not in self.layer and rel not in self.layer_dirs:
            self._remove(rel, why)
            return
        parent = self._directory(rel.parent, why)
        here = None if parent is None else parent / rel.name
        if here is not None and here.is_dir() and not here.is_symlink():
            for child in sorted(here.iterdir()):  # this layer writes into it: clear the rest
                self._hide(rel / child.name, why)

    def _remove(self, rel: PurePosixPath, why: PurePosixPath) -> None:
        parent = self._directory(rel.parent, why)
        if parent is None:
            return
        target = parent / rel.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
            self.files = {f for f in self.files if rel not in f.parents}
            self.layer = {f for f in self.layer if rel not in f.parents}
        elif target.is_symlink() or target.exists():
            target.unlink()
        self.files.discard(rel)

    def _directory(self, rel: PurePosixPath, why: PurePosixPath) -> Path | None:
        """The existing real directory ``rel`` (None if absent); never through a symlink."""
        current = self.root
        for part in rel.parts:
            current = current / part
            if current.is_symlink():
                raise UnsafeArchiveError(
                    f"block archive entry {why} would reach through the symlink "
                    f"{current.relative_to(self.root)}; refusing to unpack it"
                )
            if not current.is_dir():
                return None
        return current

    def _prepare(self, rel: PurePosixPath, member: tarfile.TarInfo) -> Path:
        """Create the parents of ``rel`` and clear the way for it, never following a symlink."""
        current = self.root
        for part in rel.parts[:-1]:
            current = current / part
            if current.is_symlink():
                raise UnsafeArchiveError(
                    f"block archive entry {rel} would be written through the symlink "
                    f"{current.relative_to(self.root)}; refusing to unpack it"
                )
            if not current.exists():
                current.mkdir(mode=0o755)
            elif not current.is_dir():
                raise UnsafeArchiveError(
                    f"block archive entry {rel} needs {current.relative_to(self.root)} to be a "
                    "directory, but the archive made it a file"
                )
        target = current / rel.parts[-1]
        if target.is_symlink() or target.exists():
            if target.is_dir() and not target.is_symlink():
                if member.isdir():
                    return target
                if rel in self.layer:
                    raise UnsafeArchiveError(
                        f"block archive entry {rel} replaces a directory; refusing to unpack it"
                    )
                self._remove(rel, rel)  # a layer above replaces a lower directory
                return target
            target.unlink()
            self.files.discard(rel)
        return target

    def _write_file(
        self, tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, rel: PurePosixPath
    ) -> None:
        source = tar.extractfile(member)
        if source is None:  # pragma: no cover - isreg() members always have data
            raise UnsafeArchiveError(f"block archive entry {rel} has no data")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = os.open(target, flags, 0o600)
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(_CHUNK):
                out.write(chunk)
        target.chmod((member.mode & 0o755) | 0o600)
        self.files.add(rel)


def _safe_name(name: str, *, what: str) -> PurePosixPath | None:
    """The archive path as relative parts, or None for the root; refuses escaping names."""
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(
            f"block archive {what} {name!r} is an absolute path; refusing to unpack it"
        )
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(
            f"block archive {what} {name!r} contains '..'; refusing to unpack it"
        )
    return PurePosixPath(*parts) if parts else None


def _check_symlink(rel: PurePosixPath, link: str) -> None:
    if not link or link.startswith("/"):
        raise UnsafeArchiveError(
            f"block archive entry {rel} is a symlink to {link!r}, outside the block; "
            "refusing to unpack it"
        )
    depth = len(rel.parts) - 1
    for part in link.split("/"):
        if part == "..":
            depth -= 1
        elif part not in ("", "."):
            depth += 1
        if depth < 0:
            raise UnsafeArchiveError(
                f"block archive entry {rel} is a symlink to {link!r}, outside the block; "
                "refusing to unpack it"
            )


def _check_symlinks_resolve_inside(root: Path) -> None:
    """Catch chains (``a -> .``, ``b -> a/..``) that each look harmless on their own."""
    real_root = root.resolve()
    for directory, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            path = Path(directory) / name
            if path.is_symlink():
                resolved = Path(os.path.realpath(path))
                if resolved != real_root and real_root not in resolved.parents:
                    raise UnsafeArchiveError(
                        f"block archive entry {path.relative_to(root)} is a symlink that "
                        "resolves outside the block; refusing to unpack it"
                    )


def _kind(member: tarfile.TarInfo) -> str:
    if member.ischr() or member.isblk():
        return "a device file"
    if member.isfifo():
        return "a fifo"
    if member.issparse():
        return "a sparse file"
    return f"an unsupported entry (type {member.type!r})"
