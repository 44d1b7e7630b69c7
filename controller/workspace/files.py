"""Parsing ``workspace.poly``, ``block.poly`` and ``secrets.poly`` text into their models,
every problem located by file and line (pure).

``secrets.poly`` has the shape of ``workspace.poly`` (``blocks: [{name, config}]`` and an
optional top-level ``config``); its problems never quote a value of the file, only keys and
block names, because its values are secrets. Reading it (and decrypting ``secrets.poly.age``)
is :mod:`controller.secrets`' job.
"""

from __future__ import annotations

from collections.abc import Collection

from controller.errors import BlockError, Problem, WorkspaceError
from controller.refs import BlockRef
from controller.workspace.checking import Check, has_errors, parse_model
from controller.workspace.models import BlockFile, SecretsFile, WorkspaceFile
from controller.yamldoc import YamlDoc

WORKSPACE_FILE = "workspace.poly"
SECRETS_FILE = "secrets.poly"
BLOCK_FILE = "block.poly"


def _known_blocks(names: Collection[str], workspace_file: str) -> Check:
    """Every ``blocks[].name`` of ``secrets.poly`` must be an instance of ``workspace.poly``."""

    def check(doc: YamlDoc) -> list[Problem]:
        items = doc.value.get("blocks")
        if not isinstance(items, list):
            return []
        problems = []
        for i, item in enumerate(items):
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str) and name not in names:
                problems.append(
                    Problem(
                        doc.file,
                        doc.line_of(("blocks", i, "name")),
                        f"blocks[{i}].name: block {name!r} is not in {workspace_file}; "
                        f"secrets may only configure the workspace's block instances "
                        f"({', '.join(sorted(names)) or 'none'}): fix the name or remove the entry",
                    )
                )
        return problems

    return check


def read_workspace_doc(
    text: str, file: str = WORKSPACE_FILE
) -> tuple[WorkspaceFile | None, YamlDoc | None, list[Problem]]:
    """``workspace.poly``: the model (``None`` when it does not validate; it may come with
    errors of refused keys), its document (for lines) and every problem of the file."""
    return parse_model(
        text,
        file,
        WorkspaceFile,
        (("blocks", "block instance"), ("workflows", "workflow")),
    )


def check_workspace(
    text: str, file: str = WORKSPACE_FILE
) -> tuple[WorkspaceFile | None, list[Problem]]:
    """Parse ``workspace.poly``: the model (``None`` when invalid) and every problem found."""
    parsed, _, problems = read_workspace_doc(text, file)
    return (None if has_errors(problems) else parsed), problems


def check_block(text: str, file: str = BLOCK_FILE) -> tuple[BlockFile | None, list[Problem]]:
    """Parse ``block.poly``: the model (``None`` when invalid) and every problem found."""
    parsed, _, problems = parse_model(text, file, BlockFile, (("actions", "action"),))
    return (None if has_errors(problems) else parsed), problems


def check_secrets(
    text: str, file: str = SECRETS_FILE, workspace: WorkspaceFile | None = None
) -> tuple[SecretsFile | None, list[Problem]]:
    """Parse ``secrets.poly`` text: the model (``None`` when invalid) and every problem found.

    With ``workspace``, a block name it does not hold is an error. No message quotes a value.
    """
    check = _known_blocks([b.name for b in workspace.blocks], WORKSPACE_FILE) if workspace else None
    parsed, _, problems = parse_model(
        text, file, SecretsFile, (("blocks", "secret block"),), check=check, quote=False
    )
    return (None if has_errors(problems) else parsed), problems


def parse_secrets(
    text: str, file: str = SECRETS_FILE, workspace: WorkspaceFile | None = None
) -> SecretsFile:
    """Parse ``secrets.poly`` text or raise :class:`WorkspaceError` listing every error."""
    parsed, problems = check_secrets(text, file, workspace)
    if parsed is None:
        raise WorkspaceError([p for p in problems if p.severity == "error"])
    return parsed


def parse_workspace(text: str, file: str = WORKSPACE_FILE) -> WorkspaceFile:
    """Parse ``workspace.poly`` or raise :class:`WorkspaceError` listing every error."""
    parsed, problems = check_workspace(text, file)
    if parsed is None:
        raise WorkspaceError([p for p in problems if p.severity == "error"])
    return parsed


def parse_block(text: str, file: str = BLOCK_FILE) -> BlockFile:
    """Parse ``block.poly`` or raise :class:`BlockError` listing every error."""
    parsed, problems = check_block(text, file)
    if parsed is None:
        raise BlockError([p for p in problems if p.severity == "error"])
    return parsed


def block_dir(ref: BlockRef) -> str:
    """Where a pulled block lives in the workspace, as Polycrate lays it out."""
    return f"blocks/{ref.name}"
