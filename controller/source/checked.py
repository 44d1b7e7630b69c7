"""What each ref last resolved to, kept in the cache repository: the no-op check's shortcut.

When the remote ref still points at the commit this file names, the check is the one
``git ls-remote`` and nothing else (DESIGN §4): no ``cat-file``, ``rev-parse`` or ``log``. The
file lives inside the cache repository, so it goes with the cache; it is written only after the
commit was fetched, the ref pointed at it and the sub-path was checked, holding the cache lock.
A file that does not validate is ignored (the full path runs and rewrites it).
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from controller.source.revision import Revision
from controller.source.tree import GitTree

__all__ = ["recall", "remember"]


class Checked(BaseModel):
    """``<cache>/cratekeeper/checked/<hash of ref>.json``: one ref's last resolution."""

    model_config = ConfigDict(extra="ignore")

    ref: str
    """The full ref name on the remote (``refs/heads/main``), or the SHA of a pinned commit."""
    sha: str
    subject: str
    author: str
    time: datetime
    subpaths: list[str]
    """The sub-paths (normalised, ``""`` for the root) that are directories at ``sha``."""


def _path(git_dir: Path, ref: str) -> Path:
    name = hashlib.sha256(ref.encode()).hexdigest()[:24]
    return git_dir / "cratekeeper" / "checked" / f"{name}.json"


def _load(git_dir: Path, ref: str) -> Checked | None:
    try:
        found = Checked.model_validate_json(_path(git_dir, ref).read_bytes())
    except (OSError, ValidationError):
        return None
    return found if found.ref == ref else None


def recall(git_dir: Path, ref: str, sha: str, subpath: str) -> Revision | None:
    """The revision ``ref`` resolved to when it last pointed at ``sha`` with ``subpath``
    checked, or None (then resolve it the full way and :func:`remember` it)."""
    found = _load(git_dir, ref)
    if found is None or found.sha != sha or subpath not in found.subpaths:
        return None
    return Revision(
        sha=found.sha,
        subject=found.subject,
        author=found.author,
        time=found.time,
        tree=GitTree(git_dir=git_dir, commit=found.sha, subpath=subpath),
    )


def remember(git_dir: Path, ref: str, revision: Revision) -> None:
    """Record that ``ref`` points at ``revision`` (call with the cache lock held)."""
    found = _load(git_dir, ref)
    subpaths = found.subpaths if found is not None and found.sha == revision.sha else []
    record = Checked(
        ref=ref,
        sha=revision.sha,
        subject=revision.subject,
        author=revision.author,
        time=revision.time,
        subpaths=sorted({*subpaths, revision.tree.subpath}),
    )
    path = _path(git_dir, ref)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(record.model_dump_json())
    tmp.replace(path)  # atomic: a reader sees the old record or the new one
