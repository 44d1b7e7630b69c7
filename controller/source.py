"""Git: fetch a workspace repository at a branch, tag or commit, and read it without a checkout.

Every fetch goes into one bare repository per remote URL under the cache directory, so later
fetches only transfer new objects. A check whose remote ref has not moved costs exactly one
``git ls-remote`` round trip. Git runs with a hermetic environment: no system or user config,
no ``~/.ssh``, no terminal prompts; credentials are read from files and never appear in argv,
URLs kept on disk, logs or error messages.
"""

from __future__ import annotations

import atexit
import fcntl
import functools
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit, urlunsplit

from controller.errors import (
    GitAuthError,
    GitHistoryRewrittenError,
    GitRefNotFoundError,
    GitUnreachableError,
    SourceError,
)

__all__ = [
    "GitAuth",
    "GitRef",
    "GitTree",
    "RefKind",
    "Revision",
    "fetch",
    "local_revision",
    "redact",
]

_FULL_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")
_DEFAULT_TIMEOUT = 120.0


# ---------------------------------------------------------------------------------------------
# Values


class RefKind(StrEnum):
    """What a :class:`GitRef` names, as in ``spec.source.ref``."""

    BRANCH = "branch"
    TAG = "tag"
    COMMIT = "commit"


@dataclass(frozen=True)
class GitRef:
    """One of ``spec.source.ref``'s choices: a branch, a tag or a full commit SHA."""

    kind: RefKind
    name: str

    @classmethod
    def branch(cls, name: str) -> GitRef:
        """A branch, followed as it moves (``main``, not ``refs/heads/main``)."""
        return cls(RefKind.BRANCH, name)

    @classmethod
    def tag(cls, name: str) -> GitRef:
        """A tag; annotated tags are peeled to their commit."""
        return cls(RefKind.TAG, name)

    @classmethod
    def commit(cls, sha: str) -> GitRef:
        """A pinned commit; it must be the full SHA so it can be checked without the network."""
        return cls(RefKind.COMMIT, sha.lower())

    def __post_init__(self) -> None:
        """Refuse names Git would read as options, and abbreviated commit pins."""
        if not self.name or self.name.startswith("-") or any(c.isspace() for c in self.name):
            raise SourceError(f"invalid Git {self.kind.value} name {self.name!r}")
        if self.kind is RefKind.COMMIT and not _FULL_SHA.match(self.name):
            raise SourceError(
                f"commit {self.name!r} is not a full SHA; pin the complete 40-character commit id"
            )

    @property
    def remote_name(self) -> str:
        """The full ref name on the remote (``refs/heads/main``); a commit is its own SHA."""
        if self.kind is RefKind.BRANCH:
            return f"refs/heads/{self.name}"
        if self.kind is RefKind.TAG:
            return f"refs/tags/{self.name}"
        return self.name

    def __str__(self) -> str:
        return f"{self.kind.value} {self.name!r}"


@dataclass(frozen=True)
class GitAuth:
    """Credentials as files (the operator mounts the Workspace's ``secretRef`` Secret as files).

    HTTPS uses ``username``/``password`` (a token works as the password); SSH uses ``identity``
    (a private key) and ``known_hosts``. Host keys are always checked: an SSH remote without a
    ``known_hosts`` file is refused.
    """

    username_file: Path | None = None
    password_file: Path | None = None
    identity_file: Path | None = None
    known_hosts_file: Path | None = None

    @classmethod
    def from_directory(cls, directory: Path) -> GitAuth:
        """Credentials from a mounted Secret, using Flux's key names.

        Keys: ``username``, ``password``, ``identity``, ``known_hosts``; missing ones are unset.
        """

        def present(name: str) -> Path | None:
            path = directory / name
            return path if path.is_file() else None

        return cls(
            username_file=present("username"),
            password_file=present("password"),
            identity_file=present("identity"),
            known_hosts_file=present("known_hosts"),
        )


@dataclass(frozen=True)
class Revision:
    """One resolved commit: what the rest of the pipeline reads and records in status."""

    sha: str
    subject: str
    author: str
    time: datetime
    """The commit (committer) time, timezone-aware."""
    tree: GitTree


