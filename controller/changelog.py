"""A block's ``CHANGELOG.poly``: the entries between two versions, for ``plan --preview``.

Polycrate blocks may ship a ``CHANGELOG.poly`` beside ``block.poly``: YAML, a list of entries
newest first, each with a ``version`` and what changed (PolyHub parses it "to a JSON array").
No published schema was found (docs/decisions.md), so the reader is lenient where a format may
vary and strict where it matters: an entry needs a ``version``; its text is ``message``,
``description`` or ``summary``; ``changes`` is a list of lines (or of mappings with such a
text); ``date`` and ``type`` are shown when present; a top-level mapping under ``changelog``
or ``entries`` is taken too. Entries that do not fit are left out, never an error: a preview
must not fail on a block's release notes.
"""

from __future__ import annotations

from collections.abc import Sequence

import semver
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

CHANGELOG_FILE = "CHANGELOG.poly"
_TEXT_KEYS = ("message", "description", "summary", "title")


class ChangelogEntry(BaseModel):
    """One version's entry."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: str = Field(min_length=1)
    date: str | None = None
    type: str | None = None
    message: str = ""
    changes: tuple[str, ...] = ()

    @field_validator("version", "date", "type", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        return (
            str(value) if isinstance(value, int | float) or hasattr(value, "isoformat") else value
        )

    @field_validator("changes", mode="before")
    @classmethod
    def _lines(cls, value: object) -> object:
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list):
            return tuple(_line(item) for item in value if _line(item))
        return value

    def lines(self) -> list[str]:
        """The entry as the plan prints it."""
        detail = ", ".join(x for x in (self.date, self.type) if x)
        head = f"{self.version}" + (f" ({detail})" if detail else "")
        out = [f"{head}: {self.message}" if self.message else head]
        out.extend(f"  - {change}" for change in self.changes)
        return out


def _line(item: object) -> str:
    if isinstance(item, dict):
        return next((str(item[k]) for k in _TEXT_KEYS if item.get(k)), "")
    return str(item) if item is not None else ""


def parse_changelog(text: str) -> list[ChangelogEntry]:
    """The entries of a ``CHANGELOG.poly`` that validate (none for text that is not YAML)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return []
    if isinstance(doc, dict):
        doc = doc.get("changelog", doc.get("entries"))
    if not isinstance(doc, list):
        return []
    entries = []
    for item in doc:
        if not isinstance(item, dict):
            continue
        fields = dict(item)
        if not fields.get("message"):
            fields["message"] = next((str(fields[k]) for k in _TEXT_KEYS if fields.get(k)), "")
        try:
            entries.append(ChangelogEntry.model_validate(fields))
        except ValidationError:
            continue
    return entries


def _key(version: str) -> semver.Version | None:
    try:
        return semver.Version.parse(version.removeprefix("v"), optional_minor_and_patch=True)
    except ValueError:
        return None


def between(entries: Sequence[ChangelogEntry], old: str | None, new: str) -> list[ChangelogEntry]:
    """The entries after ``old`` up to ``new`` (a downgrade: after ``new`` up to ``old``, what
    is taken back), newest first; all up to ``new`` for a new block. Versions that are not
    semantic versions cannot be placed and are left out."""
    low, high = _key(old) if old else None, _key(new)
    if high is None or (old and low is None):
        return []
    if low is not None and high < low:
        low, high = high, low
    chosen = []
    for entry in entries:
        key = _key(entry.version)
        if key is not None and key <= high and (low is None or key > low):
            chosen.append((key, entry))
    return [entry for _, entry in sorted(chosen, key=lambda pair: pair[0], reverse=True)]
