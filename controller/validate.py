"""Validation of a workspace or block folder: every problem, located (reads through a Tree).

A workspace is checked as the pipeline reads it (:func:`controller.workspace.check_tree`:
workspace.poly, every local block, ``from:`` chains, refused keys, workflows, script
templates) plus the kubeconfig rule and ``secrets.poly``; ``secrets.poly.age`` cannot be read
without the controller's age identity, so for it only the one-file rule is checked here.
"""

from __future__ import annotations

from controller.errors import CratekeeperError, Problem, WorkspaceError
from controller.secrets import SECRETS_POLY, find_kubeconfig, find_secrets_poly
from controller.tree import Tree, read_text
from controller.workspace import (
    BLOCK_FILE,
    WORKSPACE_FILE,
    BlockFile,
    WorkspaceFile,
    check_secrets,
    check_tree,
)
from controller.workspace.checking import parse_model
from controller.workspace.rules import block_file_rules
from controller.workspace.templates import template_problem


def validate_block_tree(tree: Tree, prefix: str = "") -> list[Problem]:
    """Every problem in a block folder: its block.poly, the playbooks its actions name and
    the templates of its script lines."""
    file = prefix + BLOCK_FILE
    block, doc, problems = parse_model(
        read_text(tree, file) or "", file, BlockFile, (("actions", "action"),)
    )
    if block is not None and doc is not None:
        problems += block_file_rules(block, file, doc.line_of)
    for action in block.actions if block else []:
        if action.playbook and tree.read_bytes(prefix + action.playbook) is None:
            problems.append(
                Problem(
                    file,
                    None,
                    f"action {action.name!r}: playbook {action.playbook!r} does not exist "
                    "in the block folder",
                )
            )
        bad = template_problem(action.script or [])
        if bad:
            problems.append(
                Problem(file, None, f"action {action.name!r}: script line {bad[0]}: {bad[1]}")
            )
    return problems


def validate_tree(tree: Tree) -> list[Problem]:
    """Every problem in a workspace (workspace.poly, local blocks, the kubeconfig rule), or in
    a block folder when there is a block.poly and no workspace.poly."""
    if read_text(tree, WORKSPACE_FILE) is None and tree.read_bytes(BLOCK_FILE) is not None:
        return validate_block_tree(tree)
    ws, problems = check_tree(tree)
    problems += _secrets_problems(tree, ws.file if ws else None)
    try:
        find_kubeconfig(tree)
    except CratekeeperError as exc:
        problems.append(Problem("artifacts/secrets", None, exc.message))
    return problems


def _secrets_problems(tree: Tree, ws: WorkspaceFile | None) -> list[Problem]:
    """secrets.poly's problems (block names checked when workspace.poly is valid)."""
    try:
        found = find_secrets_poly(tree)
    except WorkspaceError as exc:
        return list(exc.problems)
    if found != SECRETS_POLY:
        return []
    return check_secrets(read_text(tree, SECRETS_POLY) or "", SECRETS_POLY, ws)[1]
