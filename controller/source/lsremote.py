"""The commit a ref points at on the remote: the one network round trip of a check.

Light on purpose (no pydantic, no cache records): ``cratekeeper reconcile`` with nothing to do
asks only this (issue 11 point 3), and :func:`~controller.source.fetching.fetch` starts with it.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from pathlib import Path

from controller.errors import GitRefNotFoundError
from controller.source import gitcmd
from controller.source.cache import cache_repo
from controller.source.model import GitAuth, GitRef, RefKind
from controller.source.remote import Remote

__all__ = ["ls_remote", "remote_commit"]


def remote_commit(
    url: str,
    ref: GitRef,
    cache_dir: Path,
    *,
    auth: GitAuth | None = None,
    timeout: float = gitcmd.DEFAULT_TIMEOUT,
) -> str:
    """The commit ``ref`` of the repository at ``url`` points at now: one ``git ls-remote``
    (a pinned commit is itself: no git at all). Nothing is fetched; errors are those of
    :func:`~controller.source.fetching.fetch` (the same words, the same redaction)."""
    if ref.kind is RefKind.COMMIT:
        return ref.name
    with contextlib.ExitStack() as stack:

        @functools.cache
        def scratch() -> Path:
            """A private directory, made only when a credential needs a file of its own."""
            return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cratekeeper-")))

        remote = Remote.create(url, auth or GitAuth(), timeout, scratch)
        return ls_remote(remote, cache_repo(cache_dir, remote.url), ref)


def ls_remote(remote: Remote, git_dir: Path, ref: GitRef) -> str:
    """The commit ``ref`` points at on the remote: the one network round trip of a check."""
    # A tag's pattern does not match its peeled line (``refs/tags/v1^{}``): ask for both, so
    # an annotated tag resolves to its commit without a local lookup.
    names = [ref.remote_name] + ([f"{ref.remote_name}^{{}}"] if ref.kind is RefKind.TAG else [])
    out = remote.git(git_dir, ["ls-remote", "--end-of-options", remote.url, *names])
    found: dict[str, str] = {}
    for line in out.decode().splitlines():
        oid, _, name = line.partition("\t")
        found[name] = oid
    sha = found.get(f"{ref.remote_name}^{{}}") or found.get(ref.remote_name)
    if sha is None:
        raise GitRefNotFoundError(
            f"{ref} not found in {remote.display}; check spec.source.ref "
            f"(`git ls-remote {remote.display}` lists what exists)"
        )
    return sha
