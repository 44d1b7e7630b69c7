"""The state file of ``cratekeeper reconcile``: the Workspace status, kept in a JSON file."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from controller.api.status import WorkspaceStatus, salvage_status
from controller.errors import StatusUnreadableError


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


def save_state(path: Path, state: WorkspaceStatus) -> bytes:
    """Write ``state`` atomically (a crash mid-write never leaves half a state file), and only
    when that changes the file: a reconcile with nothing to do leaves it untouched. The bytes
    the file holds now."""
    data = (json.dumps(state.dump(), indent=2) + "\n").encode()
    with contextlib.suppress(OSError):  # no file yet (or unreadable): write it
        if path.read_bytes() == data:
            return data
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return data
