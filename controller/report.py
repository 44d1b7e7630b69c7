"""Plans, promotion matrices and statuses rendered for people (tables) and machines (JSON)
(pure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from controller.api.status import WorkspaceStatus
from controller.plan import Plan
from controller.workspace import Workspace


def plan_document(name: str, base: str, head: str, result: Plan) -> dict[str, Any]:
    """The JSON shape of ``cratekeeper plan --output json`` (stable, for PR checks; with a
    workflow, ``unscheduled`` lists changed blocks it does not run)."""
    doc: dict[str, Any] = {
        "workspace": name,
        "base": base,
        "head": head,
        "runs": [
            {
                "block": r.block,
                "action": r.action,
                "from": r.from_,
                "to": r.to,
                "reason": r.reason,
                "rollback": r.rollback,
            }
            for r in result.runs
        ],
        "removed": [a.name for a in result.removed],
    }
    if result.unscheduled:
        doc["unscheduled"] = list(result.unscheduled)
    return doc


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def format_plan(doc: dict[str, Any]) -> str:
    """A readable table of a plan document."""
    lines = [f"workspace {doc['workspace']}: {doc['base'][:7]} -> {doc['head'][:7]}"]
    if not doc["runs"] and not doc["removed"]:
        lines.append("nothing to run: every block is up to date")
    if doc["runs"]:
        rows = [["BLOCK", "ACTION", "FROM", "TO", "REASON", "ROLLBACK"]]
        rows += [
            [
                r["block"],
                r["action"],
                r["from"] or "-",
                r["to"],
                r["reason"],
                "yes" if r["rollback"] else "no",
            ]
            for r in doc["runs"]
        ]
        lines.append(table(rows))
    if doc["removed"]:
        lines.append("removed: " + ", ".join(doc["removed"]))
    if doc.get("unscheduled"):
        lines.append("changed, not in the workflow: " + ", ".join(doc["unscheduled"]))
    return "\n".join(lines)


def promotion_matrix(workspaces: Sequence[Workspace]) -> dict[str, dict[str, str | None]]:
    """For each registry block (by registry path), the pinned version in each workspace
    (None: absent). Local and inline blocks are promoted with their Git commit, not a pin."""
    matrix: dict[str, dict[str, str | None]] = {}
    for ws in workspaces:
        for block in ws.blocks:
            if block.ref:
                matrix.setdefault(block.ref.name, {})
    for name, row in matrix.items():
        for ws in workspaces:
            pins = [b.ref.tag for b in ws.blocks if b.ref and b.ref.name == name]
            row[ws.name] = ", ".join(pins) if pins else None
    return matrix


def format_promotions(matrix: dict[str, dict[str, str | None]], names: Sequence[str]) -> str:
    """The matrix as a table, with a last column saying whether every workspace agrees."""
    rows = [["BLOCK", *names, "IN SYNC"]]
    for block, row in matrix.items():
        versions = [row.get(n) for n in names]
        in_sync = "yes" if len(set(versions)) == 1 else "no"
        rows.append([block, *(v or "-" for v in versions), in_sync])
    return table(rows)


def _short(ref: str | None) -> str:
    return ref.rsplit(":", 1)[-1] if ref else "(new)"


def format_status(status: WorkspaceStatus, history: int = 5) -> str:
    """A recorded status as `kubectl get` and `describe` would show it: the summary, every
    block, and the newest ``history`` entries."""
    ready = status.condition("Ready")
    lines = [
        table(
            [
                ["READY", "REVISION", "BLOCKS", "STATUS"],
                [
                    ready.status if ready else "Unknown",
                    status.last_applied_short_revision or "-",
                    status.blocks_summary,
                    (ready.message if ready else "") or "-",
                ],
            ]
        ),
        "",
    ]
    if status.blocks:
        rows = [["BLOCK", "VERSION", "PHASE", "DIGEST", "LAST RUN"]]
        rows += [
            [
                b.name,
                b.version,
                b.phase,
                (b.digest or "-")[:19],
                b.last_run.isoformat(timespec="seconds") if b.last_run else "-",
            ]
            for b in status.blocks
        ]
        lines += [table(rows), ""]
    if status.history:
        rows = [["REVISION", "RESULT", "CHANGES", "SUBJECT"]]
        for entry in status.history[:history]:
            changes = ", ".join(
                f"{c.block} {_short(c.from_)} -> {_short(c.to)}"
                + (" (rollback)" if c.rollback else "")
                for c in entry.changes
            )
            result = entry.result + (f" ({entry.attempts} attempts)" if entry.attempts > 1 else "")
            rows.append([entry.revision[:12], result, changes or "-", entry.subject])
        lines.append(table(rows))
    return "\n".join(lines).rstrip()
