"""Resolving a commit in a repository already on disk to a :class:`Revision`.

Used for the fetch cache and, through :func:`local_revision`, for the CLI's checkouts; no
function here touches the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from controller.errors import GitRefNotFoundError, SourceError
from controller.source import gitcmd
from controller.source.tree import GitTree

__all__ = ["Revision", "local_revision", "normalise_subpath", "read_revision", "resolve"]


@dataclass(frozen=True)
class Revision:
    """One resolved commit: what the rest of the pipeline reads and records in status."""

    sha: str
    subject: str
    author: str
    time: datetime
    """The commit (committer) time, timezone-aware."""
    tree: GitTree


def local_revision(repo_dir: Path, rev: str, subpath: str = "") -> Revision:
    """Resolve ``rev`` (any rev-parse expression: ``HEAD~1``, a short SHA, a branch) in a local
    Git repository, for the CLI's ``plan``/``reconcile`` on a checkout without any fetch.

    Raises :class:`GitRefNotFoundError` when ``rev`` does not name a commit and
    :class:`SourceError` when ``repo_dir`` is not a Git repository.
    """
    if not repo_dir.is_dir():
        raise SourceError(f"{repo_dir} is not a directory; pass a Git checkout")
    proc = gitcmd.run(["rev-parse", "--absolute-git-dir"], cwd=repo_dir)
    if proc.returncode != 0:
        # Git's own words matter here (e.g. "dubious ownership" and the safe.directory fix).
        raise SourceError(f"{repo_dir} is not a Git repository: {gitcmd.stderr(proc)}")
    git_dir = Path(proc.stdout.decode().strip())
    sha = resolve(git_dir, f"{rev}^{{commit}}")
    if sha is None:
        raise GitRefNotFoundError(
            f"{rev!r} does not name a commit in {repo_dir}; "
            "use a branch, tag, SHA or expression such as HEAD~1 (see `git log`)"
        )
    return read_revision(git_dir, sha, subpath, where=str(repo_dir))


def resolve(git_dir: Path, rev: str) -> str | None:
    """The object id ``rev`` resolves to in ``git_dir``, or ``None``."""
    proc = gitcmd.run(
        ["rev-parse", "--verify", "--quiet", "--end-of-options", rev], git_dir=git_dir
    )
    return proc.stdout.decode().strip() if proc.returncode == 0 else None


def read_revision(git_dir: Path, sha: str, subpath: str, *, where: str) -> Revision:
    """The :class:`Revision` of commit ``sha`` (already present in ``git_dir``)."""
    subpath = normalise_subpath(subpath)
    out = gitcmd.git(
        ["log", "-1", "--no-show-signature", "--format=%H%x00%s%x00%an <%ae>%x00%cI", sha],
        git_dir=git_dir,
    )
    full, subject, author, when = out.decode("utf-8", errors="replace").strip().split("\0")
    if subpath:
        kind = gitcmd.run(["cat-file", "-t", f"{full}:{subpath}"], git_dir=git_dir)
        if kind.returncode != 0 or kind.stdout.strip() != b"tree":
            raise SourceError(
                f"path {subpath!r} is not a directory in commit {full[:12]} of {where}; "
                "check spec.source.path"
            )
    return Revision(
        sha=full,
        subject=subject,
        author=author,
        time=datetime.fromisoformat(when),
        tree=GitTree(git_dir=git_dir, commit=full, subpath=subpath),
    )


def normalise_subpath(subpath: str) -> str:
    """``spec.source.path`` as a clean relative POSIX path (``""`` for the repository root)."""
    parts = [p for p in PurePosixPath(subpath.strip("/")).parts if p not in ("", ".")]
    if ".." in parts:
        raise SourceError(f"path {subpath!r} leaves the repository; use a path inside it")
    return "/".join(parts)
