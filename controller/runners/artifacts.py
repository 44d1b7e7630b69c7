"""A Workspace's kept block artifacts: packed after a run, laid back before the next ones.

What a run writes under ``artifacts/blocks/<block>/`` (an inventory a block produces, a
generated kubeconfig for a later step...) is kept for that Workspace (DESIGN §2) and laid back
into the export before later runs, as Polycrate keeps it in its workspace directory. The tree
travels as one gzip tar (:func:`pack`, :func:`unpack`) through an :class:`ArtifactStore`: a file
next to the CLI's state file (:class:`DirectoryStore`), or one Secret per Workspace in the
operator (:class:`controller.runners.artifact_secret.SecretStore`).

Bounded: :data:`MAX_PACKED` bytes compressed (a Secret holds at most 1 MiB, and artifacts are
state, not storage). Over it, :func:`pack` raises :class:`~controller.errors.ArtifactsError`
naming the largest files, and nothing new is kept: a half-kept tree would hand the next block
a stale mix. Only regular files and directories are kept; links and special files are left out
(named in the warning log). :func:`unpack` refuses anything but regular files and directories
under ``artifacts/blocks/`` (no absolute paths, no ``..``, no links) and stops past
:data:`MAX_UNPACKED` bytes.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import os
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import Protocol

from controller.errors import ArtifactsError

log = logging.getLogger(__name__)

KEPT = "artifacts/blocks"
"""The kept tree, relative to the workspace root."""
MAX_PACKED = 512 * 1024
"""Bytes of a packed tree (gzip): over it, nothing new is kept and the save fails."""
MAX_UNPACKED = 16 * 1024 * 1024
"""Bytes an archive may unpack to (a guard against a crafted or corrupt archive)."""
MAX_MEMBERS = 10_000


class ArtifactStore(Protocol):
    """Where one Workspace's kept artifacts live between runs."""

    async def load(self) -> bytes | None:
        """The packed tree saved last (:func:`pack`), or ``None`` when nothing was kept yet."""
        ...

    async def save(self, data: bytes) -> None:
        """Keep ``data`` (a :func:`pack`), replacing what was kept."""
        ...


def pack(root: Path) -> bytes:
    """The ``artifacts/blocks/`` tree under the workspace ``root`` as a reproducible gzip tar
    (sorted, no times or owners), so an unchanged tree packs to the same bytes."""
    base = root / KEPT
    buffer = io.BytesIO()
    skipped: list[str] = []
    sizes: list[tuple[int, str]] = []
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in sorted(base.rglob("*")) if base.is_dir() else ():
            name = path.relative_to(base).as_posix()
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                skipped.append(name)
                continue
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                continue
            info.size, info.mode = path.stat().st_size, 0o644
            sizes.append((info.size, name))
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    if skipped:
        log.warning("artifacts: not kept (only files and folders are): %s", ", ".join(skipped))
    data = buffer.getvalue()
    if len(data) > MAX_PACKED:
        largest = ", ".join(f"{name} ({size} bytes)" for size, name in sorted(sizes)[-3:])
        raise over_budget(len(data), largest)
    return data


def over_budget(size: int, largest: str, where: str = "") -> ArtifactsError:
    """The error of a tree that packs to ``size`` bytes, over :data:`MAX_PACKED` (``where``: a
    prefix such as "the Job's "), naming its ``largest`` files and what to do."""
    return ArtifactsError(
        f"{where}{KEPT}/ packs to {size} bytes, over the {MAX_PACKED} bytes cratekeeper keeps "
        f"per Workspace (largest: {largest}); nothing new was kept. Keep large outputs "
        "outside artifacts/blocks/ (they are not laid back) or make them smaller"
    )


def unpack(data: bytes, root: Path) -> list[str]:
    """Lay a :func:`pack` back under ``root/artifacts/blocks/``, over what is there (files in
    the workspace's Git tree of the same name are replaced); the files written."""
    base = root / KEPT
    written: list[str] = []
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            members = tar.getmembers()
            if len(members) > MAX_MEMBERS:
                raise ArtifactsError(
                    f"kept artifacts hold {len(members)} entries; at most {MAX_MEMBERS}"
                )
            for member in members:
                name = _safe_name(member)
                target = base / name
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                total += member.size
                if total > MAX_UNPACKED:
                    raise ArtifactsError(
                        f"kept artifacts unpack to more than {MAX_UNPACKED} bytes; refused"
                    )
                source = tar.extractfile(member)
                if source is None:
                    raise ArtifactsError(f"kept artifacts: {name!r} cannot be read")
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_symlink() or target.is_dir():
                    raise ArtifactsError(
                        f"kept artifacts: {KEPT}/{name} is a link or a folder in the workspace"
                    )
                with source, target.open("wb") as out:
                    out.write(source.read(member.size + 1)[: member.size])
                written.append(name)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArtifactsError(f"kept artifacts cannot be laid back: {exc}") from None
    return written


def _safe_name(member: tarfile.TarInfo) -> str:
    """The member's path under the kept tree, or an error: only plain relative names of files
    and folders, never links, devices, absolute paths or ``..``."""
    path = PurePosixPath(member.name)
    if not (member.isfile() or member.isdir()):
        raise ArtifactsError(f"kept artifacts: {member.name!r} is not a file or a folder")
    if path.is_absolute() or ".." in path.parts or not path.parts or "\\" in member.name:
        raise ArtifactsError(f"kept artifacts: {member.name!r} is not a path inside the tree")
    return path.as_posix()


class DirectoryStore:
    """Kept artifacts as one file (``cratekeeper reconcile``: next to its state file)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def load(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    async def save(self, data: bytes) -> None:
        """Write atomically, 0600 (artifacts may hold credentials a block produced)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            Path(tmp).replace(self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                Path(tmp).unlink()
