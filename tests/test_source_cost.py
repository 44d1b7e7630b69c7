"""What checking a Git source costs: an unmoved ref is one ls-remote, new commits are fetched
incrementally (measured on the HTTP server, by counting git calls and git processes).
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from controller.errors import GitHistoryRewrittenError
from controller.source import GitAuth, GitRef, fetch
from controller.tree import read_text
from tests.test_source import NETWORK, WORKSPACE, _ssh_auth, cache, git_calls, http_auth

if TYPE_CHECKING:
    from tests.support.git_servers import GitDaemon, GitHttpServer, SshServer, Upstream

__all__ = ["cache", "git_calls", "http_auth"]  # the fixtures, shared with tests/test_source.py


def _commands(requests: list[Any]) -> list[str]:
    return [r.command or f"{r.method} {r.query}" for r in requests if r.status != 401]


@pytest.mark.parametrize("ref", [GitRef.branch("main"), GitRef.tag("v1.0.0")], ids=str)
def test_unmoved_branch_costs_one_ls_remote(
    upstream: Upstream,
    git_http: GitHttpServer,
    http_auth: GitAuth,
    cache: Path,
    git_calls: list[str],
    ref: GitRef,
) -> None:
    sha = upstream.commit(WORKSPACE, "first")
    upstream.tag("v1.0.0")
    url = git_http.url(upstream)
    fetch(url, ref, cache, auth=http_auth)
    git_http.take_requests()
    git_calls.clear()

    revision = fetch(url, ref, cache, auth=http_auth, previous=sha)

    assert revision.sha == sha
    # Client side: exactly one network git command, and it is ls-remote.
    assert [c for c in git_calls if c in NETWORK] == ["ls-remote"]
    # Server side: the ref advertisement and one ls-refs, no fetch (no pack negotiated).
    commands = _commands(git_http.take_requests())
    assert commands == ["GET service=git-upload-pack", "ls-refs"]


@pytest.fixture
def git_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``git`` first on PATH that appends each process's argv to the returned log file and
    runs the real git: it counts processes, not calls of our own functions."""
    real = shutil.which("git")
    assert real is not None
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "git-processes.log"
    log.touch()
    wrapper = bin_dir / "git"
    wrapper.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$*" >> {shlex.quote(str(log))}\n'
        f'exec {shlex.quote(real)} "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


@pytest.mark.parametrize("transport", ["git", "ssh"])
@pytest.mark.parametrize("ref", [GitRef.branch("main"), GitRef.tag("v1.0.0")], ids=str)
def test_an_unmoved_ref_is_one_ls_remote_process_and_nothing_else(
    request: pytest.FixtureRequest,
    upstream: Upstream,
    cache: Path,
    git_processes: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    transport: str,
    ref: GitRef,
) -> None:
    sha = upstream.commit({"ws/workspace.poly": "name: one\n"}, "first")
    upstream.tag("v1.0.0")
    if transport == "ssh":
        ssh: SshServer = request.getfixturevalue("ssh_server")
        url, auth = ssh.url(upstream), _ssh_auth(ssh, ssh.known_hosts)  # a 0600 key file
    else:
        url, auth = request.getfixturevalue("git_daemon").url(upstream), None
    fetch(url, ref, cache, subpath="ws", auth=auth)
    git_processes.write_text("")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    revision = fetch(url, ref, cache, subpath="ws", auth=auth, previous=sha)

    processes = git_processes.read_text().splitlines()
    assert len(processes) == 1 and " ls-remote " in f" {processes[0]} ", processes
    assert list(scratch.iterdir()) == []  # no temporary directory either
    assert (revision.sha, revision.subject, revision.tree.subpath) == (sha, "first", "ws")
    assert read_text(revision.tree, "workspace.poly") == "name: one\n"


def test_a_pinned_commit_checked_before_runs_no_git_at_all(
    upstream: Upstream, git_daemon: GitDaemon, cache: Path, git_processes: Path
) -> None:
    sha = upstream.commit(WORKSPACE, "first")
    upstream.commit({"workspace.poly": "name: two\n"}, "second")
    url = git_daemon.url(upstream)
    fetch(url, GitRef.commit(sha), cache)
    git_processes.write_text("")
    assert fetch(url, GitRef.commit(sha), cache, previous=sha).subject == "first"
    assert git_processes.read_text() == ""


def test_a_ref_back_on_an_older_commit_is_resolved_again(
    upstream: Upstream, git_daemon: GitDaemon, cache: Path
) -> None:
    first = upstream.commit(WORKSPACE, "first")
    url = git_daemon.url(upstream)
    fetch(url, GitRef.branch("main"), cache)
    second = upstream.commit({"workspace.poly": "name: two\n"}, "second")
    assert fetch(url, GitRef.branch("main"), cache, previous=first).sha == second
    upstream.force_reset(first)
    with pytest.raises(GitHistoryRewrittenError):
        fetch(url, GitRef.branch("main"), cache, previous=second)
    again = fetch(url, GitRef.branch("main"), cache, previous=None)  # the ref was confirmed
    assert (again.sha, again.subject) == (first, "first")


def test_new_commits_are_fetched_incrementally(
    upstream: Upstream, git_http: GitHttpServer, http_auth: GitAuth, cache: Path
) -> None:
    first = upstream.commit(WORKSPACE, "first")
    url = git_http.url(upstream)
    fetch(url, GitRef.branch("main"), cache, auth=http_auth)
    second = upstream.commit({"workspace.poly": "name: two\n"}, "second")
    git_http.take_requests()

    revision = fetch(url, GitRef.branch("main"), cache, auth=http_auth, previous=first)

    assert revision.sha == second
    fetches = [r for r in git_http.take_requests() if r.command == "fetch" and r.status == 200]
    assert fetches, "the new commit must be fetched"
    # The cache told the server what it already has, so only the new objects are sent.
    assert any(f"have {first}".encode() in r.body for r in fetches)
    assert len(list(cache.iterdir())) == 1  # one cache repository per URL, reused
