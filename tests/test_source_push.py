"""A check after a push that named the ref (``fetch(moved=True)``): the fetch is the first
network call, with no ``ls-remote`` before it, and every guarantee of a check stays (counted
in git processes, against a real ``git daemon``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from controller.errors import GitHistoryRewrittenError, GitRefNotFoundError
from controller.source import GitRef, fetch
from controller.tree import read_text
from tests.test_source import WORKSPACE, cache
from tests.test_source_cost import git_processes

if TYPE_CHECKING:
    from tests.support.git_servers import GitDaemon, Upstream

__all__ = ["cache", "git_processes"]  # fixtures, shared with tests/test_source*.py


def commands(log: Path) -> list[str]:
    """The git subcommand of each process in the log (options before it skipped)."""
    found = []
    for line in log.read_text().splitlines():
        words = line.split()
        while words and words[0].startswith("-"):
            option = words.pop(0)
            if option in ("--git-dir", "-c") and words:
                words.pop(0)
        found.append(words[0] if words else "")
    return found


@pytest.mark.parametrize("ref", [GitRef.branch("main"), GitRef.tag("v1.0.0")], ids=str)
def test_a_pushed_ref_is_fetched_without_an_ls_remote_first(
    upstream: Upstream, git_daemon: GitDaemon, cache: Path, git_processes: Path, ref: GitRef
) -> None:
    first = upstream.commit(WORKSPACE, "first")
    upstream.tag("v1.0.0")
    url = git_daemon.url(upstream)
    fetch(url, ref, cache)
    second = upstream.commit({"workspace.poly": "name: two\n"}, "second")
    upstream.tag("v1.0.0")  # moved to the second commit (annotated: peeled to it)
    git_processes.write_text("")

    revision = fetch(url, ref, cache, previous=first, moved=True)

    ran = commands(git_processes)
    assert ran == ["fetch", "rev-parse", "merge-base", "log"]  # no ls-remote, no cat-file
    assert (revision.sha, revision.subject) == (second, "second")
    assert read_text(revision.tree, "workspace.poly") == "name: two\n"


def test_a_push_for_an_unmoved_ref_costs_one_fetch_and_returns_the_same_revision(
    upstream: Upstream, git_daemon: GitDaemon, cache: Path, git_processes: Path
) -> None:
    sha = upstream.commit(WORKSPACE, "first")
    url = git_daemon.url(upstream)
    fetch(url, GitRef.branch("main"), cache)
    git_processes.write_text("")

    revision = fetch(url, GitRef.branch("main"), cache, previous=sha, moved=True)

    assert (revision.sha, revision.subject) == (sha, "first")
    assert commands(git_processes) == ["fetch", "rev-parse"]


def test_a_pushed_ref_that_rewrote_history_is_still_refused(
    upstream: Upstream, git_daemon: GitDaemon, cache: Path
) -> None:
    first = upstream.commit(WORKSPACE, "first")
    url = git_daemon.url(upstream)
    fetch(url, GitRef.branch("main"), cache)
    second = upstream.commit({"workspace.poly": "name: two\n"}, "second")
    assert fetch(url, GitRef.branch("main"), cache, previous=first, moved=True).sha == second
    upstream.force_reset(first)
    upstream.commit({"workspace.poly": "name: other\n"}, "rewritten")
    with pytest.raises(GitHistoryRewrittenError):
        fetch(url, GitRef.branch("main"), cache, previous=second, moved=True)


def test_a_push_naming_a_ref_the_remote_lacks_gets_ls_remotes_answer(
    upstream: Upstream, git_daemon: GitDaemon, cache: Path
) -> None:
    upstream.commit(WORKSPACE, "first")
    url = git_daemon.url(upstream)
    with pytest.raises(GitRefNotFoundError, match=r"check spec\.source\.ref"):
        fetch(url, GitRef.branch("gone"), cache, moved=True)