@dataclass(frozen=True)
class GitTree:
    """The files of a workspace at one commit, read from the Git object database (no checkout).

    Implements :class:`controller.tree.Tree`, rooted at ``subpath`` inside the repository.
    """

    git_dir: Path
    commit: str
    subpath: str = ""
    _entries: dict[str, str] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    @property
    def _treeish(self) -> str:
        """The tree of the sub-path at the commit, as Git spells it."""
        return f"{self.commit}:{self.subpath}" if self.subpath else f"{self.commit}^{{tree}}"

    def _index(self) -> dict[str, str]:
        """Path → blob id of the regular files, listed once and kept."""
        if not self._entries:
            out = _git(["ls-tree", "-r", "-z", "--full-tree", self._treeish], git_dir=self.git_dir)
            for record in out.split(b"\0"):
                if not record:
                    continue
                meta, _, path = record.partition(b"\t")
                mode, kind, oid = meta.decode().split()
                # Regular files only: symlinks could point outside the workspace, and
                # submodules are not part of this repository's objects.
                if kind == "blob" and mode in ("100644", "100755"):
                    self._entries[path.decode("utf-8", errors="surrogateescape")] = oid
        return self._entries

    def read_bytes(self, relpath: str) -> bytes | None:
        """The file's content at this commit, or ``None`` when there is no such file."""
        oid = self._index().get(PurePosixPath(relpath).as_posix())
        if oid is None:
            return None
        return _git(["cat-file", "blob", oid], git_dir=self.git_dir)

    def files(self) -> list[str]:
        """Every regular file path relative to the workspace root, sorted."""
        return sorted(self._index())

    def export(self, dest: Path) -> None:
        """Write the workspace at this commit into ``dest`` (created if missing).

        Ansible needs a real working directory; this materialises one from the object database
        through a throw-away index, leaving the cache untouched.
        """
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="cratekeeper-index-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            _git(["read-tree", self._treeish], git_dir=self.git_dir, extra_env=env)
            _git(
                ["--work-tree", str(dest.resolve()), "checkout-index", "--all", "--force"],
                git_dir=self.git_dir,
                extra_env=env,
            )


# ---------------------------------------------------------------------------------------------
# Local repositories


def local_revision(repo_dir: Path, rev: str, subpath: str = "") -> Revision:
    """Resolve ``rev`` (any rev-parse expression: ``HEAD~1``, a short SHA, a branch) in a local
    Git repository, for the CLI's ``plan``/``reconcile`` on a checkout without any fetch.

    Raises :class:`GitRefNotFoundError` when ``rev`` does not name a commit and
    :class:`SourceError` when ``repo_dir`` is not a Git repository.
    """
    if not repo_dir.is_dir():
        raise SourceError(f"{repo_dir} is not a directory; pass a Git checkout")
    proc = _run(["rev-parse", "--absolute-git-dir"], cwd=repo_dir)
    if proc.returncode != 0:
        # Git's own words matter here (e.g. "dubious ownership" and the safe.directory fix).
        raise SourceError(f"{repo_dir} is not a Git repository: {_stderr(proc)}")
    git_dir = Path(proc.stdout.decode().strip())
    sha = _resolve_local(git_dir, f"{rev}^{{commit}}")
    if sha is None:
        raise GitRefNotFoundError(
            f"{rev!r} does not name a commit in {repo_dir}; "
            "use a branch, tag, SHA or expression such as HEAD~1 (see `git log`)"
        )
    return _revision(git_dir, sha, subpath, where=str(repo_dir))


def _resolve_local(git_dir: Path, rev: str) -> str | None:
    """The object id ``rev`` resolves to in ``git_dir``, or ``None``."""
    proc = _run(["rev-parse", "--verify", "--quiet", "--end-of-options", rev], git_dir=git_dir)
    return proc.stdout.decode().strip() if proc.returncode == 0 else None


def _revision(git_dir: Path, sha: str, subpath: str, *, where: str) -> Revision:
    """The :class:`Revision` of commit ``sha`` (already present in ``git_dir``)."""
    subpath = _normalise_subpath(subpath)
    out = _git(
        ["log", "-1", "--no-show-signature", "--format=%H%x00%s%x00%an <%ae>%x00%cI", sha],
        git_dir=git_dir,
    )
    full, subject, author, when = out.decode("utf-8", errors="replace").strip().split("\0")
    if subpath:
        kind = _run(["cat-file", "-t", f"{full}:{subpath}"], git_dir=git_dir)
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


