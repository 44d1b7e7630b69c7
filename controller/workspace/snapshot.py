"""Polycrate's ``WorkspaceSnapshot``: what an action sees as extra-vars, in its snapshot file
and in its script templates (pure).

The shape follows a real transaction log of Polycrate
(``.workspace/.logs/2025/05/22/db103689-….yml`` in ``polycrate/polycrate``, its ``snapshot``):
``workspace`` (name, organization, ``config`` with Polycrate's defaults and ``globals``, every
block, ``path``/``localpath``/``containerpath``, ``inventory``, ``kubeconfig``), ``block`` (the
running block: name, labels, actions, config, version, kind, ``workdir``, ``inventory``,
``kubeconfig``, ``artifacts``, each path as ``path``/``localpath``/``containerpath``),
``action`` and ``env`` (the action's environment: the runner knows all of it and adds it).
Paths are as the action sees them (the runner says where the root is),
so ``path``, ``localpath`` and ``containerpath`` are the same path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from controller.workspace.merge import deep_merge
from controller.workspace.models import ActionSpec
from controller.workspace.resolve import ResolvedBlock

POLYCRATE_DEFAULTS: Mapping[str, Any] = {
    "image": {"reference": "cargo.ayedo.cloud/library/polycrate", "version": "latest"},
    "blocksroot": "blocks",
    "logsroot": ".logs",
    "blocksconfig": "block.poly",
    "workspaceconfig": "workspace.poly",
    "workflowsroot": "workflows",
    "artifactsroot": "artifacts",
    "containerroot": "/workspace",
    "sshprivatekey": "id_rsa",
    "sshpublickey": "id_rsa.pub",
    "remoteroot": "/polycrate",
    "dockerfile": "Dockerfile.poly",
    "globals": {},
}
"""``workspace.config`` as Polycrate fills it when workspace.poly does not (the log's values)."""


@dataclass(frozen=True)
class BlockView:
    """One block as the snapshot shows it: resolved, with its final config and folders."""

    block: ResolvedBlock
    config: Mapping[str, Any] = field(repr=False)
    """Merged: registry or block.poly defaults < chain < instance < secrets.poly."""
    workdir: str
    """Relative to the workspace root ('' is the root)."""
    actions: tuple[ActionSpec, ...] = ()

    @property
    def artifacts(self) -> str:
        return f"artifacts/blocks/{self.block.name}"


@dataclass(frozen=True)
class SnapshotInput:
    """Everything the snapshot of one run is made of, besides where the runner put things."""

    name: str
    organization: str
    config: Mapping[str, Any] = field(repr=False)
    """workspace.poly's top-level ``config``."""
    blocks: tuple[BlockView, ...] = field(repr=False)
    """Every block of the workspace, in order (the running one included)."""
    block: str
    action: ActionSpec
    inventory: str | None
    """The run's inventory file relative to the root, if any."""
    extraenv: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """secrets.poly's top-level ``config`` (decrypted), shown as ``workspace.secrets``."""
    workflow: str | None = None


def _where(path: str) -> dict[str, str]:
    return {"path": path, "localpath": path, "containerpath": path}


def _under(root: str, relative: str) -> str:
    return str(PurePosixPath(root) / relative) if relative else root


def _labels(view: BlockView, data: SnapshotInput) -> dict[str, str]:
    return {
        "blocks.polycrate.io/kind": view.block.kind,
        "blocks.polycrate.io/name": view.block.name,
        "organizations.polycrate.io/name": data.organization,
        "polycrate.io/managed-by": "cratekeeper",
        "workspaces.polycrate.io/name": data.name,
        **view.block.labels,
    }


def action_view(action: ActionSpec, block: str) -> dict[str, Any]:
    """An action as the snapshot shows it (Polycrate adds the owning block's name)."""
    doc = action.model_dump(mode="json", exclude_defaults=True, exclude={"block"})
    return {**doc, "block": block}


def _block_view(
    view: BlockView, data: SnapshotInput, root: str, kubeconfig: str, inventory: str
) -> dict[str, Any]:
    block = view.block
    doc: dict[str, Any] = {
        "name": block.name,
        "labels": _labels(view, data),
        "kind": block.kind,
        "actions": [action_view(a, block.name) for a in view.actions],
        "config": dict(view.config),
    }
    if block.ref is not None or block.source == "local":
        doc["from"] = block.pin if block.ref else block.chain[-1]
    doc["version"] = block.version or ""
    doc["workdir"] = _where(_under(root, view.workdir))
    doc["inventory"] = _where(inventory)
    doc["kubeconfig"] = _where(kubeconfig)
    doc["artifacts"] = _where(_under(root, view.artifacts))
    return doc


def build_snapshot(
    data: SnapshotInput,
    *,
    root: str,
    kubeconfig: str,
    snapshot_file: str,
    with_env: bool = False,
) -> dict[str, Any]:
    """The snapshot of one run, with paths as the action sees them (``root``: the workspace
    root; ``kubeconfig``: the decrypted workspace kubeconfig; ``snapshot_file``: this file).
    ``with_env`` adds :func:`model_env` as ``env`` (the runner adds the complete one)."""
    inventory = _under(root, data.inventory) if data.inventory else _under(root, "inventory.yml")
    blocks = [_block_view(v, data, root, kubeconfig, inventory) for v in data.blocks]
    current = next(b for b in blocks if b["name"] == data.block)
    workspace: dict[str, Any] = {
        "name": data.name,
        "organization": data.organization,
        "config": deep_merge(POLYCRATE_DEFAULTS, data.config),
        "blocks": blocks,
        "path": root,
        "localpath": root,
        "containerpath": root,
        "inventory": _where(_under(root, "inventory.yml")),
        "kubeconfig": _where(kubeconfig),
    }
    if data.secrets:
        workspace["secrets"] = dict(data.secrets)
    doc: dict[str, Any] = {
        "workspace": workspace,
        "action": action_view(data.action, data.block),
        "block": current,
    }
    if data.workflow:
        doc["workflow"] = {"name": data.workflow}
    if with_env:
        doc["env"] = model_env(data, root=root, kubeconfig=kubeconfig, snapshot_file=snapshot_file)
    return doc


def model_env(
    data: SnapshotInput, *, root: str, kubeconfig: str, snapshot_file: str
) -> dict[str, str]:
    """The part of the action's environment the model knows (``POLYCRATE_*``, the kubeconfig,
    the inventory, ``extraenv``); the runner records the complete one as the snapshot's
    ``env``, as Polycrate's transaction log shows it."""
    view = next(v for v in data.blocks if v.block.name == data.block)
    return {
        "KUBECONFIG": kubeconfig,
        "K8S_AUTH_KUBECONFIG": kubeconfig,
        "POLYCRATE_WORKSPACE": root,
        "POLYCRATE_WORKSPACE_SNAPSHOT_YAML": snapshot_file,
        "POLYCRATE_BLOCK": data.block,
        "POLYCRATE_BLOCK_WORKDIR": _under(root, view.workdir),
        "POLYCRATE_ACTION": data.action.name,
        **({"ANSIBLE_INVENTORY": _under(root, data.inventory)} if data.inventory else {}),
        **data.extraenv,
    }
