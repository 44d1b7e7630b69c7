"""A workspace read through a :class:`~controller.tree.Tree`: ``workspace.poly``, every local
block under ``blocks/``, resolved into one :class:`Workspace` (or every problem, located).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.errors import Problem, WorkspaceError
from controller.tree import Tree, read_text
from controller.workspace.checking import has_errors, parse_model
from controller.workspace.files import (
    BLOCK_FILE,
    WORKSPACE_FILE,
    parse_workspace,
    read_workspace_doc,
)
from controller.workspace.models import BlockFile, WorkspaceFile
from controller.workspace.resolve import LocalBlock, ResolvedBlock, resolve_blocks
from controller.workspace.rules import (
    block_file_rules,
    block_rules,
    workflow_rules,
    workspace_rules,
)

BLOCKS_ROOT = "blocks/"


@dataclass(frozen=True)
class Workspace:
    """A parsed and resolved workspace: its file, its blocks in order, its local blocks."""

    file: WorkspaceFile
    blocks: tuple[ResolvedBlock, ...]
    local: Mapping[str, LocalBlock] = field(default_factory=dict)
    digests: Mapping[str, str] = field(default_factory=dict)
    """Content hash of each local block folder (by folder)."""

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def organization(self) -> str:
        return self.file.organization

    def block(self, name: str) -> ResolvedBlock | None:
        """The resolved instance called ``name``."""
        return next((b for b in self.blocks if b.name == name), None)


def folder_digest(tree: Tree, folder: str, files: list[str] | None = None) -> str:
    """sha256 over every file (path and content) under ``folder``: changes when its code does.
    ``files`` is the tree's file list when the caller has it already."""
    digest = hashlib.sha256()
    prefix = folder.rstrip("/") + "/"
    for path in tree.files() if files is None else files:
        if path.startswith(prefix):
            data = tree.read_bytes(path) or b""
            digest.update(f"{path[len(prefix) :]}\0{len(data)}\0".encode())
            digest.update(data)
    return "sha256:" + digest.hexdigest()


def discover_blocks(
    tree: Tree,
) -> tuple[dict[str, LocalBlock], dict[str, str | None], list[Problem]]:
    """Every valid ``blocks/**/block.poly`` of the tree by block name, every block folder
    with the name it declares (``None``: invalid), and their problems."""
    found: dict[str, LocalBlock] = {}
    folders: dict[str, str | None] = {}
    problems: list[Problem] = []
    files = tree.files()
    for path in files:
        if not (path.startswith(BLOCKS_ROOT) and path.endswith("/" + BLOCK_FILE)):
            continue
        folder = path.removesuffix("/" + BLOCK_FILE)
        block, doc, found_problems = parse_model(
            read_text(tree, path) or "", path, BlockFile, (("actions", "action"),)
        )
        if block is not None and doc is not None:
            found_problems += block_file_rules(block, path, doc.line_of)
        problems += found_problems
        folders[folder] = None if block is None or has_errors(found_problems) else block.name
        if block is None or has_errors(found_problems):
            continue
        if block.name in found:
            problems.append(
                Problem(
                    path,
                    None,
                    f"block name {block.name!r} is also used by "
                    f"{found[block.name].dir}/{BLOCK_FILE}; block names must be unique",
                )
            )
            continue
        if folder != BLOCKS_ROOT + block.name:
            problems.append(
                Problem(
                    path,
                    None,
                    f"block {block.name!r} lives in {folder}/; by Polycrate's convention its "
                    f"folder is {BLOCKS_ROOT}{block.name}/ (it is found by its name either way)",
                    severity="warning",
                )
            )
        digest = folder_digest(tree, folder, files)
        found[block.name] = LocalBlock(block.name, folder, block, digest)
    return found, folders, problems


def check_tree(tree: Tree) -> tuple[Workspace | None, list[Problem]]:
    """The resolved workspace (``None`` when anything is an error) and every problem found."""
    text = read_text(tree, WORKSPACE_FILE)
    local, folders, problems = discover_blocks(tree)
    if text is None:
        problems.append(
            Problem(WORKSPACE_FILE, None, "file not found; a workspace needs a workspace.poly")
        )
        return None, problems
    ws, doc, found = read_workspace_doc(text)
    problems += found
    if ws is None or doc is None:
        return None, problems
    problems += workspace_rules(ws, doc.line_of)
    blocks, found = resolve_blocks(ws, local, doc.line_of, folders)
    problems += found
    files = set(tree.files())
    problems += block_rules(blocks, ws, doc.line_of, files.__contains__)
    problems += workflow_rules(ws, blocks, doc.line_of)
    if has_errors(problems):
        return None, problems
    return Workspace(ws, blocks, local, {b.dir: b.digest for b in local.values()}), problems


def read_workspace(tree: Tree) -> Workspace:
    """The resolved workspace, or :class:`WorkspaceError` listing every error."""
    ws, problems = check_tree(tree)
    if ws is None:
        raise WorkspaceError([p for p in problems if p.severity == "error"])
    return ws


def load_workspace(tree: Tree) -> WorkspaceFile:
    """Read and parse ``workspace.poly`` (only) from a workspace tree."""
    text = read_text(tree, WORKSPACE_FILE)
    if text is None:
        raise WorkspaceError(
            [Problem(WORKSPACE_FILE, None, "file not found; a workspace needs a workspace.poly")]
        )
    return parse_workspace(text)


def resolve_file(ws: WorkspaceFile) -> Workspace:
    """A workspace with no local blocks (registry and inline blocks only), resolved."""
    blocks, problems = resolve_blocks(ws, {})
    if problems:
        raise WorkspaceError(problems)
    return Workspace(ws, blocks)