def _normalise_subpath(subpath: str) -> str:
    """``spec.source.path`` as a clean relative POSIX path (``""`` for the repository root)."""
    parts = [p for p in PurePosixPath(subpath.strip("/")).parts if p not in ("", ".")]
    if ".." in parts:
        raise SourceError(f"path {subpath!r} leaves the repository; use a path inside it")
    return "/".join(parts)


# ---------------------------------------------------------------------------------------------
# Remote repositories


def fetch(
    url: str,
    ref: GitRef,
    cache_dir: Path,
    *,
    subpath: str = "",
    auth: GitAuth | None = None,
    previous: str | None = None,
    timeout: float = _DEFAULT_TIMEOUT,
) -> Revision:
    """Bring ``ref`` of the repository at ``url`` into the cache and resolve it to a commit.

    The cache is one bare repository per URL under ``cache_dir``; fetches are incremental. When
    the remote ref still points at a commit the cache holds, this costs one ``git ls-remote``
    and nothing else (a pinned commit already cached costs no network at all).

    ``previous`` is the commit last applied for this ref: when the new commit does not descend
    from it the remote history was rewritten, and :class:`GitHistoryRewrittenError` is raised
    instead of silently following a force-push. Pass ``None`` when the ref itself changed.
    """
    with tempfile.TemporaryDirectory(prefix="cratekeeper-auth-") as scratch:
        remote = _Remote.create(url, auth or GitAuth(), timeout, Path(scratch))
        git_dir = _cache_repo(cache_dir, remote.url)
        with _locked(git_dir):
            return _fetch_locked(remote, git_dir, ref, subpath, previous)


def _fetch_locked(
    remote: _Remote, git_dir: Path, ref: GitRef, subpath: str, previous: str | None
) -> Revision:
    """:func:`fetch`, holding the cache repository's lock."""
    if ref.kind is RefKind.COMMIT:
        sha = ref.name
        if not _has_commit(git_dir, sha):
            _fetch_commit(remote, git_dir, sha)
    else:
        sha = _ls_remote(remote, git_dir, ref)
        if not _has_commit(git_dir, sha):
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
            if not _has_commit(git_dir, sha):
                # The ref moved again between ls-remote and fetch: take what was fetched.
                sha = _resolve_local(git_dir, f"{ref.remote_name}^{{commit}}") or sha
        if _resolve_local(git_dir, f"{ref.remote_name}^{{commit}}") != sha:
            # The commit is here (fetched for another ref, or left over from before a
            # force-push) but our ref is not on it: point the ref at it, keeping it from gc.
            _git(["update-ref", ref.remote_name, sha], git_dir=git_dir)
    if previous and previous != sha and not _is_ancestor(git_dir, previous, sha):
        raise GitHistoryRewrittenError(
            f"{ref} of {remote.display} now points at {sha[:12]}, which does not descend "
            f"from the last applied commit {previous[:12]}: the history was rewritten "
            "(force-push?). Restore the history, or confirm the new commit by changing "
            "spec.source.ref"
        )
    return _revision(git_dir, sha, subpath, where=remote.display)


def _ls_remote(remote: _Remote, git_dir: Path, ref: GitRef) -> str:
    """The commit ``ref`` points at on the remote: the one network round trip of a check."""
    out = remote.git(git_dir, ["ls-remote", "--end-of-options", remote.url, ref.remote_name])
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


def _fetch_commit(remote: _Remote, git_dir: Path, sha: str) -> None:
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
    if not _has_commit(git_dir, sha):
        raise GitRefNotFoundError(
            f"commit {sha[:12]} not found in {remote.display}; check spec.source.ref.commit "
            "(was it pushed? was the branch holding it force-pushed?)"
        )
    _git(["update-ref", keep, sha], git_dir=git_dir)


def _has_commit(git_dir: Path, sha: str) -> bool:
    """Whether the cache holds commit ``sha`` (a local lookup, no network)."""
    return _run(["cat-file", "-e", f"{sha}^{{commit}}"], git_dir=git_dir).returncode == 0


