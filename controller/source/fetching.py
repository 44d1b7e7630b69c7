"""Fetching a ref from a remote into the cache and resolving it to a :class:`Revision`.

A check whose remote ref has not moved costs exactly one ``git ls-remote`` process and nothing
else (the ref's last resolution is recorded in the cache: :mod:`controller.source.checked`); a
pinned commit already checked runs no git at all. A check after a push that named the ref
starts with the fetch itself (no ``ls-remote`` first). A branch or tag that no longer descends
from the last applied commit is refused as rewritten history.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from pathlib import Path

from controller.errors import (
    GitAuthError,
    GitHistoryRewrittenError,
    GitRefNotFoundError,
    GitUnreachableError,
    SourceError,
)
from controller.source import checked, gitcmd
from controller.source.cache import cache_repo, locked
from controller.source.lsremote import ls_remote
from controller.source.model import GitAuth, GitRef, RefKind
from controller.source.remote import Remote
from controller.source.revision import (
    Revision,
    has_commit,
    is_ancestor,
    normalise_subpath,
    read_revision,
    resolve,
)

__all__ = ["fetch"]


def fetch(
    url: str,
    ref: GitRef,
    cache_dir: Path,
    *,
    subpath: str = "",
    auth: GitAuth | None = None,
    previous: str | None = None,
    moved: bool = False,
    timeout: float = gitcmd.DEFAULT_TIMEOUT,
) -> Revision:
    """Bring ``ref`` of the repository at ``url`` into the cache and resolve it to a commit.

    The cache is one bare repository per URL under ``cache_dir``; fetches are incremental. When
    the remote ref still points at the commit it last resolved to (and ``previous`` is that
    commit or None), this costs one ``git ls-remote`` process and nothing else; a pinned
    commit already checked runs no git at all.

    ``previous`` is the commit last applied for this ref: when the new commit does not descend
    from it the remote history was rewritten, and :class:`GitHistoryRewrittenError` is raised
    instead of silently following a force-push. Pass ``None`` when the ref itself changed.

    ``moved``: the caller was told the ref moved (a signed push naming it): the branch or tag
    is fetched at once, without the ``ls-remote`` before it, and one that had not moved after
    all costs that fetch (which brings nothing). Every check above stays the same.
    """
    with contextlib.ExitStack() as stack:

        @functools.cache
        def scratch() -> Path:
            """A private directory, made only when a credential needs a file of its own."""
            return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cratekeeper-")))

        remote = Remote.create(url, auth or GitAuth(), timeout, scratch)
        git_dir = cache_repo(cache_dir, remote.url)
        with locked(git_dir):
            return _fetch_locked(remote, git_dir, ref, subpath, previous, moved)


def _fetch_locked(
    remote: Remote, git_dir: Path, ref: GitRef, subpath: str, previous: str | None, moved: bool
) -> Revision:
    """:func:`fetch`, holding the cache repository's lock."""
    subpath = normalise_subpath(subpath)
    if ref.kind is RefKind.COMMIT:
        sha, local = ref.name, None
    else:
        local = _fetch_moved(remote, git_dir, ref) if moved else None
        sha = local or ls_remote(remote, git_dir, ref)
    if previous in (None, sha):  # no ancestry to check: the ref's last resolution may do
        known = checked.recall(git_dir, ref.remote_name, sha, subpath)
        if known is not None:
            return known
    if ref.kind is RefKind.COMMIT:
        if not has_commit(git_dir, sha):
            _fetch_commit(remote, git_dir, sha)
    elif local is None:  # not fetched yet (a push's fetch leaves the ref on its commit)
        if has_commit(git_dir, sha):
            local = resolve(git_dir, f"{ref.remote_name}^{{commit}}")
        else:
            local = _fetch_ref(remote, git_dir, ref)
            if local != sha and not has_commit(git_dir, sha):
                # The ref moved again between ls-remote and fetch: take what was fetched.
                sha = local or sha
        if local != sha:
            # The commit is here (fetched for another ref, or left over from before a
            # force-push) but our ref is not on it: point the ref at it, keeping it from gc.
            gitcmd.git(["update-ref", ref.remote_name, sha], git_dir=git_dir)
    if previous and previous != sha and not is_ancestor(git_dir, previous, sha):
        raise GitHistoryRewrittenError(
            f"{ref} of {remote.display} now points at {sha[:12]}, which does not descend "
            f"from the last applied commit {previous[:12]}: the history was rewritten "
            "(force-push?). Restore the history, or confirm the new commit by changing "
            "spec.source.ref"
        )
    revision = read_revision(git_dir, sha, subpath, where=remote.display)
    checked.remember(git_dir, ref.remote_name, revision)
    return revision


def _fetch_ref(remote: Remote, git_dir: Path, ref: GitRef) -> str | None:
    """Fetch the branch or tag into the same ref of the cache; the commit it is on now."""
    remote.git(
        git_dir,
        [
            "fetch",
            "--no-tags",
            "--no-write-fetch-head",
            "--quiet",
            "--end-of-options",
            remote.url,
            f"+{ref.remote_name}:{ref.remote_name}",
        ],
    )
    return resolve(git_dir, f"{ref.remote_name}^{{commit}}")


def _fetch_moved(remote: Remote, git_dir: Path, ref: GitRef) -> str | None:
    """A push said ``ref`` moved: fetch it at once, without the ls-remote before (one
    connection, not two); the commit it is on. None when the fetch failed otherwise than by
    credentials or the network (the ref is gone?): the ls-remote then says why, in its words."""
    try:
        return _fetch_ref(remote, git_dir, ref)
    except (GitAuthError, GitUnreachableError):
        raise
    except SourceError:
        return None


def _fetch_commit(remote: Remote, git_dir: Path, sha: str) -> None:
    """Fetch a pinned commit: by id when the server allows it, else every branch and tag."""
    keep = f"refs/cratekeeper/commits/{sha}"
    base = ["fetch", "--no-write-fetch-head", "--quiet", "--end-of-options", remote.url]
    try:
        remote.git(git_dir, [*base, f"{sha}:{keep}"])
    except (GitAuthError, GitUnreachableError):
        raise
    except SourceError:
        # Servers that refuse unadvertised object ids: take every branch and tag instead.
        remote.git(git_dir, [*base, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"])
    if not has_commit(git_dir, sha):
        raise GitRefNotFoundError(
            f"commit {sha[:12]} not found in {remote.display}; check spec.source.ref.commit "
            "(was it pushed? was the branch holding it force-pushed?)"
        )
    gitcmd.git(["update-ref", keep, sha], git_dir=git_dir)
