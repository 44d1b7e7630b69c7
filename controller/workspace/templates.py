"""Polycrate's script templating: each ``script`` line is a Go ``text/template`` executed
against the workspace snapshot (``cmd/actions.go``, ``SaveExecutionScript``). Pure.

cratekeeper renders the subset real blocks use and refuses the rest before anything runs:

- ``{{ .block.config.x }}`` / ``{{ .Block.Config.x }}``: a field path from the snapshot root.
  Polycrate executes the template on its Go structs, so documents write the struct field
  names (``.Workspace.Name``); the snapshot holds them lower-cased (``workspace.name``), so a
  segment that is not found as written is tried lower-cased, except inside a block's
  ``config`` and the workspace's ``config.globals`` (maps whose keys are looked up exactly,
  as Go does);
- ``{{ index .block.config "key-with-dashes" }}`` and ``{{ index .x.list 0 }}``;
- ``{{-`` / ``-}}`` trim the text around the action, as in Go.

A missing field, a value that is not a scalar, or any other template syntax (pipes, ``if``,
``range``, functions, variables) is a :class:`TemplateError` naming the line. A line is never
run half-rendered.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any


class TemplateError(ValueError):
    """A script line cannot be rendered; the message says which part and why."""


_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_PATH = re.compile(r"^\.[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$|^\.$")
_ARG = re.compile(r'\s*("(?:[^"\\]|\\.)*"|`[^`]*`|-?[0-9]+|\.[A-Za-z0-9_.-]*)')


def _lookup(value: Any, key: str, under_config: bool) -> Any:
    if isinstance(value, Mapping):
        if key in value:
            return value[key]
        if not under_config and key.lower() in value:
            return value[key.lower()]
    raise KeyError(key)


def _walk(root: Mapping[str, Any], path: str, expr: str) -> Any:
    value: Any = root
    if path == ".":
        return value
    exact, previous = False, ""
    for segment in path[1:].split("."):
        try:
            value = _lookup(value, segment, exact)
        except KeyError:
            raise TemplateError(
                f"{{{{{expr}}}}}: {segment!r} is not in the snapshot at {path!r}"
            ) from None
        lower = segment.lower()
        # A block's config is a map (its keys are the author's); the workspace's config is a
        # struct in Polycrate, whose ``globals`` is the map.
        exact = exact or (lower == "config" and previous != "workspace") or lower == "globals"
        previous = lower
    return value


def _arguments(text: str, expr: str) -> list[str]:
    args, pos = [], 0
    while pos < len(text):
        match = _ARG.match(text, pos)
        if match is None or match.end() == pos:
            raise TemplateError(f"{{{{{expr}}}}}: cannot read the arguments of index")
        args.append(match.group(1))
        pos = match.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return args


def _index(root: Mapping[str, Any], rest: str, expr: str) -> Any:
    args = _arguments(rest, expr)
    if len(args) < 2 or not _PATH.match(args[0]):
        raise TemplateError(f"{{{{{expr}}}}}: index needs a field path and at least one key")
    value = _walk(root, args[0], expr)
    for arg in args[1:]:
        key: Any = json.loads(arg) if arg.startswith('"') else arg.strip("`")
        if arg.lstrip("-").isdigit():
            key = int(arg)
        try:
            value = value[key] if isinstance(value, Mapping | list) else None
        except (KeyError, IndexError, TypeError):
            value = None
        if value is None:
            raise TemplateError(f"{{{{{expr}}}}}: index {arg} is not in the snapshot")
    return value


def _scalar(value: Any, expr: str) -> str:
    if isinstance(value, _Anything):
        return "x"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    what = "nothing (null)" if value is None else f"a {type(value).__name__}"
    raise TemplateError(
        f"{{{{{expr}}}}} renders {what}; a script line can only use a string, number or boolean"
    )


def _evaluate(root: Mapping[str, Any], expr: str) -> str:
    body = expr.strip()
    if _PATH.match(body):
        return _scalar(_walk(root, body, expr), expr)
    head, _, rest = body.partition(" ")
    if head == "index":
        return _scalar(_index(root, rest, expr), expr)
    raise TemplateError(
        f"{{{{{expr}}}}} is template syntax cratekeeper does not render (it renders field "
        'paths such as {{ .block.config.namespace }} and {{ index .block.config "key" }})'
    )


def render_line(line: str, snapshot: Mapping[str, Any]) -> str:
    """``line`` with every ``{{ … }}`` replaced from ``snapshot``, or :class:`TemplateError`."""
    out: list[str] = []
    pos = 0
    for match in _ACTION.finditer(line):
        text = line[pos : match.start()]
        if match.group(1):
            text = text.rstrip()
        out.append(text)
        out.append(_evaluate(snapshot, match.group(2)))
        pos = match.end()
        if match.group(3):
            while pos < len(line) and line[pos].isspace():
                pos += 1
    tail = line[pos:]
    if "{{" in tail:
        raise TemplateError("an unclosed '{{'; close it with '}}'")
    out.append(tail)
    return "".join(out)


def render_script(lines: Sequence[str], snapshot: Mapping[str, Any], where: str) -> tuple[str, ...]:
    """Every line rendered, or a :class:`TemplateError` naming ``where`` and the line number
    (1-based, within the script)."""
    rendered = []
    for number, line in enumerate(lines, start=1):
        try:
            rendered.append(render_line(line, snapshot))
        except TemplateError as exc:
            raise TemplateError(f"{where}: script line {number}: {exc}") from None
    return tuple(rendered)


def template_problem(lines: Sequence[str]) -> tuple[int, str] | None:
    """The first line (1-based) whose template syntax cratekeeper cannot render at all, and
    why (a field that is missing is found only against the real snapshot, before the run)."""
    root = {key: _Anything() for key in SNAPSHOT_ROOTS}
    for number, line in enumerate(lines, start=1):
        try:
            render_line(line, root)
        except TemplateError as exc:
            return number, str(exc)
    return None


SNAPSHOT_ROOTS = ("workspace", "block", "action", "env")
"""The top-level fields of the snapshot a script line can use."""


class _Anything(Mapping[str, Any]):
    """A snapshot stand-in where every field exists and is a string (syntax checks only)."""

    def __getitem__(self, key: str) -> Any:
        return _Anything()

    def __contains__(self, key: object) -> bool:
        return True

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __str__(self) -> str:
        return "x"
