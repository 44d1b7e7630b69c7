"""Validation of a workspace or block folder: every problem, located (reads through a Tree).

``secrets.poly`` is checked like ``workspace.poly``; ``secrets.poly.age`` cannot be read without
the controller's age identity, so for it only the one-file rule is checked here.
"""

from __future__ import annotations

from controller.errors import CratekeeperError, Problem, WorkspaceError
from controller.secrets import SECRETS_POLY, find_kubeconfig, find_secrets_poly
from controller.tree import Tree, read_text
from controller.workspace import (
    BLOCK_FILE,
    WORKSPACE_FILE,
    WorkspaceFile,
    check_block,
    check_secrets,
    check_workspace,
)


def validate_block_tree(tree: Tree, prefix: str = "") -> list[Problem]:
    """Every problem in a block folder: its block.poly and the playbooks its actions name."""
    file = prefix + BLOCK_FILE
    block, problems = check_block(read_text(tree, file) or "", file)
    for action in block.actions if block else []:
        if tree.read_bytes(prefix + action.playbook) is None:
            problems.append(
                Problem(
                    file,
                    None,
                    f"action {action.name!r}: playbook {action.playbook!r} does not exist "
                    "in the block folder",
                )
            )
    return problems


def validate_tree(tree: Tree) -> list[Problem]:
    """Every problem in a workspace (workspace.poly, local blocks, the kubeconfig rule), or in
    a block folder when there is a block.poly and no workspace.poly."""
    text = read_text(tree, WORKSPACE_FILE)
    if text is None and tree.read_bytes(BLOCK_FILE) is not None:
        return validate_block_tree(tree)
    ws: WorkspaceFile | None = None
    if text is None:
        problems = [Problem(WORKSPACE_FILE, None, "file not found; a workspace needs one")]
    else:
        ws, problems = check_workspace(text)
    problems += _secrets_problems(tree, ws)
    for path in tree.files():
        if path.startswith("blocks/") and path.endswith("/" + BLOCK_FILE):
            problems += validate_block_tree(tree, path.removesuffix(BLOCK_FILE))
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
