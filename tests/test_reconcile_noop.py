"""``cratekeeper reconcile URL`` with nothing to do: one ``ls-remote``, told and recorded exactly
as the full reconcile tells and records it (issue 11 point 3; controller/cli/noop.py).

Real git daemon, real processes where the import set or the process count is the point.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

import pytest

from controller.cli import main
from controller.cli.noop import inputs
from controller.settings import Settings, env_names
from tests.support.git_servers import GitDaemon, Upstream
from tests.test_source_cost import git_processes

__all__ = ["git_processes"]  # the fixture, shared with tests/test_source_cost.py

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
users: [{name: u, user: {token: not-a-secret}}]
"""
WORKSPACE = {
    "workspace.poly": "name: noop\norganization: acme\nblocks: []\n",
    "artifacts/secrets/kubeconfig.yml": KUBECONFIG,
}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's cache in the test's directory, and no CRATEKEEPER_* variable of the caller."""
    for name in list(os.environ):
        if name.lower().startswith("cratekeeper_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CRATEKEEPER_CACHE_DIR", str(tmp_path / "cache"))


def reconcile(
    url: str, state: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, list[str], str]:
    """Exit code, stdout lines without their elapsed time, and stderr of one reconcile."""
    code = main(["reconcile", url, "--state", str(state), *extra])
    out, err = capsys.readouterr()
    return code, [re.sub(r"^\[ *[0-9.]+s\] ", "", line) for line in out.splitlines()], err


def processes(log: Path) -> list[str]:
    """The git subcommands the log holds (``ls-remote``, ``fetch``...), and empties it."""
    found = []
    for line in log.read_text().splitlines():
        words = line.split()
        while words and words[0].startswith("-"):  # --git-dir D, -c key=value
            words = words[2:] if words[0] in ("--git-dir", "-c", "-C") else words[1:]
        found.append(words[0] if words else "")
    log.write_text("")
    return found


@pytest.mark.usefixtures("env")
def test_nothing_to_do_is_one_ls_remote_told_as_before_and_the_state_file_is_not_written(
    upstream: Upstream,
    git_daemon: GitDaemon,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    git_processes: Path,
) -> None:
    sha = upstream.commit(WORKSPACE, "first")
    url, state = git_daemon.url(upstream), tmp_path / "state.json"
    assert reconcile(url, state, capsys)[0] == 0
    applied = state.read_bytes()
    stamp = state.stat().st_mtime_ns

    # The full path (no record to go by) tells a no-op so, and leaves the file as it is.
    state.with_name("state.json.lock").write_text("")
    processes(git_processes)
    full = reconcile(url, state, capsys)
    assert "ls-remote" in processes(git_processes)
    short = reconcile(url, state, capsys)

    assert (
        short
        == full
        == (
            0,
            [
                f"revision {sha[:12]} 'first' by Ada Author <ada@example.com>",
                f"revision {sha[:12]} is already applied: nothing to do",
                f"applied {sha[:12]}; state in {state}",
            ],
            "",
        )
    )
    assert processes(git_processes) == ["ls-remote"]
    assert state.read_bytes() == applied and state.stat().st_mtime_ns == stamp
    assert json.loads(applied)["lastAppliedRevision"] == sha


@pytest.mark.usefixtures("env")
def test_a_moved_branch_is_applied_and_a_pinned_commit_with_nothing_to_do_runs_no_git(
    upstream: Upstream,
    git_daemon: GitDaemon,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    git_processes: Path,
) -> None:
    upstream.commit(WORKSPACE, "first")
    url, state = git_daemon.url(upstream), tmp_path / "state.json"
    assert reconcile(url, state, capsys)[0] == 0
    second = upstream.commit({"README.md": "moved\n"}, "second")

    code, out, _ = reconcile(url, state, capsys)

    assert code == 0 and f"applied {second[:12]}; state in {state}" in out
    assert "already applied" not in " ".join(out)
    assert json.loads(state.read_text())["lastAppliedRevision"] == second
    # The same commit pinned: applied already; the ref it was applied from is recorded once.
    assert reconcile(url, state, capsys, "--ref", second)[1][1].endswith("nothing to do")
    assert json.loads(state.read_text())["lastAppliedRef"] == f"commit:{second}"
    processes(git_processes)
    assert reconcile(url, state, capsys, "--ref", second)[1][1].endswith("nothing to do")
    assert processes(git_processes) == []


@pytest.mark.usefixtures("env")
def test_a_state_file_changed_since_is_validated_again_with_the_same_errors(
    upstream: Upstream, git_daemon: GitDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upstream.commit(WORKSPACE, "first")
    url, state = git_daemon.url(upstream), tmp_path / "state.json"
    assert reconcile(url, state, capsys)[0] == 0
    applied = state.read_text()

    # A hand edit that still validates: the full path runs and writes the file as it writes it.
    state.write_text(json.dumps(json.loads(applied), indent=4))
    assert reconcile(url, state, capsys)[0] == 0
    assert state.read_text() == applied

    # A damaged lock: the full path again, and the record is kept anew.
    state.with_name("state.json.lock").write_text("{not json")
    assert reconcile(url, state, capsys)[1][1].endswith("nothing to do")
    assert json.loads(state.with_name("state.json.lock").read_text())["revision"]

    # A part the reconcile needs no longer validates: refused as it always was.
    state.write_text(applied.replace('"blocks": []', '"blocks": "none"'))
    code, out, err = reconcile(url, state, capsys)
    assert code == 1 and out == []
    assert err.startswith(f"error: {state}: blocks do not validate")


@pytest.mark.usefixtures("env")
@pytest.mark.parametrize(
    "name", ["CRATEKEEPER_MAX_CONCURRENT_RUNS", "cratekeeper_max_concurrent_runs"]
)
def test_an_invalid_setting_still_fails_a_reconcile_with_nothing_to_do(
    upstream: Upstream,
    git_daemon: GitDaemon,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    upstream.commit(WORKSPACE, "first")
    url, state = git_daemon.url(upstream), tmp_path / "state.json"
    assert reconcile(url, state, capsys)[0] == 0
    monkeypatch.setenv(name, "0")

    code, out, err = reconcile(url, state, capsys)

    assert code == 1 and out == []
    assert "invalid settings: CRATEKEEPER_MAX_CONCURRENT_RUNS" in err


@pytest.mark.usefixtures("env")
def test_a_revision_that_failed_is_attempted_again_not_skipped(
    upstream: Upstream, git_daemon: GitDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upstream.commit(WORKSPACE, "first")
    url, state = git_daemon.url(upstream), tmp_path / "state.json"
    assert reconcile(url, state, capsys)[0] == 0
    upstream.commit({"workspace.poly": "name: noop\nblocks: [{name: x}]\n"}, "broken")

    first, again = reconcile(url, state, capsys), reconcile(url, state, capsys)

    assert first[0] == again[0] == 1
    assert "InvalidWorkspace" in first[2] and again[2] == first[2]
    assert state.with_name("state.json.lock").read_text() == ""


def _args(source: str) -> argparse.Namespace:
    return argparse.Namespace(source=source, ref=None, subpath="", registry_mirror=None)


def test_the_record_keeps_no_password_and_no_digest_of_a_secret_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = env_names()
    secret = {f"cratekeeper_{n}" for n, field in Settings.model_fields.items() if not field.repr}
    assert secret == {"cratekeeper_age_identity", "cratekeeper_age_passphrase"}
    assert "cratekeeper_cache_dir" in names and not secret & set(names)

    one = inputs(_args("https://u:one@git.example.com/r.git"), names)
    monkeypatch.setenv("CRATEKEEPER_AGE_PASSPHRASE", "another")
    assert inputs(_args("https://u:two@git.example.com/r.git"), names) == one
    monkeypatch.setenv("Cratekeeper_Cache_Dir", "/elsewhere")  # read case-insensitively
    assert inputs(_args("https://u:two@git.example.com/r.git"), names) != one
