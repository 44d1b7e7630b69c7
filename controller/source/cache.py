"""The fetch cache on disk: one bare repository per remote URL, locked while fetching into it."""

from __future__ import annotations

import fcntl
import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from controller.source import gitcmd

__all__ = ["cache_repo", "locked"]


def cache_repo(cache_dir: Path, url: str) -> Path:
    """The bare cache repository for ``url`` (credential-free), created on first use."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    tail = re.sub(r"[^A-Za-z0-9._-]+", "-", url.rstrip("/").rsplit("/", 1)[-1])[:40]
    git_dir = cache_dir / f"{tail}-{digest}.git"
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
