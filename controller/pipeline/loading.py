"""What a reconcile reads besides ``workspace.poly``: ``secrets.poly``, and the kept artifacts
laid back into an export before any run (of the revision, or of a removed block's uninstall).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from controller.runners.artifacts import ArtifactStore, unpack
from controller.secrets import AgeKeys, read_secrets_poly
from controller.tree import Tree
from controller.workspace import SecretsFile, WorkspaceFile, parse_secrets

Progress = Callable[[str], None]


def load_secrets(tree: Tree, ws: WorkspaceFile, keys: AgeKeys) -> SecretsFile | None:
    """The workspace's secrets.poly (``secrets.poly.age`` decrypted in memory), if it has one."""
    found = read_secrets_poly(tree, keys)
    if found is None:
        return None
    file, text = found
    return parse_secrets(text, file, ws)


async def lay_back(store: ArtifactStore | None, root: Path, progress: Progress) -> None:
    """The Workspace's kept artifacts back into the export, before any run."""
    data = await store.load() if store is not None else None
    if data:
        files = await asyncio.to_thread(unpack, data, root)
        progress(f"laid back {len(files)} kept artifact file(s) under artifacts/blocks/")
