"""The operator's Workspaces as people read them: ``get`` rows, ``history`` rows, ages (pure).

The columns are the CRD's printer columns (:data:`controller.api.crd.PRINTER_COLUMNS`), so
``cratekeeper get workspaces`` and ``kubectl get workspaces`` say the same things.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from controller.api.status import HistoryEntry, WorkspaceStatus
from controller.report import table

if TYPE_CHECKING:
    from controller.kube.values import Workspace

COLUMNS = ["NAME", "READY", "SUSPENDED", "REVISION", "BLOCKS", "AGE", "MESSAGE"]
WIDE = ["SOURCE", "REF", "LAST RUN"]


def human_age(then: datetime | None, now: datetime) -> str:
    """kubectl's style: ``45s``, ``12m``, ``5h``, ``3d``."""
    if then is None:
        return "-"
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def status_of(workspace: Workspace) -> WorkspaceStatus:
    """What validates of a stored status (an unreadable part is shown as absent)."""
    from controller.api.status import salvage_status

    return salvage_status(dict(workspace.status)).status


def workspace_row(
    workspace: Workspace, now: datetime, *, wide: bool = False, namespaced: bool = False
) -> list[str]:
    """One ``get workspaces`` row (``namespaced``: the NAMESPACE column first)."""
    status = status_of(workspace)
    ready = status.condition("Ready")
    suspended = bool(workspace.spec.get("suspend"))
    row = [
        workspace.name,
        ready.status if ready else "Unknown",
        "True" if suspended else "False",
        status.last_applied_short_revision or "-",
        status.blocks_summary,
        human_age(workspace.created, now),
        (ready.message if ready else "") or "-",
    ]
    if wide:
        source = workspace.spec.get("source")
        url = str(source.get("url", "-")) if isinstance(source, Mapping) else "-"
        last = status.history[0].finished if status.history else None
        row += [url, status.last_applied_ref or "-", human_age(last, now)]
    return [workspace.namespace, *row] if namespaced else row


def workspaces_table(
    workspaces: Sequence[Workspace], *, wide: bool = False, namespaced: bool = False
) -> str:
    """The ``get workspaces`` table."""
    now = datetime.now(UTC)
    header = [*(["NAMESPACE"] if namespaced else []), *COLUMNS, *(WIDE if wide else [])]
    rows = [workspace_row(w, now, wide=wide, namespaced=namespaced) for w in workspaces]
    return table([header, *rows])


def workspace_document(workspace: Workspace) -> dict[str, Any]:
    """A Workspace as ``-o json|yaml`` shows it: metadata's name and namespace, spec, status."""
    return {
        "apiVersion": "cratekeeper.dev/v1alpha1",
        "kind": "Workspace",
        "metadata": {
            "name": workspace.name,
            "namespace": workspace.namespace,
            "generation": workspace.generation,
            "annotations": dict(workspace.annotations),
            "creationTimestamp": workspace.created.isoformat() if workspace.created else None,
        },
        "spec": dict(workspace.spec),
        "status": dict(workspace.status),
    }


def _changes(entry: HistoryEntry) -> str:
    return ", ".join(str(c) for c in entry.changes) or "-"


def history_table(history: Sequence[HistoryEntry]) -> str:
    """``history NAME``: newest first, one row per (revision, result)."""
    if not history:
        return "no history yet: nothing was attempted"
    rows = [["REVISION", "RESULT", "ATTEMPTS", "CHANGES", "AUTHOR", "SUBJECT", "FINISHED"]]
    for entry in history:
        result = entry.result + (" (reapply)" if entry.reapply else "")
        rows.append(
            [
                entry.revision[:12],
                result,
                str(entry.attempts),
                _changes(entry),
                entry.author or "-",
                entry.subject or "-",
                entry.finished.isoformat(timespec="seconds"),
            ]
        )
    return table(rows)


def dumps(doc: object, output: str) -> str:
    """``doc`` as JSON or YAML (block style, keys in their order)."""
    if output == "yaml":
        import yaml

        return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).rstrip()
    return json.dumps(doc, indent=2, default=str)
