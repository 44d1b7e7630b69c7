"""Talking to a remote: its credential-free URL and the environment that authenticates to it.

Credentials are read from files at the moment Git asks (a credential helper for HTTPS, a
private key copy and ``known_hosts`` for SSH), so they never appear in argv, the environment,
URLs kept on disk, logs or error messages.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from controller.errors import GitAuthError, GitTimeoutError, GitUnreachableError
from controller.source import gitcmd
from controller.source.classify import classify, redact
from controller.source.model import GitAuth

__all__ = ["Remote", "credential_free"]


@dataclass(frozen=True)
class Remote:
    """A remote URL (without credentials) and the environment that authenticates to it."""

    url: str
    display: str
    env: Mapping[str, str]
    config: Sequence[str]
    secrets: tuple[str, ...]
    timeout: float

    @classmethod
    def create(cls, url: str, auth: GitAuth, timeout: float, scratch: Callable[[], Path]) -> Remote:
        """Split credentials off ``url`` and prepare credential/SSH settings from ``auth``.

        ``scratch()`` makes (once) a private directory that lives as long as the remote is
        used; it is called only when a credential needs a file of its own.
        """
        url, password = _strip_password(url)
        env: dict[str, str] = {}
        config: list[str] = []
        secrets = [password] if password else []
        if auth.username_file or auth.password_file or password:
            # A credential helper that reads the files at the moment Git asks, so secrets are
            # never in argv, the environment, or a URL written into the cache's config.
            password_file = auth.password_file
            if password and not password_file:  # from the URL: a private file, like the rest
                from controller.secrets import write_private  # (and pyrage): only when needed

                password_file = write_private(scratch() / "password", password.encode())
            env["CRATEKEEPER_GIT_USERNAME_FILE"] = str(auth.username_file or "")
            env["CRATEKEEPER_GIT_PASSWORD_FILE"] = str(password_file or "")
            config += ["credential.helper=", f"credential.helper={_CREDENTIAL_HELPER}"]
            secrets += _read_secrets(auth.username_file, auth.password_file)
        identity = _private_copy(auth.identity_file, scratch) if auth.identity_file else None
        env["GIT_SSH_COMMAND"] = _ssh_command(identity, auth.known_hosts_file)
        return cls(
            url=url,
            display=redact(url),
            env=env,
            config=config,
            secrets=tuple(s for s in secrets if s),
            timeout=timeout,
        )

    def git(self, git_dir: Path, args: Sequence[str]) -> bytes:
        """Run a network Git command; failures become the matching :class:`SourceError`."""
        argv = [a for c in self.config for a in ("-c", c)] + list(args)
        try:
            proc = gitcmd.run(argv, git_dir=git_dir, extra_env=self.env, timeout=self.timeout)
        except GitTimeoutError:
            raise GitUnreachableError(
                f"{self.display} did not answer within {self.timeout:.0f}s; "
                "check the URL, the network and any proxy"
            ) from None
        if proc.returncode != 0:
            raise classify(self.display, redact(gitcmd.stderr(proc), self.secrets))
        return proc.stdout


_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || exit 0; '
    'u="$(cat "$CRATEKEEPER_GIT_USERNAME_FILE" 2>/dev/null)"; '
    'test -n "$u" && printf "username=%s\\n" "$u"; '
    'p="$(cat "$CRATEKEEPER_GIT_PASSWORD_FILE" 2>/dev/null)"; '
    'printf "password=%s\\n" "$p"; }; f'
)


def credential_free(url: str) -> str:
    """``url`` as the cache knows it: without its password."""
    return _strip_password(url)[0]


def _strip_password(url: str) -> tuple[str, str | None]:
    """``url`` without its password (kept only in memory), and that password."""
    if "://" not in url:
        return url, None
    parts = urlsplit(url)
    if parts.password is None:
        return url, None
    netloc = parts.netloc.rsplit("@", 1)[1]
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    return urlunsplit(parts._replace(netloc=netloc)), parts.password


def _read_secrets(*files: Path | None) -> list[str]:
    """The secret values, only to scrub them from messages if a server ever echoes them."""
    values = []
    for path in files:
        if path is not None and path.is_file():
            values.append(path.read_text(errors="replace").strip())
    return values


def _private_copy(identity: Path, scratch: Callable[[], Path]) -> Path:
    """The SSH key as a private file ending in a newline: ``identity`` itself when it is one
    (the operator writes Secrets so), else a 0600 copy in ``scratch()``.

    ssh refuses a key readable by others, and Kubernetes mounts Secret files 0644 by default;
    keys pasted with ``--from-literal`` often lose their final newline, which ssh also rejects.
    """
    try:
        data = identity.read_bytes()
        info = identity.stat()
    except OSError as exc:
        raise GitAuthError(
            f"cannot read the SSH identity file {identity}: {exc.strerror}"
        ) from None
    if data.endswith(b"\n") and info.st_uid == os.geteuid() and not info.st_mode & 0o077:
        return identity
    from controller.secrets import write_private  # (and pyrage): only for a copy

    return write_private(scratch() / "identity", data if data.endswith(b"\n") else data + b"\n")


def _ssh_command(identity: Path | None, known_hosts_file: Path | None) -> str:
    """``GIT_SSH_COMMAND`` checking host keys against ``known_hosts`` only, with only our key.

    ``-F /dev/null`` ignores ``~/.ssh/config``; OpenSSH finds ``~/.ssh`` through the password
    database, not ``$HOME``, so every file it could read is named here explicitly.
    """
    known_hosts = str(known_hosts_file) if known_hosts_file else os.devnull
    options = [
        "BatchMode=yes",
        "StrictHostKeyChecking=yes",
        f"UserKnownHostsFile={known_hosts}",
        "GlobalKnownHostsFile=/dev/null",
        "UpdateHostKeys=no",
        "IdentitiesOnly=yes",
        "IdentityAgent=none",
        "PasswordAuthentication=no",
        "KbdInteractiveAuthentication=no",
        "ConnectTimeout=20",
    ]
    if identity:
        options.append(f"IdentityFile={identity}")
    else:
        options.append("PubkeyAuthentication=no")
    parts = ["ssh", "-F", "/dev/null"]
    for option in options:
        parts += ["-o", option]
    return shlex.join(parts)
