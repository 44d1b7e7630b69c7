"""The state file of ``cratekeeper reconcile``: the Workspace status, kept in a JSON file."""

from __future__ import annotations

import contextlib
import fcntl
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from controller.api.status import WorkspaceStatus, salvage_status
from controller.errors import CratekeeperError, StatusUnreadableError


def load_state(path: Path) -> WorkspaceStatus:
    """The recorded status (empty when the file does not exist yet), salvaged field by field
    like the operator's: a part that does not validate is left out when it only describes
    (a history entry), and stops the command when a reconcile needs it (the applied revision,
    a block), so a damaged file never makes every block run again."""
    if not path.exists():
        return WorkspaceStatus()
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StatusUnreadableError(
            f"{path}: not a cratekeeper state file ({exc.__class__.__name__}); repair it, or "
            "move it away to start over (every block runs again)"
        ) from None
    salvaged = salvage_status(raw)
    if not salvaged.readable:
        raise StatusUnreadableError(
            f"{path}: {', '.join(salvaged.unreadable)} do not validate (a hand edit or a newer "
            "cratekeeper wrote them); repair them, or move the file away to start over "
            "(every block runs again)"
        )
    if salvaged.dropped:
        print(
            f"warning: {path}: {', '.join(salvaged.dropped)} do not validate and are left out",
            file=sys.stderr,
        )
    return salvaged.status


def save_state(path: Path, state: WorkspaceStatus) -> None:
    """Write atomically: a crash mid-write never leaves half a state file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state.dump(), indent=2) + "\n")
    tmp.replace(path)


@contextlib.contextmanager
def exclusive(state_path: Path) -> Iterator[None]:
    """One reconcile per state file at a time: a second one fails instead of running twice."""
    lock = state_path.with_name(state_path.name + ".lock")
    if state_path.is_dir():
        raise CratekeeperError(f"--state {state_path} is a directory; give a file path")
    try:
        handle = lock.open("a")
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
        yield
