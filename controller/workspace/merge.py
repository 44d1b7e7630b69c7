"""Polycrate's config merge: nested mappings merge, everything else is replaced (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``; nested mappings merge, everything else is replaced.

    Polycrate merges with mergo, which treats Go zero values (``false``, ``0``, ``""``) in the
    override as unset; cratekeeper lets an explicit value win (docs/polycrate-compatibility.md).
    """
    merged = dict(base)
    for key, value in override.items():
        below = merged.get(key)
        if isinstance(below, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(below, value)
        else:
            merged[key] = value
    return merged
