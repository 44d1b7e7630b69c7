"""What a recorded reconcile tells people (pure): the commit status of its revision and the
alerts it raises, from the outcome and the history entry it recorded."""

from __future__ import annotations

from controller.api.status import HistoryEntry
from controller.notify.alerts import Notice
from controller.notify.forges import State
from controller.status import Failure, ReconcileOutcome


def commit_state(outcome: ReconcileOutcome) -> State | None:
    """The commit status a finished reconcile sets (None: nothing was attempted)."""
    if outcome.up_to_date:
        return None
    return "success" if outcome.succeeded else "failure"


def describe(entry: HistoryEntry | None, failed: Failure | None) -> str:
    """The status description: the changed blocks, and why it failed."""
    changes = ", ".join(str(c) for c in entry.changes) if entry else ""
    changes = changes or "no block changed"
    if failed is None:
        return f"applied: {changes}"
    return f"not applied ({failed.reason}): {changes}"


def pending_description(block: str, pin: str) -> str:
    """The status description while the first run of a revision is in flight."""
    return f"applying: {block} {pin.rsplit(':', 1)[-1]}"


def notices(
    namespace: str,
    name: str,
    outcome: ReconcileOutcome,
    entry: HistoryEntry | None,
    failed: Failure | None,
) -> list[Notice]:
    """The alerts a recorded outcome raises: RunSucceeded (and RollbackApplied when a block
    went back to an older pin), RunFailed for a failure a retry may fix, Stalled for one only
    a new commit can fix. Repeats (retries) are the rate limiter's business."""
    if outcome.up_to_date:
        return []
    common = {
        "namespace": namespace,
        "name": name,
        "revision": outcome.revision,
        "subject": outcome.subject,
        "changes": [str(c) for c in entry.changes] if entry else [],
    }
    if failed is None:
        if entry is None:
            return []  # nothing ran, nothing was removed
        found = [Notice(kind="RunSucceeded", message=f"applied {outcome.revision[:12]}", **common)]
        if any(c.rollback for c in entry.changes):
            rolled = ", ".join(c.block for c in entry.changes if c.rollback)
            found.append(
                Notice(kind="RollbackApplied", message=f"back to an older pin: {rolled}", **common)
            )
        return found
    if failed.stalled:
        message = f"{failed.message}; retrying cannot help: {failed.hint}"
        return [Notice(kind="Stalled", reason=failed.reason, message=message, **common)]
    return [Notice(kind="RunFailed", reason=failed.reason, message=failed.message, **common)]