def _is_ancestor(git_dir: Path, old: str, new: str) -> bool:
    """Whether ``old`` is an ancestor of ``new``; an ``old`` the cache lacks is not (the full
    history of ``new`` has been fetched, so any ancestor of it is present)."""
    if not _has_commit(git_dir, old):
        return False
    proc = _run(["merge-base", "--is-ancestor", old, new], git_dir=git_dir)
    if proc.returncode not in (0, 1):
        raise SourceError(f"cannot compare {old[:12]} with {new[:12]}: {_stderr(proc)}")
    return proc.returncode == 0


def _cache_repo(cache_dir: Path, url: str) -> Path:
    """The bare cache repository for ``url`` (credential-free), created on first use."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    tail = re.sub(r"[^A-Za-z0-9._-]+", "-", url.rstrip("/").rsplit("/", 1)[-1])[:40]
    git_dir = cache_dir / f"{tail}-{digest}.git"
    if not (git_dir / "HEAD").is_file():
        git_dir.parent.mkdir(parents=True, exist_ok=True)
        _git(["init", "--bare", "--quiet", str(git_dir)], cwd=git_dir.parent)
        # For people inspecting the cache; fetches always pass the URL explicitly.
        _git(["config", "cratekeeper.url", url], git_dir=git_dir)
    return git_dir


@contextmanager
def _locked(git_dir: Path) -> Iterator[None]:
    """Serialise fetches into one cache repository (two workspaces may share a remote)."""
    with (git_dir / "cratekeeper.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------
# Talking to a remote


@dataclass(frozen=True)
class _Remote:
    """A remote URL (without credentials) and the environment that authenticates to it."""

    url: str
    display: str
    env: Mapping[str, str]
    config: Sequence[str]
    secrets: tuple[str, ...]
    timeout: float

    @classmethod
    def create(cls, url: str, auth: GitAuth, timeout: float, scratch: Path) -> _Remote:
        """Split credentials off ``url`` and prepare credential/SSH settings from ``auth``.

        ``scratch`` is a private directory that lives as long as the remote is used.
        """
        url, password = _strip_password(url)
        env: dict[str, str] = {}
        config: list[str] = []
        secrets = [password] if password else []
        if auth.username_file or auth.password_file or password:
            # A credential helper that reads the files at the moment Git asks, so secrets are
            # never in argv, the environment, or a URL written into the cache's config.
            env["CRATEKEEPER_GIT_USERNAME_FILE"] = str(auth.username_file or "")
            env["CRATEKEEPER_GIT_PASSWORD_FILE"] = str(auth.password_file or "")
            if password and not auth.password_file:
                env["CRATEKEEPER_GIT_PASSWORD"] = password
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
            proc = _run(argv, git_dir=git_dir, extra_env=self.env, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise GitUnreachableError(
                f"{self.display} did not answer within {self.timeout:.0f}s; "
                "check the URL, the network and any proxy"
            ) from None
        if proc.returncode != 0:
            raise _classify(self.display, redact(_stderr(proc), self.secrets))
        return proc.stdout


_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || exit 0; '
    'u="$(cat "$CRATEKEEPER_GIT_USERNAME_FILE" 2>/dev/null)"; '
    'test -n "$u" && printf "username=%s\\n" "$u"; '
    'if test -n "$CRATEKEEPER_GIT_PASSWORD_FILE"; '
    'then p="$(cat "$CRATEKEEPER_GIT_PASSWORD_FILE")"; else p="$CRATEKEEPER_GIT_PASSWORD"; fi; '
    'printf "password=%s\\n" "$p"; }; f'
)


def _read_secrets(*files: Path | None) -> list[str]:
    """The secret values, only to scrub them from messages if a server ever echoes them."""
    values = []
    for path in files:
        if path is not None and path.is_file():
            values.append(path.read_text(errors="replace").strip())
    return values


def _private_copy(identity: Path, scratch: Path) -> Path:
    """The SSH key copied to a 0600 file ending in a newline.

    ssh refuses a key readable by others, and Kubernetes mounts Secret files 0644 by default;
    keys pasted with ``--from-literal`` often lose their final newline, which ssh also rejects.
    """
    try:
        data = identity.read_bytes()
    except OSError as exc:
        raise GitAuthError(
            f"cannot read the SSH identity file {identity}: {exc.strerror}"
        ) from None
    copy = scratch / "identity"
    fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data if data.endswith(b"\n") else data + b"\n")
    return copy


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


_UNREACHABLE = (
    "could not resolve host",
    "could not resolve hostname",
    "failed to connect",
    "connection refused",
    "connection timed out",
    "operation timed out",
    "no route to host",
    "network is unreachable",
    "unable to look up",
    "unable to connect",
    "connection reset",
    "connection closed by remote host",
    "temporary failure in name resolution",
    "name or service not known",
)
_AUTH = (
    "authentication failed",
    "permission denied",
    "could not read username",
    "could not read password",
    "terminal prompts disabled",
    "http 401",
    "http 403",
    "the requested url returned error: 401",
    "the requested url returned error: 403",
    "invalid username or password",
)
_NOT_FOUND = (
    "repository not found",
    "not found",
    "does not appear to be a git repository",
    "access denied or repository not exported",
    "no such repository",
)


def _classify(display: str, stderr: str) -> SourceError:
    """Turn a failed Git command's (redacted) stderr into an error that says what to fix."""
    text = stderr.lower()
    detail = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
    if "host key verification failed" in text or "no matching host key" in text:
        return GitAuthError(
            f"the SSH host key of {display} is not in the known_hosts file; add the server's "
            f"key (ssh-keyscan, verified out of band) to the Secret's known_hosts ({detail})"
        )
    if any(marker in text for marker in _AUTH):
        return GitAuthError(
            f"authentication to {display} failed; check the username/password (token) or SSH "
            f"identity in spec.source.secretRef and its access to the repository ({detail})"
        )
    if any(marker in text for marker in _UNREACHABLE):
        return GitUnreachableError(
            f"cannot reach {display}; check the host name, port, network policy and that the "
            f"Git server is up ({detail})"
        )
    if any(marker in text for marker in _NOT_FOUND):
        return SourceError(
            f"no Git repository at {display} (or no access to it); check spec.source.url ({detail})"
        )
    return SourceError(f"git failed for {display}: {detail}")


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


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` with any ``user:password@`` of a URL, and each of ``secrets``, replaced by ``***``.

    Use it on anything that may reach a log, an event or a status message.
    """
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


# ---------------------------------------------------------------------------------------------
# Running git


def _hermetic_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal environment: no system/global config, no prompts, stable English messages."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": _empty_home(),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
        "GCM_INTERACTIVE": "never",
        "LC_ALL": "C",
        "LANG": "C",
    }
    if extra:
        env.update(extra)
    return env


@functools.cache
def _empty_home() -> str:
    """An empty directory used as ``$HOME`` so Git never reads a user's dotfiles."""
    home = tempfile.mkdtemp(prefix="cratekeeper-home-")
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    return home


def _run(
    args: Sequence[str],
    *,
    git_dir: Path | None = None,
    cwd: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
    timeout: float | None = _DEFAULT_TIMEOUT,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git`` with the hermetic environment; the one place a subprocess is started."""
    argv = ["git"]
    if git_dir is not None:
        argv += ["--git-dir", str(git_dir)]
    argv += list(args)
    try:
        return subprocess.run(
            argv,
            cwd=cwd,
            env=_hermetic_env(extra_env),
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        if cwd is not None and not cwd.is_dir():
            raise SourceError(f"{cwd} does not exist") from None
        raise SourceError("the `git` executable was not found on PATH; install Git") from exc


def _git(
    args: Sequence[str],
    *,
    git_dir: Path | None = None,
    cwd: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> bytes:
    """Run a local ``git`` command and return its stdout; failure is a :class:`SourceError`."""
    proc = _run(args, git_dir=git_dir, cwd=cwd, extra_env=extra_env)
    if proc.returncode != 0:
        raise SourceError(f"git {args[0]} failed: {_stderr(proc)}")
    return proc.stdout


def _stderr(proc: subprocess.CompletedProcess[bytes]) -> str:
    """A failed command's stderr, decoded and redacted, for an error message."""
    return redact(proc.stderr.decode("utf-8", errors="replace").strip())
