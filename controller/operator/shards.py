"""Label selectors: which Workspaces one operator instance (one shard) reconciles.

Kubernetes' selector syntax, equality- and set-based, as ``kubectl -l`` takes it:
``key``, ``!key``, ``key=value`` (or ``==``), ``key!=value``, ``key in (a, b)``,
``key notin (a, b)``, joined by commas (all must hold). Flux's sharding convention reads
``sharding.fluxcd.io/key in (shard1)`` for a shard and ``!sharding.fluxcd.io/key`` for the main
instance. Pure: parsed once at start-up, a :class:`Selector` answers per Workspace.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from controller.errors import SettingsError

SHARD_KEY = "sharding.fluxcd.io/key"
"""The label Flux's controllers shard by; cratekeeper follows the same convention."""

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VALUE = r"[A-Za-z0-9]?(?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_REQUIREMENT = re.compile(
    rf"""\s*(?:
        (?P<absent>!)\s*(?P<akey>{_KEY})
      | (?P<skey>{_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)
      | (?P<ekey>{_KEY})\s*(?P<eq>==|!=|=)\s*(?P<value>{_VALUE})
      | (?P<pkey>{_KEY})
    )\s*(?:,|$)""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Requirement:
    """One term: ``key`` must be present/absent, or its value in/not in ``values``."""

    key: str
    op: str  # "exists", "!exists", "in", "notin"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!exists":
            return self.key not in labels
        if self.op == "in":
            return labels.get(self.key) in self.values
        return labels.get(self.key) not in self.values  # notin: an absent key matches too


@dataclass(frozen=True)
class Selector:
    """All requirements of one selector; the empty selector matches everything."""

    text: str
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(req.matches(labels) for req in self.requirements)


def parse_selector(text: str | None) -> Selector:
    """The selector of ``text``; a :class:`SettingsError` saying what is wrong and how to
    write it (CRATEKEEPER_LABEL_SELECTOR or --watch-label-selector)."""
    text = (text or "").strip()
    requirements: list[Requirement] = []
    position = 0
    while position < len(text):
        found = _REQUIREMENT.match(text, position)
        if found is None or found.end() == position:
            rest = text[position:].strip()
            raise SettingsError(
                f"label selector {text!r}: cannot read it from {rest!r}; write e.g. "
                f"'{SHARD_KEY} in (shard1)' or '!{SHARD_KEY}'"
            )
        requirements.append(_requirement(found))
        position = found.end()
    return Selector(text, tuple(requirements))


def _requirement(found: re.Match[str]) -> Requirement:
    if found["akey"]:
        return Requirement(found["akey"], "!exists")
    if found["skey"]:
        values = frozenset(v.strip() for v in found["values"].split(",") if v.strip())
        return Requirement(found["skey"], found["op"], values)
    if found["ekey"]:
        op = "notin" if found["eq"] == "!=" else "in"
        return Requirement(found["ekey"], op, frozenset({found["value"]}))
    return Requirement(found["pkey"], "exists")
