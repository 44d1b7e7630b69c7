"""The checks of a resolved workspace beyond its files' shapes (pure): keys that change where
or what runs are honoured or refused here, with file, line and why (DESIGN §2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from controller.errors import InvalidReferenceError, Problem
from controller.refs import BlockRef
from controller.workspace.models import BlockFile, Workflow, WorkspaceFile
from controller.workspace.resolve import WORKSPACE_FILE, LineOf, ResolvedBlock
from controller.workspace.templates import template_problem

ONE_CLUSTER = (
    "one workspace = one cluster: every action gets the workspace's kubeconfig "
    "(artifacts/secrets/kubeconfig.yml); for another cluster, make another workspace"
)
PROMPT_NOTE = (
    "it does not run unattended unless the Workspace sets spec.allowPromptedActions: true "
    "(CLI: reconcile --allow-prompted-actions)"
)
_WORKSPACE_INVENTORY = ("", "inventory.yml", "/workspace/inventory.yml")


def _p(line_of: LineOf, path: Sequence[str | int], message: str, warn: bool = False) -> Problem:
    return Problem(WORKSPACE_FILE, line_of(path), message, "warning" if warn else "error")


def block_file_rules(block: BlockFile, file: str, line_of: LineOf) -> list[Problem]:
    """A block.poly's own keys that change the run: kubeconfig, inventory.path, from."""
    problems = []
    if block.kubeconfig.is_set:
        what = "kubeconfig.from" if block.kubeconfig.from_ else "kubeconfig"
        problems.append(Problem(file, line_of(("kubeconfig",)), f"{what}: refused: {ONE_CLUSTER}"))
    if block.inventory.path:
        problems.append(
            Problem(
                file,
                line_of(("inventory", "path")),
                "inventory.path: refused: give inventory.from (a block) and inventory.filename; "
                "paths outside the workspace do not exist in a run",
            )
        )
    if block.from_ and (":" in block.from_ or "." in block.from_.split("/")[0]):
        try:
            BlockRef.parse(block.from_)
        except InvalidReferenceError as exc:
            problems.append(Problem(file, line_of(("from",)), f"from: {exc}"))
    return problems


def workspace_rules(ws: WorkspaceFile, line_of: LineOf) -> list[Problem]:
    """Workspace-level keys: extramounts, kubeconfig, inventory, instance kubeconfig/inventory."""
    problems = []
    if ws.extramounts:
        problems.append(
            _p(
                line_of,
                ("extramounts",),
                "extramounts: refused: an action runs in a pod or container that sees the "
                "workspace only; host mounts are not available (put the files into the "
                "workspace repository)",
            )
        )
    if ws.kubeconfig.is_set:
        problems.append(_p(line_of, ("kubeconfig",), f"kubeconfig: refused: {ONE_CLUSTER}"))
    inv = ws.inventory
    if (
        inv.from_
        or inv.path not in _WORKSPACE_INVENTORY
        or inv.filename not in ("", "inventory.yml")
    ):
        problems.append(
            _p(
                line_of,
                ("inventory",),
                "inventory: refused: the workspace inventory is inventory.yml at the workspace "
                "root (Polycrate's default); a block takes another block's with inventory.from",
            )
        )
    names = {b.name for b in ws.blocks}
    for i, inst in enumerate(ws.blocks):
        if inst.kubeconfig.from_:
            problems.append(
                _p(
                    line_of,
                    ("blocks", i, "kubeconfig", "from"),
                    f"blocks[{i}].kubeconfig.from: refused: {inst.kubeconfig.from_!r} would "
                    f"point {inst.name!r} at another block's cluster; {ONE_CLUSTER}",
                )
            )
        elif inst.kubeconfig.is_set:
            problems.append(
                _p(
                    line_of,
                    ("blocks", i, "kubeconfig"),
                    f"blocks[{i}].kubeconfig: refused: {ONE_CLUSTER}",
                )
            )
        if inst.inventory.path:
            problems.append(
                _p(
                    line_of,
                    ("blocks", i, "inventory", "path"),
                    f"blocks[{i}].inventory.path: refused: give inventory.from (a block) and "
                    "inventory.filename; paths outside the workspace do not exist in a run",
                )
            )
        target = inst.inventory.from_
        if target and target not in names:
            problems.append(
                _p(
                    line_of,
                    ("blocks", i, "inventory", "from"),
                    f"blocks[{i}].inventory.from: {target!r} is not a block of this workspace "
                    f"({', '.join(sorted(names))}); name the block whose artifacts hold the "
                    "inventory",
                )
            )
    return problems


def block_rules(
    blocks: Sequence[ResolvedBlock],
    ws: WorkspaceFile,
    line_of: LineOf,
    exists: Callable[[str], bool],
) -> list[Problem]:
    """Resolved actions: playbooks that exist, script lines that can be rendered, prompts."""
    problems = []
    for block in blocks:
        i = next(n for n, b in enumerate(ws.blocks) if b.name == block.name)
        for action in block.actions:
            where = ("blocks", i, "name")
            label = f"block {block.name!r} action {action.name!r}"
            if action.playbook and block.source != "registry":
                path = f"{block.workdir}/{action.playbook}" if block.workdir else action.playbook
                if not exists(path):
                    problems.append(
                        _p(line_of, where, f"{label}: playbook {path!r} does not exist")
                    )
            if action.script:
                bad = template_problem(action.script)
                if bad:
                    problems.append(_p(line_of, where, f"{label}: script line {bad[0]}: {bad[1]}"))
            if action.prompted:
                problems.append(
                    _p(line_of, where, f"{label} has a prompt: {PROMPT_NOTE}", warn=True)
                )
            if action.interactive:
                problems.append(
                    _p(
                        line_of,
                        where,
                        f"{label} is interactive: it runs without a terminal or input",
                        warn=True,
                    )
                )
    return problems


def _prompted(workflow: Workflow) -> bool:
    return bool(workflow.prompt and workflow.prompt.message) or any(
        s.prompt and s.prompt.message for s in workflow.steps
    )


def workflow_rules(
    ws: WorkspaceFile, blocks: Sequence[ResolvedBlock], line_of: LineOf
) -> list[Problem]:
    """Every step names a block of the workspace and (when known before a pull) its action."""
    problems = []
    by_name = {b.name: b for b in blocks}
    names = sorted(b.name for b in ws.blocks)
    for w, workflow in enumerate(ws.workflows):
        if _prompted(workflow):
            problems.append(
                _p(
                    line_of,
                    ("workflows", w, "name"),
                    f"workflow {workflow.name!r} has a prompt: {PROMPT_NOTE}",
                    warn=True,
                )
            )
        if not workflow.steps:
            problems.append(
                _p(line_of, ("workflows", w), f"workflows[{w}] ({workflow.name!r}) has no steps")
            )
        for s, step in enumerate(workflow.steps):
            block = by_name.get(step.block)
            path = ("workflows", w, "steps", s)
            if step.block not in names:
                problems.append(
                    _p(
                        line_of,
                        (*path, "block"),
                        f"workflows[{w}].steps[{s}].block: {step.block!r} is not a block of "
                        f"this workspace ({', '.join(names) or 'none'})",
                    )
                )
            elif block and block.source != "registry" and block.action(step.action) is None:
                known = ", ".join(a.name for a in block.actions) or "none"
                problems.append(
                    _p(
                        line_of,
                        (*path, "action"),
                        f"workflows[{w}].steps[{s}].action: block {step.block!r} has no action "
                        f"{step.action!r} (its actions: {known})",
                    )
                )
    return problems
