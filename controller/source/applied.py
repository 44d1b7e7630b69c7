"""A ref as the status records it, and the commit its next commit must descend from.

Small and light on purpose: ``cratekeeper reconcile`` decides "nothing to do" with these and
the source alone, before anything heavier (the pipeline, registry, runners) is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.api.status import WorkspaceStatus
    from controller.source.model import GitRef


def ref_label(ref: GitRef) -> str:
    """``branch:main``, ``tag:v1`` or ``commit:<sha>``: the ref as ``lastAppliedRef`` keeps it.

    The last applied commit guards against rewritten history only while the ref is the same:
    a fetch of another branch passes ``previous=None`` (see :func:`previous_revision`).
    """
    return f"{ref.kind.value}:{ref.name}"


def previous_revision(status: WorkspaceStatus, ref: GitRef) -> str | None:
    """The commit ``ref``'s next commit must descend from: the last applied one while the ref
    is the one it was applied from; ``None`` after a switch (another branch is not a
    force-push) or when that ref is unknown (the status predates ``lastAppliedRef``: refusing
    then would keep a Workspace that already switched refs stuck; the next success or no-op
    records the ref)."""
    if status.last_applied_ref != ref_label(ref):
        return None
    return status.last_applied_revision
