"""Fetching workspaces from Git: real servers on 127.0.0.1, a real `git` binary."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from controller.api.status import WorkspaceStatus
from controller.cli import main
from controller.errors import (
    GitAuthError,
    GitHistoryRewrittenError,
    GitRefNotFoundError,
    GitTimeoutError,
    GitUnreachableError,
    SourceError,
)
from controller.source import GitAuth, GitRef, fetch, gitcmd, local_ref, local_revision, redact
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


def _processes_with(*words: str) -> list[str]:
    """Command lines of this machine's processes that contain every one of ``words``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # it ended meanwhile
        line = " ".join(a.decode(errors="replace") for a in argv if a)
        if line and all(w in line for w in words):
            found.append(line)
    return found


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


# ---------------------------------------------------------------------------------------------
# Cost of a check, incremental fetches (measured on the HTTP server and by counting git calls)


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


# ---------------------------------------------------------------------------------------------
# HTTPS credentials


def test_http_basic_auth_from_files(
    upstream: Upstream, git_http: GitHttpServer, http_auth: GitAuth, cache: Path
) -> None:
    sha = upstream.commit(WORKSPACE, "first")
    assert fetch(git_http.url(upstream), GitRef.branch("main"), cache, auth=http_auth).sha == sha


def test_wrong_password_is_auth_error_without_the_password(
    upstream: Upstream, git_http: GitHttpServer, cache: Path, tmp_path: Path
) -> None:
    upstream.commit(WORKSPACE, "first")
    (tmp_path / "user").write_text(git_http.user)
    (tmp_path / "pass").write_text("wrong-Pa55word")
    auth = GitAuth(username_file=tmp_path / "user", password_file=tmp_path / "pass")
    with pytest.raises(GitAuthError, match=r"authentication to .* failed") as caught:
        fetch(git_http.url(upstream), GitRef.branch("main"), cache, auth=auth)
    assert "wrong-Pa55word" not in str(caught.value)


def test_missing_credentials_is_auth_error(
    upstream: Upstream, git_http: GitHttpServer, cache: Path
) -> None:
    upstream.commit(WORKSPACE, "first")
    with pytest.raises(GitAuthError):
        fetch(git_http.url(upstream), GitRef.branch("main"), cache)


def test_password_in_url_is_never_stored_or_shown(
    upstream: Upstream, git_http: GitHttpServer, cache: Path
) -> None:
    sha = upstream.commit(WORKSPACE, "first")
    password = git_http.password
    url = git_http.url(upstream).replace("http://", f"http://{git_http.user}:{password}@")
    assert fetch(url, GitRef.branch("main"), cache).sha == sha
    for path in cache.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path

    bad = url.replace(password, "wrong-Pa55word")
    with pytest.raises(GitAuthError) as caught:
        fetch(bad, GitRef.branch("main"), cache)
    assert "wrong-Pa55word" not in str(caught.value)
    assert f"http://***@127.0.0.1:{git_http.port}" in str(caught.value)


def test_user_git_and_ssh_config_are_ignored(
    upstream: Upstream,
    git_daemon: GitDaemon,
    cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sha = upstream.commit(WORKSPACE, "first")
    home = tmp_path / "home"
    home.mkdir()
    # A user config that would send every fetch to a closed port if it were read.
    (home / ".gitconfig").write_text('[url "git://127.0.0.1:1/"]\n\tinsteadOf = git://\n')
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    assert fetch(git_daemon.url(upstream), GitRef.branch("main"), cache).sha == sha


def test_redact_removes_userinfo_and_secrets() -> None:
    text = "fatal: unable to access 'https://bot:tok3n@git.example.com/r.git/': 403"
    assert redact(text) == "fatal: unable to access 'https://***@git.example.com/r.git/': 403"
    assert redact("token tok3n leaked", ["tok3n"]) == "token *** leaked"


# ---------------------------------------------------------------------------------------------
# SSH


def _ssh_auth(ssh_server: SshServer, known_hosts: Path | None) -> GitAuth:
    return GitAuth(identity_file=ssh_server.identity, known_hosts_file=known_hosts)


def test_ssh_key_with_known_hosts(
    upstream: Upstream, ssh_server: SshServer, cache: Path, tmp_path: Path
) -> None:
    sha = upstream.commit(WORKSPACE, "first")
    # As Kubernetes mounts a Secret: mode 0644, and the key may have lost its final newline.
    mounted = tmp_path / "identity"
    mounted.write_bytes(ssh_server.identity.read_bytes().rstrip(b"\n"))
    mounted.chmod(0o644)
    auth = GitAuth(identity_file=mounted, known_hosts_file=ssh_server.known_hosts)
    assert fetch(ssh_server.url(upstream), GitRef.branch("main"), cache, auth=auth).sha == sha


@pytest.mark.parametrize("which", ["wrong", "none"])
def test_unknown_ssh_host_key_is_refused(
    upstream: Upstream, ssh_server: SshServer, cache: Path, which: str
) -> None:
    upstream.commit(WORKSPACE, "first")
    known_hosts = ssh_server.wrong_known_hosts if which == "wrong" else None
    auth = _ssh_auth(ssh_server, known_hosts)
    with pytest.raises(GitAuthError, match=r"SSH host key .* is not in the known_hosts"):
        fetch(ssh_server.url(upstream), GitRef.branch("main"), cache, auth=auth)


def test_ssh_key_not_authorised_is_auth_error(
    upstream: Upstream, ssh_server: SshServer, cache: Path, tmp_path: Path
) -> None:
    upstream.commit(WORKSPACE, "first")
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    auth = GitAuth(identity_file=stranger, known_hosts_file=ssh_server.known_hosts)
    with pytest.raises(GitAuthError, match=r"authentication to .* failed"):
        fetch(ssh_server.url(upstream), GitRef.branch("main"), cache, auth=auth)
