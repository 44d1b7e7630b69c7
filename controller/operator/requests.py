"""What a person asks of a Workspace, answered in its status (pure): suspend and resume, the
requested-at annotation (``lastHandledReconcileAt``, Flux's convention) and the re-apply request,
and how often a body asks to be looked at (``spec.source.interval``).

Each function takes the stored status and returns the next one with the events it is worth;
the worker decides when to write them (DESIGN §3: suspend is visible, requests acknowledged).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from controller.api.spec import REAPPLY_AT, REQUESTED_AT, WorkspaceSpec, parse_duration
from controller.api.status import WorkspaceStatus
from controller.operator.events import Event
from controller.status import set_condition

SUSPENDED = "Suspended"
RESUMED = "Resumed"
SUSPENDED_NOTE = "suspended (spec.suspend): nothing is applied until it is resumed"


def annotation(body: Mapping[str, object], key: str) -> str | None:
    """An annotation of a Workspace body (None when absent)."""
    meta = body.get("metadata")
    notes = meta.get("annotations") if isinstance(meta, Mapping) else None
    value = notes.get(key) if isinstance(notes, Mapping) else None
    return str(value) if value is not None else None


def requested_at(body: Mapping[str, object]) -> str | None:
    """The ``cratekeeper.dev/requested-at`` annotation."""
    return annotation(body, REQUESTED_AT)


def reapply_requested(status: WorkspaceStatus, body: Mapping[str, object]) -> str | None:
    """The ``cratekeeper.dev/reapply-at`` value not yet answered, if any."""
    value = annotation(body, REAPPLY_AT)
    return value if value is not None and value != status.last_handled_reapply_at else None


def is_suspended(status: WorkspaceStatus) -> bool:
    condition = status.condition(SUSPENDED)
    return condition is not None and condition.status == "True"


def suspend(status: WorkspaceStatus, generation: int | None) -> tuple[WorkspaceStatus, list[Event]]:
    """``Suspended=True`` and Ready's message say so; an event when it was not suspended yet."""
    now = datetime.now(UTC)
    conds = set_condition(
        status.conditions, SUSPENDED, "True", SUSPENDED, SUSPENDED_NOTE, now, generation
    )
    ready = status.condition("Ready")
    if ready is not None and not ready.message.startswith(SUSPENDED_NOTE):
        message = f"{SUSPENDED_NOTE}; last: {ready.message}" if ready.message else SUSPENDED_NOTE
        noted = ready.model_copy(update={"message": message})
        conds = [noted if c.type == "Ready" else c for c in conds]  # in place: order is stable
    elif ready is None:
        conds = set_condition(conds, "Ready", "Unknown", SUSPENDED, SUSPENDED_NOTE, now, generation)
    new = status.model_copy(update={"conditions": conds, "observed_generation": generation})
    news: list[Event] = [] if is_suspended(status) else [("Normal", SUSPENDED, SUSPENDED_NOTE)]
    return new, news


def resume(status: WorkspaceStatus, generation: int | None) -> tuple[WorkspaceStatus, list[Event]]:
    """``Suspended=False`` (reason ``Resumed``) and an event; Ready is recomputed by the
    reconcile that follows at once."""
    conds = set_condition(
        status.conditions,
        SUSPENDED,
        "False",
        RESUMED,
        "resumed: reconciling again",
        datetime.now(UTC),
        generation,
    )
    new = status.model_copy(update={"conditions": conds})
    return new, [("Normal", RESUMED, "resumed (spec.suspend is false): reconciling again")]


def acknowledge(
    status: WorkspaceStatus, requested: str | None
) -> tuple[WorkspaceStatus, list[Event]]:
    """``lastHandledReconcileAt`` set to ``requested`` with an event naming the outcome, even
    when nothing changed; the status as it is when that request was answered already."""
    if requested is None or status.last_handled_reconcile_at == requested:
        return status, []
    ready = status.condition("Ready")
    outcome = f"{ready.reason}: {ready.message}" if ready else "no result yet"
    new = status.model_copy(update={"last_handled_reconcile_at": requested})
    return new, [("Normal", "ReconcileHandled", f"reconcile requested at {requested}: {outcome}")]


def source_interval(body: Mapping[str, Any]) -> float | None:
    """``spec.source.interval`` in seconds; None when the spec does not say (or is bad)."""
    try:
        spec = WorkspaceSpec.model_validate(body.get("spec") or {})
        return parse_duration(spec.source.interval)
    except ValueError:  # pydantic's ValidationError included
        return None
