"""Resolving a commit in a repository already on disk to a :class:`Revision`.

Used for the fetch cache and, through :func:`local_revision`, for the CLI's checkouts; no
function here touches the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from controller.errors import GitHistoryRewrittenError, GitRefNotFoundError, SourceError
from controller.source import gitcmd
from controller.source.model import GitRef
from controller.source.tree import GitTree

__all__ = [
    "Revision",
    "has_commit",
    "is_ancestor",
    "local_ref",
    "local_revision",
    "normalise_subpath",
    "read_revision",
    "resolve",
]


@dataclass(frozen=True)
class Revision:
    """One resolved commit: what the rest of the pipeline reads and records in status."""

    sha: str
    subject: str
    author: str
    time: datetime
    """The commit (committer) time, timezone-aware."""
    tree: GitTree


def _git_dir(repo_dir: Path) -> Path:
    """The Git directory of the checkout ``repo_dir``."""
    if not repo_dir.is_dir():
        raise SourceError(f"{repo_dir} is not a directory; pass a Git checkout")
    proc = gitcmd.run(["rev-parse", "--absolute-git-dir"], cwd=repo_dir)
    if proc.returncode != 0:
        # Git's own words matter here (e.g. "dubious ownership" and the safe.directory fix).
        raise SourceError(f"{repo_dir} is not a Git repository: {gitcmd.stderr(proc)}")
    return Path(proc.stdout.decode().strip())


def local_ref(repo_dir: Path, rev: str) -> GitRef:
    """What ``rev`` names in the checkout, as a URL source's ref: ``HEAD`` on ``main`` and
    ``main`` are ``branch 'main'``, a tag is a tag, and any other expression (a SHA,
    ``HEAD~1``, a detached ``HEAD``) is the commit it resolves to. The last applied commit
    must be an ancestor of the next one only while this ref stays the same."""
    git_dir = _git_dir(repo_dir)
    name = ""
    if not rev.startswith("-"):  # never an option (rev-parse prints --end-of-options here)
        proc = gitcmd.run(["rev-parse", "--symbolic-full-name", rev], git_dir=git_dir)
        name = proc.stdout.decode().strip() if proc.returncode == 0 else ""
    if name.startswith("refs/heads/"):
        return GitRef.branch(name.removeprefix("refs/heads/"))
    if name.startswith("refs/tags/"):
        return GitRef.tag(name.removeprefix("refs/tags/"))
    return GitRef.commit(_resolve_commit(git_dir, rev, repo_dir))


def local_revision(
    repo_dir: Path, rev: str, subpath: str = "", *, previous: str | None = None
) -> Revision:
    """Resolve ``rev`` (any rev-parse expression: ``HEAD~1``, a short SHA, a branch) in a local
    Git repository, for the CLI's ``plan``/``reconcile`` on a checkout without any fetch.

    ``previous`` is the commit last applied for this ref (see :func:`local_ref`): as for a
    fetched source, a commit that does not descend from it (an amended or rebased commit) is
    refused with :class:`GitHistoryRewrittenError`.

    Raises :class:`GitRefNotFoundError` when ``rev`` does not name a commit and
    :class:`SourceError` when ``repo_dir`` is not a Git repository.
    """
    git_dir = _git_dir(repo_dir)
    sha = _resolve_commit(git_dir, rev, repo_dir)
    if previous and previous != sha and not is_ancestor(git_dir, previous, sha):
        raise GitHistoryRewrittenError(
            f"{rev!r} in {repo_dir} is now {sha[:12]}, which does not descend from the last "
            f"applied commit {previous[:12]}: the history was rewritten (an amended or "
            "rebased commit?). Restore it, or apply the new commit on purpose: pass it as "
            "--ref <sha> (a pinned commit), then go back to the branch"
        )
    return read_revision(git_dir, sha, subpath, where=str(repo_dir))


def _resolve_commit(git_dir: Path, rev: str, repo_dir: Path) -> str:
    sha = resolve(git_dir, f"{rev}^{{commit}}")
    if sha is None:
        raise GitRefNotFoundError(
            f"{rev!r} does not name a commit in {repo_dir}; "
            "use a branch, tag, SHA or expression such as HEAD~1 (see `git log`)"
        )
    return sha


def has_commit(git_dir: Path, sha: str) -> bool:
    """Whether ``git_dir`` holds commit ``sha`` (a local lookup, no network)."""
    return gitcmd.run(["cat-file", "-e", f"{sha}^{{commit}}"], git_dir=git_dir).returncode == 0


def is_ancestor(git_dir: Path, old: str, new: str) -> bool:
    """Whether ``old`` is an ancestor of ``new``; an ``old`` the repository lacks is not (the
    full history of ``new`` is present, so any ancestor of it is)."""
    proc = gitcmd.run(["merge-base", "--is-ancestor", old, new], git_dir=git_dir)
    if proc.returncode in (0, 1):
        return proc.returncode == 0
    if not has_commit(git_dir, old):  # asked only when merge-base failed: one process usually
        return False
    raise SourceError(f"cannot compare {old[:12]} with {new[:12]}: {gitcmd.stderr(proc)}")


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
