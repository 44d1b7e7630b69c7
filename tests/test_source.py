"""Fetching workspaces from Git: real servers on 127.0.0.1, a real `git` binary."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from controller.api.status import WorkspaceStatus
from controller.cli import main
from controller.errors import (
    GitHistoryRewrittenError,
    GitRefNotFoundError,
    GitTimeoutError,
    GitUnreachableError,
    SourceError,
)
from controller.source import GitAuth, GitRef, fetch, gitcmd, local_ref, local_revision
from controller.tree import Tree, read_text

if TYPE_CHECKING:
    from tests.support.git_servers import GitDaemon, GitHttpServer, SshServer, Upstream

# The lead also lists this module in tests/conftest.py; registering it twice is harmless.


WORKSPACE = {"workspace.poly": "name: acme-production-1\n", "README.md": "hi\n"}


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "git"


@pytest.fixture
def http_auth(tmp_path: Path, git_http: GitHttpServer) -> GitAuth:
    """The HTTP server's credentials as a mounted Secret (with the usual trailing newline)."""
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "username").write_text(git_http.user + "\n")
    (secret / "password").write_text(git_http.password + "\n")
    return GitAuth.from_directory(secret)


@pytest.fixture
def git_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every git subcommand controller.source runs (``ls-remote``, ``fetch``, ``log`` ...)."""
    calls: list[str] = []
    real = gitcmd.run

    def counting(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        words = list(args)
        while words and words[0] == "-c":
            words = words[2:]
        calls.append(words[0])
        return real(args, **kwargs)

    monkeypatch.setattr(gitcmd, "run", counting)
    yield calls


NETWORK = {"ls-remote", "fetch", "clone", "pull"}


def _ssh_auth(ssh_server: SshServer, known_hosts: Path | None) -> GitAuth:
    return GitAuth(identity_file=ssh_server.identity, known_hosts_file=known_hosts)


# ---------------------------------------------------------------------------------------------
# Local checkouts (the CLI)


def test_local_revision_resolves_any_rev_parse_expression(upstream: Upstream) -> None:
    first = upstream.commit({"ws/workspace.poly": "name: one\n"}, "first")
    second = upstream.commit({"ws/workspace.poly": "name: two\n"}, "second: bump")

    older = local_revision(upstream.work, "HEAD~1", "ws")
    assert older.sha == first
    assert older.subject == "first"
    assert older.author == "Ada Author <ada@example.com>"
    assert isinstance(older.time, datetime)
    assert older.time.tzinfo is not None
    assert read_text(older.tree, "workspace.poly") == "name: one\n"
    assert local_revision(upstream.work, first[:8]).sha == first
    assert local_revision(upstream.work, "main", "/ws/").sha == second
    assert local_revision(upstream.work, "main").tree.files() == ["ws/workspace.poly"]


def test_local_revision_unknown_rev_is_ref_not_found(upstream: Upstream) -> None:
    upstream.commit(WORKSPACE, "first")
    with pytest.raises(GitRefNotFoundError, match="'no-such-branch' does not name a commit"):
        local_revision(upstream.work, "no-such-branch")


def test_a_checkout_names_its_ref_as_a_url_source_would(upstream: Upstream) -> None:
    first = upstream.commit(WORKSPACE, "first")
    upstream.commit({"workspace.poly": "name: two\n"}, "second")
    upstream.tag("v1", first)
    assert local_ref(upstream.work, "HEAD") == GitRef.branch("main")
    assert local_ref(upstream.work, "main") == GitRef.branch("main")
    assert local_ref(upstream.work, "v1") == GitRef.tag("v1")
    assert local_ref(upstream.work, "HEAD~1") == GitRef.commit(first)
    assert local_ref(upstream.work, first[:10]) == GitRef.commit(first)


def _amend(upstream: Upstream, message: str) -> str:
    subprocess.run(
        ["git", "commit", "-q", "--amend", "--allow-empty", "-m", message],
        cwd=upstream.work,
        check=True,
    )
    return local_revision(upstream.work, "HEAD").sha


def test_a_checkout_whose_applied_commit_was_amended_is_history_rewritten(
    upstream: Upstream,
) -> None:
    base = upstream.commit(WORKSPACE, "base")
    applied = upstream.commit({"workspace.poly": "name: applied\n"}, "applied")
    later = upstream.commit({"workspace.poly": "name: later\n"}, "later")
    assert local_revision(upstream.work, "HEAD", previous=applied).sha == later  # descends
    assert local_revision(upstream.work, "HEAD", previous=later).sha == later  # the same
    amended = _amend(upstream, "later, amended")
    with pytest.raises(GitHistoryRewrittenError) as caught:
        local_revision(upstream.work, "HEAD", previous=later)
    assert later[:12] in str(caught.value) and amended[:12] in str(caught.value)
    assert caught.value.reason == "GitHistoryRewritten"
    assert local_revision(upstream.work, base).sha == base  # no previous: not checked


def test_reconcile_of_a_checkout_refuses_an_amended_applied_commit(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    applied = upstream.commit(WORKSPACE, "applied")
    state = tmp_path / "state.json"
    recorded = WorkspaceStatus(
        last_applied_revision=applied,
        last_attempted_revision=applied,
        last_applied_ref="branch:main",
    )
    state.write_text(json.dumps(recorded.dump()))
    assert main(["reconcile", str(upstream.work), "--state", str(state)]) == 0  # up to date
    capsys.readouterr()
    amended = _amend(upstream, "applied, amended")

    assert main(["reconcile", str(upstream.work), "--state", str(state)]) == 1

    err = capsys.readouterr().err
    assert "GitHistoryRewritten" in err or "history was rewritten" in err
    assert amended[:12] in err
    assert json.loads(state.read_text())["lastAppliedRevision"] == applied  # nothing recorded


def test_local_revision_outside_a_repository_is_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="is not a Git repository"):
        local_revision(tmp_path, "HEAD")


def test_git_tree_implements_the_tree_protocol(upstream: Upstream) -> None:
    upstream.commit({"ws/a.yml": "a\n", "ws/sub/b.yml": "b\n", "other.txt": "x\n"}, "files")
    tree: Tree = local_revision(upstream.work, "HEAD", "ws").tree
    assert tree.files() == ["a.yml", "sub/b.yml"]
    assert tree.read_bytes("sub/b.yml") == b"b\n"
    assert tree.read_bytes("./a.yml") == b"a\n"
    assert tree.read_bytes("missing.yml") is None
    assert tree.read_bytes("../other.txt") is None


def test_export_materialises_the_workspace_at_the_commit(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.commit({"ws/a.yml": "old\n", "ws/sub/b.yml": "b\n", "top.txt": "x\n"}, "one")
    revision = local_revision(upstream.work, "HEAD", "ws")
    upstream.commit({"ws/a.yml": "new\n"}, "two")

    dest = tmp_path / "out"
    revision.tree.export(dest)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "a.yml",
        "sub/b.yml",
    ]
    assert (dest / "a.yml").read_text() == "old\n"


# ---------------------------------------------------------------------------------------------
# Fetching over git://


def test_fetches_branch_with_commit_metadata(
    upstream: Upstream, git_daemon: GitDaemon, cache: Path
) -> None:
    sha = upstream.commit(WORKSPACE, "Add production workspace")
    revision = fetch(git_daemon.url(upstream), GitRef.branch("main"), cache)
    assert revision.sha == sha
    assert revision.subject == "Add production workspace"
    assert revision.author == "Ada Author <ada@example.com>"
    assert revision.tree.files() == ["README.md", "workspace.poly"]
    assert read_text(revision.tree, "workspace.poly") == WORKSPACE["workspace.poly"]


def test_fetches_annotated_and_lightweight_tags_as_their_commit(
    upstream: Upstream, git_daemon: GitDaemon, cache: Path
) -> None:
    first = upstream.commit(WORKSPACE, "first")
    upstream.tag("v1.0.0")
    second = upstream.commit({"workspace.poly": "name: two\n"}, "second")
    upstream.tag("light", annotated=False)

    url = git_daemon.url(upstream)
    assert fetch(url, GitRef.tag("v1.0.0"), cache).sha == first
    assert fetch(url, GitRef.tag("light"), cache).sha == second


def test_fetches_a_pinned_commit_that_is_not_a_branch_tip(
    upstream: Upstream, git_daemon: GitDaemon, cache: Path
) -> None:
    first = upstream.commit(WORKSPACE, "first")
    upstream.commit({"workspace.poly": "name: two\n"}, "second")
    revision = fetch(git_daemon.url(upstream), GitRef.commit(first), cache)
    assert revision.sha == first
    assert read_text(revision.tree, "workspace.poly") == WORKSPACE["workspace.poly"]


def test_cached_pinned_commit_needs_no_network(
    upstream: Upstream, git_daemon: GitDaemon, cache: Path, git_calls: list[str]
) -> None:
    sha = upstream.commit(WORKSPACE, "first")
    fetch(git_daemon.url(upstream), GitRef.commit(sha), cache)
    git_calls.clear()
    assert fetch(git_daemon.url(upstream), GitRef.commit(sha), cache).sha == sha
    assert NETWORK.isdisjoint(git_calls)


def test_workspace_in_a_subpath_is_the_tree_root(
    upstream: Upstream, git_daemon: GitDaemon, cache: Path, tmp_path: Path
) -> None:
    upstream.commit({"envs/prod/workspace.poly": "name: prod\n", "envs/dev/x": "y"}, "layout")
    revision = fetch(git_daemon.url(upstream), GitRef.branch("main"), cache, subpath="envs/prod")
    assert revision.tree.files() == ["workspace.poly"]
    revision.tree.export(tmp_path / "run")
    assert (tmp_path / "run" / "workspace.poly").read_text() == "name: prod\n"


def test_missing_subpath_says_which_path(
    upstream: Upstream, git_daemon: GitDaemon, cache: Path
) -> None:
    upstream.commit(WORKSPACE, "first")
    with pytest.raises(SourceError, match=r"path 'envs/nope' is not a directory .*spec\.source"):
        fetch(git_daemon.url(upstream), GitRef.branch("main"), cache, subpath="envs/nope")


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (GitRef.branch("release"), "branch 'release' not found"),
        (GitRef.tag("v9.9.9"), "tag 'v9.9.9' not found"),
        (GitRef.commit("0" * 40), "commit 000000000000 not found"),
    ],
)
def test_missing_ref_is_ref_not_found(
    upstream: Upstream, git_daemon: GitDaemon, cache: Path, ref: GitRef, message: str
) -> None:
    upstream.commit(WORKSPACE, "first")
    with pytest.raises(GitRefNotFoundError, match=message):
        fetch(git_daemon.url(upstream), ref, cache)


def test_short_commit_pin_is_rejected() -> None:
    with pytest.raises(SourceError, match="not a full SHA"):
        GitRef.commit("abc1234")


def test_closed_port_is_unreachable(closed_port: int, cache: Path) -> None:
    for url in (f"git://127.0.0.1:{closed_port}/x.git", f"http://127.0.0.1:{closed_port}/x.git"):
        with pytest.raises(GitUnreachableError, match="cannot reach"):
            fetch(url, GitRef.branch("main"), cache)


def test_hung_server_times_out_as_unreachable(silent_port: int, cache: Path) -> None:
    with pytest.raises(GitUnreachableError, match="did not answer within 1s"):
        fetch(f"git://127.0.0.1:{silent_port}/x.git", GitRef.branch("main"), cache, timeout=1)


def _pids_with(*words: str) -> dict[int, str]:
    """This machine's processes whose command line contains every one of ``words``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # it ended meanwhile
        line = " ".join(a.decode(errors="replace") for a in argv if a)
        if line and all(w in line for w in words):
            found[int(entry.name)] = line
    return found


