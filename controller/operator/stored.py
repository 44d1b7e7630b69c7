"""The Workspace's ``.status`` as stored: reading it, diffing it, conditions after a failure.

Pure: the worker decides when to read and write; this module only says what.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from controller.api.status import Salvaged, WorkspaceStatus, salvage_status
from controller.status import Failure, failed_conditions, set_condition


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The RFC 7386 patch turning status ``old`` into ``new`` (top-level keys; empty: equal).

    Keys ``new`` lacks are deleted, so anything not in our schema (Kopf's own fields, fields
    of older versions) disappears from ``.status``.
    """
    patch: dict[str, Any] = {k: v for k, v in new.items() if old.get(k) != v}
    patch.update({k: None for k in old if k not in new})
    return patch


def resource_version(body: Mapping[str, Any]) -> int | None:
    """The object's resourceVersion as a number; None when it has none (or not a number).

    The API server hands out etcd revisions, so a larger one is a later write.
    """
    value = (body.get("metadata") or {}).get("resourceVersion")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def stored_status(
    body: Mapping[str, Any], written: Mapping[str, Any] | None, written_version: int | None
) -> dict[str, Any]:
    """The status as the API holds it: what we wrote last (``written``), until the watch brings
    a body newer than that write (a person may have edited the status, ``kubectl edit
    --subresource=status``). When either version is unknown, what we wrote wins."""
    watched = dict(body.get("status") or {})
    if written is None:
        return watched
    seen = resource_version(body)
    if seen is not None and written_version is not None and seen > written_version:
        return watched
    return dict(written)


def read_status(raw: Any) -> Salvaged:
    """The stored status, salvaged field by field (DESIGN §3): never empty because one part
    of it is invalid. When ``unreadable`` is not empty nothing may run: write
    :func:`unreadable_patch` and wait for a person."""
    return salvage_status(raw)


def status_of(raw: Any) -> WorkspaceStatus:
    """What validates of the stored status (see :func:`read_status` for what did not)."""
    return salvage_status(raw).status


def unreadable_message(salvaged: Salvaged) -> str:
    """Ready's message when the stored status cannot be reconciled on: what to fix."""
    parts = ", ".join(salvaged.unreadable)
    return (
        f"the stored status does not validate ({parts}): a hand edit or a newer cratekeeper "
        "wrote it; nothing runs until it is fixed: correct those fields with `kubectl edit "
        "--subresource=status`, or delete .status to start over (every block runs again)"
    )


def unreadable_patch(
    raw: Mapping[str, Any], salvaged: Salvaged, generation: int | None
) -> dict[str, Any]:
    """The patch that says so (Ready=False and Stalled=True, reason ``StatusUnreadable``),
    touching nothing but the conditions: the unreadable fields stay as stored, for a person to
    repair, and the history is never rewritten from a partial read."""
    problem = Failure(
        "StatusUnreadable",
        unreadable_message(salvaged),
        stalled=True,
        hint="repair or delete the stored status",
    )
    now = datetime.now(UTC)
    conds = failed_conditions(salvaged.status.conditions, problem, now, generation)
    conds = set_condition(conds, "Reconciling", "False", "Idle", "", now, generation)
    new = salvaged.status.model_copy(update={"conditions": conds})
    dumped = new.dump()
    # Unchanged conditions keep their transition times: nothing to write on the next tick.
    return {k: v for k in ("conditions",) if (v := dumped.get(k)) != raw.get(k)}


def failed_status(
    status: WorkspaceStatus, reason: str, message: str, generation: int | None, stalled: bool
) -> WorkspaceStatus:
    """Conditions after a failure that happened before any revision could be attempted
    (a fetch, a Secret, the spec); revisions, blocks and history stay as they are."""
    now = datetime.now(UTC)
    problem = Failure(reason, message, stalled, hint="fix the Workspace's spec")
    conds = failed_conditions(status.conditions, problem, now, generation)
    conds = set_condition(conds, "Reconciling", "False", "Idle", "", now, generation)
    return status.model_copy(update={"conditions": conds, "observed_generation": generation})
