"""Parsing a ``.poly`` file into its model with every problem located by file and line.

All problems of a file are collected, not only the first. A key the model does not know is
looked up in :data:`controller.workspace.keys.RULES`: Polycrate keys that change nothing are
warnings (never silently dropped), keys that would change where or what runs and that
cratekeeper cannot honour are errors that say why; any other key is a warning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from controller.errors import Problem
from controller.workspace.keys import RULES
from controller.yamldoc import YamlDoc, load_yaml

M = TypeVar("M", bound=BaseModel)
Check = Callable[[YamlDoc], list[Problem]]
"""A check of the raw document (a mapping), beyond what the model validates."""


def describe(value: object) -> str:
    """A short repr of ``value`` for a message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def dotted(loc: Sequence[str | int]) -> str:
    """``blocks[0].from`` for ``("blocks", 0, "from")``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "document"


def _entry_name(value: object, path: Sequence[str | int]) -> str | None:
    for part in path:
        if isinstance(value, dict) and isinstance(part, str):
            value = value.get(part)
        elif isinstance(value, list) and isinstance(part, int) and part < len(value):
            value = value[part]
        else:
            return None
    name = value.get("name") if isinstance(value, dict) else None
    return name if isinstance(name, str) else None


def _message(err: Any, doc: YamlDoc, loc: list[str | int], quote: bool) -> str:
    where = dotted(loc)
    kind = err["type"]
    if kind == "missing":
        parent = loc[:-1]
        name = _entry_name(doc.value, parent)
        label = dotted(parent) + (f" ({name!r})" if name else "")
        return f"{label}: required key {loc[-1]!r} is missing"
    if kind == "string_pattern_mismatch":
        what = describe(err["input"]) if quote else "the value"
        rule = (
            "letters, digits, '.', '_', '-' and '/' between segments"
            if "/(?:" in str(err.get("ctx", {}).get("pattern", ""))
            else "a letter first, then letters, digits and single '-', '_' or '/' separators "
            "(Polycrate's rule)"
        )
        return f"{where}: {what} is not a valid name; use {rule}"
    if not quote:
        return f"{where}: {err['msg'].lower()} (the value is not shown: it may be secret)"
    if kind == "value_error":
        return f"{where}: {err['ctx']['error']}"
    if kind == "string_type" and isinstance(err["input"], int | float):
        return (
            f"{where}: expected a string, got the number {err['input']!r}; "
            f'quote it: "{err["input"]}"'
        )
    return f"{where}: {err['msg'].lower()}, got {describe(err['input'])}"


def problems_from(exc: ValidationError, doc: YamlDoc, *, quote: bool = True) -> list[Problem]:
    """Located problems of a validation error; ``quote=False`` never repeats a value."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = [("from" if p == "from_" else p) for p in err["loc"]]
        problems.append(Problem(doc.file, doc.line_of(loc), _message(err, doc, loc, quote)))
    return problems


def _field_model(annotation: Any) -> type[BaseModel] | None:
    """The model of a field typed ``Model``, ``list[Model]`` or ``Model | None``."""
    candidates = [annotation, *getattr(annotation, "__args__", ())]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def unknown_keys(
    doc: YamlDoc, model: type[BaseModel], value: object, path: tuple[str | int, ...]
) -> list[Problem]:
    """Problems for keys the model does not know, recursing into nested models."""
    if not isinstance(value, dict):
        return []
    known = {f.alias or n: f for n, f in model.model_fields.items()}
    rules = RULES.get(model.__name__, {})
    problems = []
    for key, sub in value.items():
        field = known.get(key)
        line = doc.line_of((*path, key))
        if field is None:
            rule = rules.get(key)
            if rule is None:
                message = (
                    f"{dotted((*path, key))}: unknown key is ignored by cratekeeper "
                    f"(known keys: {', '.join(sorted(known))})"
                )
                problems.append(Problem(doc.file, line, message, severity="warning"))
            else:
                severity, why = rule
                problems.append(
                    Problem(doc.file, line, f"{dotted((*path, key))}: {why}", severity=severity)
                )
            continue
        inner = _field_model(field.annotation)
        if inner is None:
            continue
        if isinstance(sub, list):
            for i, entry in enumerate(sub):
                problems += unknown_keys(doc, inner, entry, (*path, key, i))
        elif getattr(field.annotation, "__origin__", None) is not list:
            problems += unknown_keys(doc, inner, sub, (*path, key))
    return problems


def duplicates(doc: YamlDoc, key: str, what: str) -> list[Problem]:
    """Entries of the list ``key`` that reuse a ``name`` (checked on the raw document)."""
    items = doc.value.get(key) if isinstance(doc.value, dict) else None
    if not isinstance(items, list):
        return []
    seen: set[str] = set()
    problems = []
    for i, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            problems.append(
                Problem(
                    doc.file,
                    doc.line_of((key, i, "name")),
                    f"{key}[{i}].name: {what} {name!r} is defined twice; names must be unique",
                )
            )
        seen.add(name)
    return problems


def parse_model(
    text: str,
    file: str,
    model: type[M],
    unique: Sequence[tuple[str, str]],
    *,
    check: Check | None = None,
    quote: bool = True,
) -> tuple[M | None, YamlDoc | None, list[Problem]]:
    """Load, validate and collect every problem, sorted by line; the model is ``None`` only
    when the document does not validate (other errors are in the problems: callers that need
    a valid file check them). ``check`` adds problems found on the raw document;
    ``quote=False`` keeps values out of the messages (``secrets.poly``)."""
    parsed, doc, problems = _parse_unsorted(text, file, model, unique, check, quote)
    problems.sort(key=lambda p: p.line or 0)
    return parsed, doc, problems


def has_errors(problems: Sequence[Problem]) -> bool:
    """True when any problem is an error (not a warning)."""
    return any(p.severity == "error" for p in problems)


def _parse_unsorted(
    text: str,
    file: str,
    model: type[M],
    unique: Sequence[tuple[str, str]],
    check: Check | None,
    quote: bool,
) -> tuple[M | None, YamlDoc | None, list[Problem]]:
    doc, problems = load_yaml(text, file)
    if doc is None:
        return None, None, problems
    if not isinstance(doc.value, dict):
        got = "an empty file" if doc.value is None else f"a {type(doc.value).__name__}"
        return None, doc, [*problems, Problem(file, 1, f"expected a mapping of keys, got {got}")]
    problems += unknown_keys(doc, model, doc.value, ())
    for key, what in unique:
        problems += duplicates(doc, key, what)
    if check is not None:
        problems += check(doc)
    try:
        return model.model_validate(doc.value), doc, problems
    except ValidationError as exc:
        return None, doc, problems + problems_from(exc, doc, quote=quote)