def _processes_with(*words: str) -> list[str]:
    """Command lines of this machine's processes that contain every one of ``words``."""
    return list(_pids_with(*words).values())


@pytest.fixture
def hung_repository(tmp_path: Path) -> Iterator[Path]:
    """A bare repository every git command hangs on: its ``packed-refs`` is a FIFO nobody
    writes to (the hang of an overloaded NFS mount or a stuck server-side hook)."""
    repo = tmp_path / "hung.git"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    (repo / "packed-refs").unlink(missing_ok=True)
    os.mkfifo(repo / "packed-refs")
    yield repo
    # Release whoever still waits on it (the server side of an ssh test): end of file.
    while True:
        try:
            os.close(os.open(repo / "packed-refs", os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            break  # no reader left
    # A server side (git-upload-pack under sshd) that had not opened it yet would block on it
    # later, for ever: end whatever still names this repository (only this test's processes).
    for pid in _pids_with(str(repo)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_a_hung_local_git_command_is_a_git_timeout(hung_repository: Path) -> None:
    with pytest.raises(GitTimeoutError, match=r"git rev-parse did not finish within 1s") as caught:
        gitcmd.run(["rev-parse", "--verify", "refs/heads/main"], git_dir=hung_repository, timeout=1)
    assert caught.value.reason == "GitTimedOut"
    assert not _processes_with("rev-parse", str(hung_repository))


def test_a_silent_ssh_server_times_out_and_leaves_no_ssh_behind(
    silent_port: int, cache: Path
) -> None:
    url = f"ssh://git@127.0.0.1:{silent_port}/x.git"
    with pytest.raises(GitUnreachableError, match="did not answer within 1s"):
        fetch(url, GitRef.branch("main"), cache, timeout=1)
    assert not _processes_with("ssh", f"-p {silent_port}")


def test_a_hung_repository_behind_sshd_times_out_and_leaves_no_ssh_behind(
    ssh_server: SshServer, hung_repository: Path, cache: Path
) -> None:
    url = f"ssh://{ssh_server.user}@127.0.0.1:{ssh_server.port}{hung_repository}"
    auth = _ssh_auth(ssh_server, ssh_server.known_hosts)
    with pytest.raises(GitUnreachableError, match="did not answer within 2s"):
        fetch(url, GitRef.branch("main"), cache, auth=auth, timeout=2)
    assert not _processes_with("ssh", f"-p {ssh_server.port}", str(hung_repository))


def test_missing_repository_is_reported(git_daemon: GitDaemon, cache: Path) -> None:
    with pytest.raises(SourceError, match="no Git repository at"):
        fetch(f"git://127.0.0.1:{git_daemon.port}/nope.git", GitRef.branch("main"), cache)


# ---------------------------------------------------------------------------------------------
# History


def test_fast_forward_from_previous_commit_is_followed(
    upstream: Upstream, git_daemon: GitDaemon, cache: Path
) -> None:
    first = upstream.commit(WORKSPACE, "first")
    url = git_daemon.url(upstream)
    fetch(url, GitRef.branch("main"), cache)
    second = upstream.commit({"workspace.poly": "name: two\n"}, "second")
    assert fetch(url, GitRef.branch("main"), cache, previous=first).sha == second


def test_force_pushed_branch_is_history_rewritten(
    upstream: Upstream, git_daemon: GitDaemon, cache: Path
) -> None:
    base = upstream.commit(WORKSPACE, "base")
    applied = upstream.commit({"workspace.poly": "name: applied\n"}, "applied")
    url = git_daemon.url(upstream)
    assert fetch(url, GitRef.branch("main"), cache).sha == applied

    upstream.force_reset(base)
    rewritten = upstream.commit({"workspace.poly": "name: other\n"}, "rewritten")
    with pytest.raises(GitHistoryRewrittenError) as caught:
        fetch(url, GitRef.branch("main"), cache, previous=applied)
    assert applied[:12] in str(caught.value)
    assert rewritten[:12] in str(caught.value)
    # A fresh cache never saw the applied commit; the rewrite is still reported.
    with pytest.raises(GitHistoryRewrittenError):
        fetch(url, GitRef.branch("main"), cache.parent / "fresh", previous=applied)


def test_moved_tag_to_unrelated_commit_is_history_rewritten(
    upstream: Upstream, git_daemon: GitDaemon, cache: Path
) -> None:
    base = upstream.commit(WORKSPACE, "base")
    applied = upstream.commit({"workspace.poly": "name: applied\n"}, "applied")
    upstream.tag("v1")
    url = git_daemon.url(upstream)
    fetch(url, GitRef.tag("v1"), cache)
    upstream.tag("v1", base)
    with pytest.raises(GitHistoryRewrittenError):
        fetch(url, GitRef.tag("v1"), cache, previous=applied)
