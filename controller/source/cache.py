"""The fetch cache on disk: one bare repository per remote URL, locked while fetching into it."""

from __future__ import annotations

import fcntl
import hashlib
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from controller.source import gitcmd
from controller.source.remote import credential_free

__all__ = ["cache_repo", "locked", "remove_cached"]


def _git_dir(cache_dir: Path, url: str) -> Path:
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    tail = re.sub(r"[^A-Za-z0-9._-]+", "-", url.rstrip("/").rsplit("/", 1)[-1])[:40]
    return cache_dir / f"{tail}-{digest}.git"


def cache_repo(cache_dir: Path, url: str) -> Path:
    """The bare cache repository for ``url`` (credential-free), created on first use."""
    git_dir = _git_dir(cache_dir, url)
    if not (git_dir / "HEAD").is_file():
        git_dir.parent.mkdir(parents=True, exist_ok=True)
        gitcmd.git(["init", "--bare", "--quiet", str(git_dir)], cwd=git_dir.parent)
        # For people inspecting the cache; fetches always pass the URL explicitly.
        gitcmd.git(["config", "cratekeeper.url", url], git_dir=git_dir)
    return git_dir


@contextmanager
def locked(git_dir: Path) -> Iterator[None]:
    """Serialise fetches into one cache repository (two workspaces may share a remote)."""
    with (git_dir / "cratekeeper.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_cached(cache_dir: Path, url: str) -> Path | None:
    """Remove the cache repository of ``url`` (as a Workspace spells it; a password in it is
    ignored, as the fetch ignores it), after a fetch into it finished; the path removed, or
    None when there was none. The caller knows no one else still fetches ``url`` here."""
    git_dir = _git_dir(cache_dir, credential_free(url))
    if not (git_dir / "HEAD").is_file():
        return None
    with locked(git_dir):
        shutil.rmtree(git_dir)
    return git_dir
