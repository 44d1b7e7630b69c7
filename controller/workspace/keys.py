"""Polycrate keys cratekeeper does not model: refused (an error that says why) or ignored
(a warning: they change nothing about where or what runs).

The table is keyed by model class name; docs/polycrate-compatibility.md renders the same
decisions for people (a test keeps the two in step).
"""

from __future__ import annotations

from typing import Final, Literal

Severity = Literal["error", "warning"]
Rule = tuple[Severity, str]

_WORKDIR: Rule = (
    "warning",
    "ignored: the workdir is always the block's folder (inherited through from:), as Polycrate "
    "computes it",
)
_ARTIFACTS: Rule = (
    "warning",
    "ignored: a block's artifacts are always artifacts/blocks/<block name>, as Polycrate lays "
    "them out",
)
_BLOCK_EXTRAENV: Rule = (
    "error",
    "refused: Polycrate reads extraenv only from workspace.poly (a list of KEY=value lines); "
    "move it there",
)
_BLOCK_EXTRAMOUNTS: Rule = (
    "error",
    "refused: an action runs in a pod or container with the workspace only; host mounts are "
    "not available (put the files into the workspace or the block)",
)
_HARMLESS: Rule = ("warning", "ignored: Polycrate metadata that changes nothing cratekeeper runs")
_BLOCK_KEYS: dict[str, Rule] = {
    "workdir": _WORKDIR,
    "artifacts": _ARTIFACTS,
    "extraenv": _BLOCK_EXTRAENV,
    "extramounts": _BLOCK_EXTRAMOUNTS,
    "alias": _HARMLESS,
    "type": _HARMLESS,
    "flavor": _HARMLESS,
    "display_name": _HARMLESS,
    "icon_url": _HARMLESS,
    "git_repository_url": _HARMLESS,
    "license": _HARMLESS,
    "license_url": _HARMLESS,
    "website_url": _HARMLESS,
    "documentation_url": _HARMLESS,
    "supports_ha": _HARMLESS,
    "checksum": _HARMLESS,
    "template": (
        "warning",
        "ignored: cratekeeper runs a template block like any other block when a workspace uses it",
    ),
}

RULES: Final[dict[str, dict[str, Rule]]] = {
    "WorkspaceFile": {
        "dependencies": (
            "warning",
            "ignored: cratekeeper pulls exactly the blocks pinned by from: "
            "(REGISTRY/PATH:VERSION), nothing is installed ahead",
        ),
        "sync": ("warning", "ignored: cratekeeper reads the workspace from Git itself"),
        "events": ("warning", "ignored: cratekeeper records runs in the Workspace's status"),
        "registry": (
            "warning",
            "ignored: registry credentials come from spec.registry.secretRef (CLI: the docker "
            "config), never from workspace.poly",
        ),
        "secrets": ("warning", "ignored: secrets come from secrets.poly(.age)"),
        "version": _HARMLESS,
        "backplane": _HARMLESS,
        "hub": _HARMLESS,
        "metadata": _HARMLESS,
    },
    "BlockInstance": _BLOCK_KEYS,
    "BlockFile": {**_BLOCK_KEYS, "version": _HARMLESS},
    "ActionSpec": {
        "kubernetes": (
            "error",
            "refused: every action uses the workspace's kubeconfig (one workspace = one cluster)",
        ),
        "ansible": (
            "error",
            "refused: the inventory comes from inventory / inventory.from (Polycrate's current "
            "model); remove this key",
        ),
        "metadata": _HARMLESS,
    },
    "WorkflowStep": {
        "script": (
            "error",
            "refused: a workflow step runs an action of a block (block: NAME, action: ACTION); "
            "move the script into an action",
        ),
        "allow_failure": ("warning", "ignored: a failed step stops the workflow"),
    },
}
