"""``cratekeeper reconcile URL`` with nothing to do, decided with one ``git ls-remote``.

The full reconcile (:mod:`controller.cli.reconciling`) validates the settings and the state file
and imports pydantic for both: most of a no-op's cost as a process (issue 11 point 3). So after
each reconcile of a URL it keeps, in the state file's lock file, what it concluded: "with these
inputs and this state file, the ref at this commit has nothing to do, and recording that would
not change the file". The next reconcile reads that record with ``json`` alone, asks the remote
once, and when the ref still points at that commit, prints what the full path prints and stops.
Anything else (no record, another cratekeeper version, other inputs or settings, a state file
whose bytes differ from those the full path wrote, a moved ref, a local checkout) takes the full
path, which validates everything and reports errors as it always did. The record is a cache: a
missing or damaged one only costs the full path once.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, TypedDict, TypeGuard

from controller import __version__
from controller.errors import CratekeeperError
from controller.source.lsremote import remote_commit
from controller.source.model import GitRef
from controller.source.remote import credential_free


class NoopRecord(TypedDict):
    """The lock file's content: what the last full reconcile of this state file concluded."""

    inputs: str
    """:func:`inputs` of that reconcile."""
    settings: list[str]
    """The (lowercased) environment variables of the non-secret settings it validated."""
    state: str
    """SHA-256 of the state file it left."""
    cacheDir: str
    """Its Git cache directory (``CRATEKEEPER_CACHE_DIR``/git)."""
    revision: str
    """The commit that has nothing to do, and the commit's subject and author."""
    subject: str
    author: str


class StateLock:
    """The held lock of one state file; its file keeps the :class:`NoopRecord`."""

    def __init__(self, handle: IO[str]) -> None:
        self._handle = handle

    def recall(self) -> NoopRecord | None:
        """The record, or None when there is none or it is not one (then take the full path)."""
        self._handle.seek(0)
        try:
            raw = json.loads(self._handle.read())
        except ValueError:  # empty (a new lock, an older cratekeeper's) or damaged
            return None
        return raw if _is_record(raw) else None

    def keep(self, record: NoopRecord | None) -> None:
        """Replace the record (None: keep none). In place: the lock is on this file's inode."""
        self._handle.seek(0)
        self._handle.truncate()
        if record is not None:
            self._handle.write(json.dumps(record, indent=2) + "\n")
        self._handle.flush()


def _is_record(raw: object) -> TypeGuard[NoopRecord]:
    """Whether ``raw`` has exactly the fields of a :class:`NoopRecord`, each of its type."""
    if not isinstance(raw, dict) or set(raw) != set(NoopRecord.__annotations__):
        return False
    names = raw["settings"]
    return (
        isinstance(names, list)
        and all(isinstance(n, str) for n in names)
        and all(isinstance(v, str) for k, v in raw.items() if k != "settings")
    )


@contextlib.contextmanager
def exclusive(state_path: Path) -> Iterator[StateLock]:
    """One reconcile per state file at a time: a second one fails instead of running twice."""
    lock = state_path.with_name(state_path.name + ".lock")
    if state_path.is_dir():
        raise CratekeeperError(f"--state {state_path} is a directory; give a file path")
    try:
        handle = lock.open("a+")
    except OSError as exc:
        raise CratekeeperError(
            f"cannot use the state file {state_path}: {exc.strerror}; "
            "give --state a path in an existing, writable directory"
        ) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CratekeeperError(
                f"another cratekeeper reconcile is using {state_path}; wait for it to finish"
            ) from None
        yield StateLock(handle)


def inputs(args: argparse.Namespace, settings: Sequence[str]) -> str:
    """A digest of everything but the state file that decides a reconcile before its first
    run, or could fail it: the cratekeeper version, the source (without a password), the ref,
    the path, the registry mirror flags (validated with the settings), ``HOME`` (the default
    cache directory) and the values of the environment variables ``settings``, matched
    case-insensitively as pydantic-settings does. Secret settings are never in ``settings``
    (they cannot fail validation): no digest of a secret is kept."""
    env = {name.lower(): value for name, value in os.environ.items()}
    facts = {
        "version": __version__,
        "source": credential_free(args.source),
        "ref": args.ref,
        "path": args.subpath,
        "mirrors": args.registry_mirror,
        "home": os.environ.get("HOME"),
        "settings": {name: env.get(name) for name in settings},
    }
    return digest(json.dumps(facts, sort_keys=True).encode())


def digest(data: bytes) -> str:
    """SHA-256 of ``data``, in hex."""
    return hashlib.sha256(data).hexdigest()


_SHA = re.compile(r"^[0-9a-f]{40}$")


def git_ref(text: str) -> GitRef:
    """``--ref``: a full SHA pins a commit, ``refs/tags/X`` a tag, anything else a branch."""
    if _SHA.match(text):
        return GitRef.commit(text)
    if text.startswith("refs/tags/"):
        return GitRef.tag(text.removeprefix("refs/tags/"))
    return GitRef.branch(text.removeprefix("refs/heads/"))


def progress_printer() -> Callable[[str], None]:
    """Prints a line with the seconds since it was made."""
    start = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - start:6.1f}s] {message}", flush=True)

    return progress


def revision_line(sha: str, subject: str, author: str) -> str:
    return f"revision {sha[:12]} {subject!r} by {author}"


def up_to_date_line(sha: str) -> str:
    return f"revision {sha[:12]} is already applied: nothing to do"


def applied_line(sha: str, state_path: Path) -> str:
    return f"applied {sha[:12]}; state in {state_path}"


def shortcut(args: argparse.Namespace, state_path: Path, lock: StateLock) -> bool:
    """Whether the reconcile was a no-op, told as the full path tells it (then it is done:
    the state file stays as it is, since recording the no-op would not change it); False
    when the full path must decide."""
    known = lock.recall()
    if known is None or Path(args.source).is_dir():
        return False
    if known["inputs"] != inputs(args, known["settings"]):
        return False
    try:
        if digest(state_path.read_bytes()) != known["state"]:
            return False
    except OSError:
        return False
    progress = progress_printer()
    sha = remote_commit(args.source, git_ref(args.ref or "main"), Path(known["cacheDir"]))
    if sha != known["revision"]:
        return False
    progress(revision_line(sha, known["subject"], known["author"]))
    progress(up_to_date_line(sha))
    progress(applied_line(sha, state_path))
    return True
