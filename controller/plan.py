"""Desired pins and configs versus what was last applied → the runs needed (pure).

``plan`` takes values and returns values: same inputs, same plan. A block instance runs when it
is new, its pinned version (the ``from:`` tag or path) changed, its digest changed (the tag was
re-pushed, or the ``@sha256:`` pin moved), or its config changed. Runs keep workspace order.

The config hash covers the instance's own config (what the workspace controls) and its secret
config from ``secrets.poly``. The block's defaults need no hash: they are fixed by the block's
version and digest, already compared. Without secrets the hash is ``sha256:`` of the config's
canonical JSON; with secrets it is ``hmac-sha256:``, keyed by a key derived from the decrypted
kubeconfig (:func:`controller.secrets.config_hash_key` says why), so the status never holds a
plain hash that a guessed secret could be checked against.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from controller.refs import BlockRef, is_downgrade
from controller.workspace import BlockInstance, WorkspaceFile

Reason = Literal["new", "version", "digest", "config"]


@dataclass(frozen=True)
class AppliedBlock:
    """What was last applied successfully for one block instance."""

    name: str
    from_: str
    digest: str | None
    config_hash: str


@dataclass(frozen=True)
class SecretConfigs:
    """Each instance's secret config (``secrets.poly``) and the key of hashes that cover it."""

    configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)
    key: bytes = field(default=b"", repr=False)

    def of(self, name: str) -> Mapping[str, Any]:
        """The secret config of instance ``name`` (empty when it has none)."""
        return self.configs.get(name) or {}


@dataclass(frozen=True)
class Run:
    """One action to run for one block instance, and why."""

    block: str
    action: str
    from_: str | None
    to: str
    reason: Reason
    rollback: bool
    instance: BlockInstance
    config_hash: str
    digest: str | None = None

    @property
    def ref(self) -> BlockRef:
        return self.instance.from_


@dataclass(frozen=True)
class Plan:
    """The ordered runs and the instances that left the workspace (with their last pins)."""

    runs: tuple[Run, ...]
    removed: tuple[AppliedBlock, ...]

    @property
    def empty(self) -> bool:
        return not self.runs and not self.removed


def canonical_json(value: Any) -> str:
    """Key-sorted, whitespace-free JSON; non-JSON YAML scalars (dates) become strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def config_hash(
    config: Mapping[str, Any], secrets: Mapping[str, Any] | None = None, key: bytes = b""
) -> str:
    """Stable hash of an instance's config: ``sha256:`` + hex of its canonical JSON; with
    ``secrets``, ``hmac-sha256:`` + hex of the HMAC of both under ``key`` (which must be set)."""
    if not secrets:
        return "sha256:" + hashlib.sha256(canonical_json(dict(config)).encode()).hexdigest()
    if not key:
        raise ValueError("a config hash that covers secrets needs a key")
    both = canonical_json({"config": dict(config), "secrets": dict(secrets)}).encode()
    return "hmac-sha256:" + hmac.new(key, both, hashlib.sha256).hexdigest()


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``; nested mappings merge, everything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        below = merged.get(key)
        if isinstance(below, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(below, value)
        else:
            merged[key] = value
    return merged


def _reason(
    instance: BlockInstance, applied: AppliedBlock | None, digest: str | None, chash: str
) -> Reason | None:
    if applied is None:
        return "new"
    try:
        before = BlockRef.parse(applied.from_)
    except ValueError:
        return "version"  # unreadable record: run again rather than guess
    now = instance.from_
    if (before.name, before.tag) != (now.name, now.tag):
        return "version"
    if before.digest != now.digest:
        return "digest"
    if digest and applied.digest and digest != applied.digest:
        return "digest"
    if chash != applied.config_hash:
        return "config"
    return None


def plan(
    workspace: WorkspaceFile,
    applied: Sequence[AppliedBlock],
    *,
    action: str = "deploy",
    digests: Mapping[str, str] | None = None,
    secrets: SecretConfigs | None = None,
) -> Plan:
    """The runs that bring the cluster from ``applied`` to ``workspace``, in workspace order.

    ``digests`` maps instance names to resolved manifest digests when they are known (after
    resolving tags in the registry); without them, digest changes are detected only when the
    ``from:`` pins a digest. ``secrets`` (from ``secrets.poly``) count as config.
    """
    by_name = {a.name: a for a in applied}
    digests = digests or {}
    secrets = secrets or SecretConfigs()
    runs = []
    for instance in workspace.blocks:
        before = by_name.get(instance.name)
        chash = config_hash(instance.config, secrets.of(instance.name), secrets.key)
        digest = digests.get(instance.name) or instance.from_.digest
        reason = _reason(instance, before, digest, chash)
        if reason is None:
            continue
        rollback = False
        if before is not None and reason == "version":
            try:
                old = BlockRef.parse(before.from_)
                rollback = old.name == instance.from_.name and is_downgrade(
                    old.tag, instance.from_.tag
                )
            except ValueError:
                rollback = False
        runs.append(
            Run(
                block=instance.name,
                action=action,
                from_=before.from_ if before else None,
                to=str(instance.from_),
                reason=reason,
                rollback=rollback,
                instance=instance,
                config_hash=chash,
                digest=digest,
            )
        )
    wanted = {b.name for b in workspace.blocks}
    removed = tuple(a for a in applied if a.name not in wanted)
    return Plan(tuple(runs), removed)


def applied_from(workspace: WorkspaceFile) -> list[AppliedBlock]:
    """The applied state a workspace would leave if all its blocks ran (no digests known)."""
    return [
        AppliedBlock(b.name, str(b.from_), b.from_.digest, config_hash(b.config))
        for b in workspace.blocks
    ]
