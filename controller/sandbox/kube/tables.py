"""``kubectl get`` output: objects rendered as a ``meta.k8s.io/v1`` Table."""

from __future__ import annotations

import datetime
from typing import Any

import kmock

from controller.sandbox.kube.resources import NAMESPACES, Body
from controller.sandbox.kube.selectors import jsonpath


def human_age(timestamp: str | None, now: datetime.datetime) -> str:
    """``kubectl``'s short age format: 42s, 5m, 3h, 2d."""
    if not timestamp:
        return "<unknown>"
    then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size, limit in (("s", 1, 120), ("m", 60, 3600), ("h", 3600, 48 * 3600)):
        if seconds < limit:
            return f"{seconds // size}{unit}"
    return f"{seconds // 86400}d"


def wants_table(request: kmock.Request) -> bool:
    """Whether the client asked for a Table (kubectl does, other clients do not)."""
    return "as=Table" in request.headers.get("Accept", "")


def render_table(
    res: kmock.resource, items: list[Body], rv: str, printer_columns: list[Body] | None
) -> Body:
    """A Table of ``items``: Name, the CRD's printer columns (if any), and Age."""
    now = datetime.datetime.now(datetime.UTC)
    columns = [
        {
            "name": "Name",
            "type": "string",
            "format": "name",
            "priority": 0,
            "description": "Name must be unique within a namespace.",
        }
    ]
    custom = printer_columns
    if custom is None and res == NAMESPACES:
        custom = [{"name": "Status", "type": "string", "jsonPath": ".status.phase"}]
    custom = list(custom or [])
    if not any(col["name"].lower() == "age" for col in custom):
        custom.append({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})
    for col in custom:
        columns.append(
            {
                "name": col["name"],
                "type": "string",
                "format": "",
                "priority": col.get("priority", 0),
                "description": col.get("description", ""),
            }
        )

    def cell(obj: Body, col: Body) -> Any:
        values = jsonpath(obj, col["jsonPath"])
        if col.get("type") == "date":
            return human_age(values[0] if values else None, now)
        return ", ".join(str(v) for v in values) if values else "<none>"

    return {
        "apiVersion": "meta.k8s.io/v1",
        "kind": "Table",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": columns,
        "rows": [
            {
                "cells": [obj["metadata"]["name"], *(cell(obj, col) for col in custom)],
                "object": {
                    "apiVersion": "meta.k8s.io/v1",
                    "kind": "PartialObjectMetadata",
                    "metadata": obj["metadata"],
                },
            }
            for obj in items
        ],
    }
