"""Choosing objects: label and field selectors, the list/watch Selection, printer JSONPath."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

import kmock

from controller.sandbox.kube.wire import api_error

_LABEL_REQ = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9_./-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[A-Za-z0-9_.-]*)|\s+(?P<set>in|notin)\s*\((?P<values>[^)]*)\))?"
    r"\s*$"
)


def _split_selector(selector: str) -> list[str]:
    """Split on commas outside ``in (a, b)`` parentheses."""
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [part for part in [*parts, current] if part.strip()]


def label_matcher(selector: str) -> Callable[[Mapping[str, str]], bool]:
    """Compile a label selector (``a=b,c!=d,e in (f,g),!h,i``) to a predicate on labels."""
    requirements: list[tuple[str, str, set[str]]] = []  # (operator, key, values)
    for part in _split_selector(selector):
        match = _LABEL_REQ.match(part)
        if match is None:
            raise api_error(400, "BadRequest", f"unable to parse requirement: {part!r}")
        values = {v.strip() for v in (match["values"] or "").split(",") if v.strip()}
        if match["value"] is not None:
            values = {match["value"]}
        operator = "!" if match["neg"] else match["op"] or match["set"] or "exists"
        requirements.append((operator, match["key"], values))

    def matches(labels: Mapping[str, str]) -> bool:
        for operator, key, values in requirements:
            value = labels.get(key)
            ok = {
                "!": key not in labels,
                "exists": key in labels,
                "=": value in values,
                "==": value in values,
                "in": value in values,
                "!=": value not in values,
                "notin": value not in values,
            }[operator]
            if not ok:
                return False
        return True

    return matches


def field_matcher(selector: str) -> Callable[[Mapping[str, Any]], bool]:
    """Compile a field selector (``metadata.name=x,status.phase!=y``) to a predicate."""
    checks: list[Callable[[Mapping[str, Any]], bool]] = []
    for part in _split_selector(selector):
        negate = "!=" in part
        path, _, value = part.partition("!=" if negate else "==" if "==" in part else "=")
        keys = path.strip().split(".")

        def check(
            obj: Mapping[str, Any],
            keys: list[str] = keys,
            value: str = value.strip(),
            negate: bool = negate,
        ) -> bool:
            found: Any = obj
            for key in keys:
                found = found.get(key) if isinstance(found, Mapping) else None
            return (str(found if found is not None else "") == value) != negate

        checks.append(check)
    return lambda obj: all(check(obj) for check in checks)


@dataclasses.dataclass(frozen=True)
class Selection:
    """Which objects a list/watch request asks for."""

    namespace: str | None = None
    name: str | None = None
    labels: Callable[[Mapping[str, str]], bool] = lambda _: True
    fields: Callable[[Mapping[str, Any]], bool] = lambda _: True

    @classmethod
    def of(cls, request: kmock.Request) -> Selection:
        """The selection of a request: its URL namespace/name and selector parameters."""
        return cls(
            namespace=request.namespace,
            name=request.name,
            labels=label_matcher(request.params.get("labelSelector", "")),
            fields=field_matcher(request.params.get("fieldSelector", "")),
        )

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Whether ``obj`` is one of the selected objects."""
        meta = obj.get("metadata", {})
        return (
            (self.namespace is None or meta.get("namespace") == self.namespace)
            and (self.name is None or meta.get("name") == self.name)
            and self.labels(meta.get("labels") or {})
            and self.fields(obj)
        )


_JSONPATH_TOKEN = re.compile(
    r"\.(?P<key>[A-Za-z0-9_-]+)|\[(?P<index>-?\d+|\*)\]|\['(?P<qkey>[^']+)'\]"
    r'|\[\?\(@\.(?P<fpath>[A-Za-z0-9_.-]+)\s*==\s*["\'](?P<fvalue>[^"\']*)["\']\)\]'
)


def jsonpath(obj: Any, path: str) -> list[Any]:
    """Evaluate the JSONPath subset used by printer columns: ``.a.b``, ``[0]``, ``[*]``,
    ``['a.b']`` and ``[?(@.type=="Ready")]``."""
    values = [obj]
    for token in _JSONPATH_TOKEN.finditer(path.strip().lstrip("$")):
        found: list[Any] = []
        for value in values:
            if token["key"] or token["qkey"]:
                if isinstance(value, Mapping) and (token["key"] or token["qkey"]) in value:
                    found.append(value[token["key"] or token["qkey"]])
            elif token["index"] and isinstance(value, list):
                if token["index"] == "*":
                    found.extend(value)
                elif -len(value) <= int(token["index"]) < len(value):
                    found.append(value[int(token["index"])])
            elif token["fpath"] and isinstance(value, list):
                for item in value:
                    probe = jsonpath(item, "." + token["fpath"])
                    if probe and str(probe[0]) == token["fvalue"]:
                        found.append(item)
        values = found
    return values
