"""The Workspace's ``.status`` as stored: reading it, diffing it, conditions after a failure.

Pure: the worker decides when to read and write; this module only says what.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from controller.api.status import WorkspaceStatus
from controller.status import set_condition


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


def status_of(raw: Any) -> WorkspaceStatus:
    """The stored status as our model; empty when it is not ours (or hand-edited past repair)."""
    try:
        return WorkspaceStatus.model_validate(raw or {})
    except ValidationError:
        return WorkspaceStatus()  # start over rather than crash


def failed_status(
    status: WorkspaceStatus, reason: str, message: str, generation: int | None, stalled: bool
) -> WorkspaceStatus:
    """Conditions after a failure that happened before any revision could be attempted
    (a fetch, a Secret, the spec); revisions, blocks and history stay as they are."""
    now = datetime.now(UTC)
    conds = set_condition(status.conditions, "Ready", "False", reason, message, now, generation)
    conds = set_condition(
        conds,
        "Stalled",
        "True" if stalled else "False",
        reason,
        "fix the Workspace's spec" if stalled else "",
        now,
        generation,
    )
    conds = set_condition(conds, "Reconciling", "False", "Idle", "", now, generation)
    return status.model_copy(update={"conditions": conds, "observed_generation": generation})
