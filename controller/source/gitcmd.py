"""Running ``git`` hermetically: the one place a subprocess is started.

Git runs with no system or user config, an empty ``$HOME``, no terminal prompts and stable
English messages. Other modules call :func:`run` and :func:`git` through this module
(``gitcmd.run(...)``), so a test can wrap :func:`run` to count every ``git`` process.

Each command runs in its own process group: when it times out (or the caller is interrupted)
the whole group is killed, so no ``ssh``, ``git-remote-http`` or credential helper it started
outlives it, and the timeout is a :class:`~controller.errors.GitTimeoutError`.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from controller.errors import GitTimeoutError, SourceError
from controller.source.classify import redact

__all__ = ["DEFAULT_TIMEOUT", "git", "run", "stderr"]

DEFAULT_TIMEOUT = 120.0


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
    # Git's own variables for a private CA (the chart sets them, docs/install.md): an HTTPS
    # server signed by an internal CA is otherwise unreachable from this hermetic environment.
    for name in ("GIT_SSL_CAINFO", "GIT_SSL_CAPATH"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    if extra:
        env.update(extra)
    return env


@functools.cache
def _empty_home() -> str:
    """An empty directory used as ``$HOME`` so Git never reads a user's dotfiles."""
    home = tempfile.mkdtemp(prefix="cratekeeper-home-")
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    return home


def run(
    args: Sequence[str],
    *,
    git_dir: Path | None = None,
    cwd: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    stdin: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git`` with the hermetic environment; the one place a subprocess is started
    (``stdin``: what it reads, else nothing)."""
    argv = ["git"]
    if git_dir is not None:
        argv += ["--git-dir", str(git_dir)]
    argv += list(args)
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=_hermetic_env(extra_env),
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, killed as one (see the module doc)
        )
    except FileNotFoundError as exc:
        if cwd is not None and not cwd.is_dir():
            raise SourceError(f"{cwd} does not exist") from None
        raise SourceError("the `git` executable was not found on PATH; install Git") from exc
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise GitTimeoutError(
            f"git {_command(args)} did not finish within {timeout:.0f}s and was stopped"
        ) from None
    except BaseException:  # interrupted (Ctrl-C, a cancelled thread): leave nothing behind
        _kill_group(proc)
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill ``proc`` and every process of its group (ssh, remote helpers), then reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(proc.pid, signal.SIGKILL)
    try:
        proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:  # a child that left the group holds the pipes open
        proc.wait()


def _command(args: Sequence[str]) -> str:
    """The git subcommand of ``args`` (after any ``-c key=value`` options)."""
    words = list(args)
    while words[:1] == ["-c"]:
        words = words[2:]
    return words[0] if words else "(none)"


def git(
    args: Sequence[str],
    *,
    git_dir: Path | None = None,
    cwd: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
) -> bytes:
    """Run a local ``git`` command and return its stdout; failure is a :class:`SourceError`."""
    proc = run(args, git_dir=git_dir, cwd=cwd, extra_env=extra_env, stdin=stdin)
    if proc.returncode != 0:
        raise SourceError(f"git {args[0]} failed: {stderr(proc)}")
    return proc.stdout


def stderr(proc: subprocess.CompletedProcess[bytes]) -> str:
    """A failed command's stderr, decoded and redacted, for an error message."""
    return redact(proc.stderr.decode("utf-8", errors="replace").strip())
