"""Running ``git`` hermetically: the one place a subprocess is started.

Git runs with no system or user config, an empty ``$HOME``, no terminal prompts and stable
English messages. Other modules call :func:`run` and :func:`git` through this module
(``gitcmd.run(...)``), so a test can wrap :func:`run` to count every ``git`` process.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from controller.errors import SourceError
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


def git(
    args: Sequence[str],
    *,
    git_dir: Path | None = None,
    cwd: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> bytes:
    """Run a local ``git`` command and return its stdout; failure is a :class:`SourceError`."""
    proc = run(args, git_dir=git_dir, cwd=cwd, extra_env=extra_env)
    if proc.returncode != 0:
        raise SourceError(f"git {args[0]} failed: {stderr(proc)}")
    return proc.stdout


def stderr(proc: subprocess.CompletedProcess[bytes]) -> str:
    """A failed command's stderr, decoded and redacted, for an error message."""
    return redact(proc.stderr.decode("utf-8", errors="replace").strip())
