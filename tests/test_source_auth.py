"""Git credentials: HTTPS basic auth from mounted files, SSH keys and known hosts; secrets are
never stored or shown, user git and ssh configuration is ignored.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from controller.errors import GitAuthError
from controller.source import GitAuth, GitRef, fetch, redact
from tests.test_source import WORKSPACE, _ssh_auth, cache, http_auth

if TYPE_CHECKING:
    from tests.support.git_servers import GitDaemon, GitHttpServer, SshServer, Upstream

__all__ = ["cache", "http_auth"]  # the fixtures, shared with tests/test_source.py


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
