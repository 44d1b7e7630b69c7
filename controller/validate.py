"""Validation of a workspace or block folder: every problem, located (reads through a Tree)."""

from __future__ import annotations

from controller.errors import CratekeeperError, Problem
from controller.secrets import find_kubeconfig
from controller.tree import Tree, read_text
from controller.workspace import BLOCK_FILE, WORKSPACE_FILE, check_block, check_workspace


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
    if text is None:
        problems = [Problem(WORKSPACE_FILE, None, "file not found; a workspace needs one")]
    else:
        problems = check_workspace(text)[1]
    for path in tree.files():
        if path.startswith("blocks/") and path.endswith("/" + BLOCK_FILE):
            problems += validate_block_tree(tree, path.removesuffix(BLOCK_FILE))
    try:
        find_kubeconfig(tree)
    except CratekeeperError as exc:
        problems.append(Problem("artifacts/secrets", None, exc.message))
    return problems
