"""YAML loading that remembers where every value came from.

PyYAML's composer gives nodes with start marks; we build plain Python values from them and a
map from each value's path (``("blocks", 0, "from")``) to its 1-based line, so a validation
error can say ``workspace.poly:7``. Duplicate mapping keys, which PyYAML silently overwrites,
are reported. Only the YAML core types are produced (no Python tags: the safe loader's resolver).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from controller.errors import Problem

Path = tuple[str | int, ...]


@dataclass
class YamlDoc:
    """A parsed YAML document: its value and the line of every path inside it."""

    file: str
    value: Any
    lines: dict[Path, int] = field(default_factory=dict)

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        key: Path = tuple(path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), None)


MAX_NODES = 100_000
# libyaml's parser when PyYAML was built with it (PyPI's wheels are): about 5x faster on large
# files (bench/README.md), with the same nodes and marks; the pure-Python parser otherwise.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _TooLarge(Exception):
    """The document expands to more than MAX_NODES values."""


class _Builder:
    """Turns composed nodes into Python values, recording lines and problems."""

    def __init__(self, file: str, loader: yaml.SafeLoader) -> None:
        self.file = file
        self.loader = loader
        self.lines: dict[Path, int] = {}
        self.problems: list[Problem] = []
        self.budget = MAX_NODES

    def build(self, node: yaml.Node, path: Path) -> Any:
        # Aliases re-enter shared nodes; a budget stops "billion laughs" expansion.
        self.budget -= 1
        if self.budget < 0:
            raise _TooLarge
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    key = str(key)
                if key in result:
                    self.problems.append(
                        Problem(
                            self.file,
                            key_node.start_mark.line + 1,
                            f"duplicate key {key!r}; each key may appear once in a mapping",
                        )
                    )
                result[key] = self.build(value_node, (*path, key))
                self.lines[(*path, key)] = key_node.start_mark.line + 1
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)


def _reader_problem(text: str, file: str, exc: yaml.reader.ReaderError) -> Problem:
    line = text.count("\n", 0, exc.position) + 1
    return Problem(file, line, f"not valid YAML text: {exc.reason} (U+{exc.character:04X})")


def load_yaml(text: str, file: str) -> tuple[YamlDoc | None, list[Problem]]:
    """Parse one YAML document; on a syntax error return ``None`` and the located problem."""
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # unprintable characters are checked up front
        return None, [_reader_problem(text, file, exc)]
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDoc(file, None, {(): 1}), []
        builder = _Builder(file, loader)
        value = builder.build(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = exc.problem or exc.context or "invalid YAML"
        return None, [Problem(file, line, f"YAML syntax error: {what}")]
    except _TooLarge:
        return None, [Problem(file, None, f"document expands to more than {MAX_NODES} values")]
    except yaml.reader.ReaderError as exc:
        return None, [_reader_problem(text, file, exc)]
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        return None, [Problem(file, None, f"YAML error: {type(exc).__name__}: {exc}")]
    finally:
        loader.dispose()
    return YamlDoc(file, value, builder.lines), builder.problems
