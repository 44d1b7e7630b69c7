"""The Kubernetes Events the operator posts on a Workspace: their types and their words.

Events are posted only with a status write that changed something (the writer,
:mod:`controller.operator.writer`, decides); this module only says what they say.
"""

from __future__ import annotations

from typing import Literal, Protocol

from controller.api.status import HistoryEntry
from controller.runners.base import ActionRequest
from controller.source import Revision
from controller.status import Failure, ReconcileOutcome

EventType = Literal["Normal", "Warning"]
Event = tuple[EventType, str, str]
"""``(type, reason, message)``."""


class Step(Protocol):
    """A block's action about to run: a planned :class:`~controller.plan.Run` or the runner's
    :class:`~controller.runners.base.ActionRequest`."""

    @property
    def block(self) -> str: ...

    @property
    def action(self) -> str: ...


class EventSink(Protocol):
    """Posts a Kubernetes Event on the Workspace (Kopf's ``kopf.event`` in production)."""

    def __call__(self, type: EventType, reason: str, message: str) -> None: ...


def new_revision(revision: Revision) -> Event:
    return (
        "Normal",
        "NewRevision",
        f"new revision {revision.sha[:12]} {revision.subject!r} by {revision.author}",
    )


def run_queued(sha: str, step: Step) -> Event:
    return (
        "Normal",
        "RunQueued",
        f"revision {sha[:12]}: {step.block} {step.action} waits for a run slot",
    )


def run_started(sha: str, request: ActionRequest) -> Event:
    return (
        "Normal",
        "RunStarted",
        f"applying revision {sha[:12]}: {request.block} {request.action} ({request.pin})",
    )


def outcome(result: ReconcileOutcome, entry: HistoryEntry | None, failed: Failure | None) -> Event:
    """The event of a finished reconcile; ``entry`` is the history entry it recorded, ``failed``
    why it did not apply (None: it did)."""
    changes = ", ".join(str(c) for c in entry.changes) if entry else ""
    short = result.revision[:12]
    if failed is None:
        detail = f": {changes}" if changes else " (no block changed)"
        return ("Normal", "RunSucceeded", f"applied {short}{detail}")
    kind = "ValidationFailed" if failed.stalled else "RunFailed"
    detail = f" ({changes})" if changes else ""
    return ("Warning", kind, f"{short} not applied{detail}: {failed.reason}: {failed.message}")
