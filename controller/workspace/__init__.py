"""The Polycrate model: ``workspace.poly`` / ``block.poly`` / ``secrets.poly``, local, inline
and registry blocks resolved through their ``from:`` chains (DESIGN §2; pure, reads through a
:class:`~controller.tree.Tree`).

- :mod:`.models`: the file formats; :mod:`.files`: text → model with located problems;
- :mod:`.keys` and :mod:`.rules`: keys honoured, refused or ignored;
- :mod:`.resolve`: block resolution; :mod:`.loading`: a whole workspace from a tree;
- :mod:`.templates`: Polycrate's script templating; :mod:`.snapshot`: the runtime snapshot.
"""

from controller.workspace.files import (
    BLOCK_FILE,
    SECRETS_FILE,
    WORKSPACE_FILE,
    block_dir,
    check_block,
    check_secrets,
    check_workspace,
    parse_block,
    parse_secrets,
    parse_workspace,
)
from controller.workspace.loading import (
    Workspace,
    check_tree,
    load_workspace,
    read_workspace,
    resolve_file,
)
from controller.workspace.merge import deep_merge
from controller.workspace.models import (
    ActionSpec,
    BlockFile,
    BlockInstance,
    SecretBlock,
    SecretsFile,
    Workflow,
    WorkflowStep,
    WorkspaceFile,
)
from controller.workspace.resolve import LocalBlock, ResolvedBlock

__all__ = [
    "BLOCK_FILE",
    "SECRETS_FILE",
    "WORKSPACE_FILE",
    "ActionSpec",
    "BlockFile",
    "BlockInstance",
    "LocalBlock",
    "ResolvedBlock",
    "SecretBlock",
    "SecretsFile",
    "Workflow",
    "WorkflowStep",
    "Workspace",
    "WorkspaceFile",
    "block_dir",
    "check_block",
    "check_secrets",
    "check_tree",
    "check_workspace",
    "deep_merge",
    "load_workspace",
    "parse_block",
    "parse_secrets",
    "parse_workspace",
    "read_workspace",
    "resolve_file",
]
