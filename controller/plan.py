"""Desired blocks and configs versus what was last applied → the runs needed (pure).

``plan`` takes values and returns values: same inputs, same plan. A block instance runs when
it is new, its pin changed (the ``from:`` tag, or the chain a local block resolves to), its
content changed (a registry block's manifest digest; a local or inline block's code: the
content of every local folder in its ``from:`` chain and its workspace.poly definition), or
its config changed. Runs keep workspace order, or the order and actions of the selected
workflow (then blocks that no step names do not run).

The config hash covers the instance's resolved config without registry defaults (those are
fixed by the registry block's version and digest, already compared; a local block's defaults
are in its folder) and its secret config from ``secrets.poly``. Without secrets the hash is
``sha256:`` of the config's canonical JSON; with secrets it is ``hmac-sha256:``, keyed by a
key derived from the decrypted kubeconfig (:func:`controller.secrets.config_hash_key` says
why), so the status never holds a plain hash that a guessed secret could be checked against.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from controller.refs import BlockRef, is_downgrade
from controller.workspace import ResolvedBlock, Workspace, WorkspaceFile, deep_merge, resolve_file

__all__ = [
    "AppliedBlock",
    "Plan",
    "Run",
    "SecretConfigs",
    "applied_from",
    "canonical_json",
    "config_hash",
    "content_digest",
    "deep_merge",
    "plan",
]

Reason = Literal["new", "version", "digest", "content", "config", "reapply"]


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
    resolved: ResolvedBlock
    config_hash: str
    digest: str | None = None

    @property
    def ref(self) -> BlockRef | None:
        """The registry pin, or ``None`` for a local or inline block."""
        return self.resolved.ref

    @property
    def version(self) -> str:
        """The block version the status records (``local`` when a local block has none)."""
        return self.resolved.version or self.resolved.source


@dataclass(frozen=True)
class Plan:
    """The ordered runs, the instances that left the workspace (with their last pins), and
    the changed instances the selected workflow does not run."""

    runs: tuple[Run, ...]
    removed: tuple[AppliedBlock, ...]
    unscheduled: tuple[str, ...] = ()

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


def content_digest(block: ResolvedBlock, folders: Mapping[str, str]) -> str:
    """A local or inline block's content: its chain's folders and workspace.poly entries."""
    doc = {
        "folders": {f: folders.get(f, "") for f in block.folders},
        "definition": block.definition,
    }
    return "sha256:" + hashlib.sha256(canonical_json(doc).encode()).hexdigest()


def _reason(
    block: ResolvedBlock, applied: AppliedBlock | None, digest: str | None, chash: str
) -> Reason | None:
    if applied is None:
        return "new"
    if block.ref is None:
        if applied.from_ != block.pin:
            return "version"
        if digest != applied.digest:
            return "content"
        return "config" if chash != applied.config_hash else None
    try:
        before = BlockRef.parse(applied.from_)
    except ValueError:
        return "version"  # unreadable record, or it was a local block: run again
    now = block.ref
    if (before.name, before.tag) != (now.name, now.tag):
        return "version"
    if before.digest != now.digest:
        return "digest"
    if digest and applied.digest and digest != applied.digest:
        return "digest"
    if chash != applied.config_hash:
        return "config"
    return None


def _rollback(block: ResolvedBlock, before: AppliedBlock | None, reason: Reason) -> bool:
    if before is None or reason != "version" or block.ref is None:
        return False
    try:
        old = BlockRef.parse(before.from_)
    except ValueError:
        return False
    return old.name == block.ref.name and is_downgrade(old.tag, block.ref.tag)


def _schedule(ws: Workspace, action: str, workflow: str | None) -> list[tuple[ResolvedBlock, str]]:
    """(block, action) in run order: workspace order, or the workflow's steps."""
    if workflow is None:
        # A local or inline block without actions holds config for others: nothing to run.
        return [(b, action) for b in ws.blocks if b.ref is not None or b.actions]
    selected = ws.file.workflow(workflow)
    if selected is None:
        raise KeyError(workflow)
    by_name = {b.name: b for b in ws.blocks}
    return [(by_name[s.block], s.action) for s in selected.steps if s.block in by_name]


def plan(
    workspace: Workspace | WorkspaceFile,
    applied: Sequence[AppliedBlock],
    *,
    action: str = "deploy",
    digests: Mapping[str, str] | None = None,
    secrets: SecretConfigs | None = None,
    workflow: str | None = None,
    reapply: bool = False,
) -> Plan:
    """The runs that bring the cluster from ``applied`` to ``workspace``, in run order.

    ``digests`` maps instance names to resolved manifest digests when they are known (after
    resolving tags in the registry); without them, digest changes are detected only when the
    ``from:`` pins a digest. ``secrets`` (from ``secrets.poly``) count as config. With
    ``workflow`` (a workflow of the workspace: a ``KeyError`` otherwise), changed blocks run
    in its steps' order with its steps' actions. With ``reapply`` (a person asked to repair
    a cluster changed by hand) every block runs, the unchanged ones with reason ``reapply``.
    """
    ws = workspace if isinstance(workspace, Workspace) else resolve_file(workspace)
    by_name = {a.name: a for a in applied}
    digests = digests or {}
    secrets = secrets or SecretConfigs()
    changed: dict[str, tuple[Reason, str, str | None]] = {}
    for block in ws.blocks:
        chash = config_hash(block.config, secrets.of(block.name), secrets.key)
        if block.ref is None:
            digest: str | None = content_digest(block, ws.digests)
        else:
            digest = digests.get(block.name) or block.ref.digest
        reason = _reason(block, by_name.get(block.name), digest, chash)
        if reason is None and reapply:
            reason = "reapply"
        if reason is not None:
            changed[block.name] = (reason, chash, digest)
    runs = []
    scheduled: set[str] = set()
    for block, step_action in _schedule(ws, action, workflow):
        if block.name not in changed:
            continue
        scheduled.add(block.name)
        reason, chash, digest = changed[block.name]
        before = by_name.get(block.name)
        runs.append(
            Run(
                block=block.name,
                action=step_action,
                from_=before.from_ if before else None,
                to=block.pin,
                reason=reason,
                rollback=_rollback(block, before, reason),
                resolved=block,
                config_hash=chash,
                digest=digest,
            )
        )
    wanted = {b.name for b in ws.blocks}
    removed = tuple(a for a in applied if a.name not in wanted)
    unscheduled = tuple(name for name in changed if name not in scheduled)
    return Plan(tuple(runs), removed, unscheduled)


def applied_from(workspace: Workspace | WorkspaceFile) -> list[AppliedBlock]:
    """The applied state a workspace would leave if all its blocks ran (no registry digests
    known)."""
    ws = workspace if isinstance(workspace, Workspace) else resolve_file(workspace)
    return [
        AppliedBlock(
            b.name,
            b.pin,
            b.ref.digest if b.ref else content_digest(b, ws.digests),
            config_hash(b.config),
        )
        for b in ws.blocks
    ]
