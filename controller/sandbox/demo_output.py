"""What the demo prints about the management cluster: a history entry in one line, and the
Workspace list as ``kubectl get workspaces`` shows it (the API server renders the Table).
"""

from __future__ import annotations

from typing import Any

import requests

from controller.sandbox.kube import KubeEmulator

NAMESPACE = "cratekeeper"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def describe(entry: dict[str, Any]) -> str:
    """A history entry in one line: result, changes, subject."""
    changes = ", ".join(
        f"{c['block']} {(c.get('from') or '(new)').rsplit(':', 1)[-1]} → "
        f"{c['to'].rsplit(':', 1)[-1]}" + (" (rollback)" if c.get("rollback") else "")
        for c in entry.get("changes", [])
    )
    return f"{entry['result']}: {changes} — {entry.get('subject', '')!r}"


def _cell(value: object) -> str:
    """A table cell as kubectl prints it (booleans as ``true``/``false``, Go's ``%v``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def workspaces_table(api: KubeEmulator) -> str:
    """The Workspace list as kubectl prints it (the server renders the Table)."""
    response = requests.get(
        f"{api.url}/apis/cratekeeper.dev/v1alpha1/namespaces/{NAMESPACE}/workspaces",
        headers={"Accept": TABLE},
        timeout=10,
    )
    response.raise_for_status()
    table = response.json()
    # kubectl leaves out columns of priority > 0 unless asked for `-o wide`.
    shown = [i for i, c in enumerate(table["columnDefinitions"]) if not c.get("priority")]
    names = [table["columnDefinitions"][i]["name"].upper() for i in shown]
    rows = [[_cell(row["cells"][i]) for i in shown] for row in table.get("rows", [])]
    widths = [max(len(r[i]) for r in [names, *rows]) for i in range(len(names))]
    return "\n".join(
        "   ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in [names, *rows]
    )
