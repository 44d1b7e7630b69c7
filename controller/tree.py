"""A read-only view of a workspace's files, wherever they live (a directory or a Git commit).

The parsers in :mod:`controller.workspace` read through this protocol, so the same validation
runs on a checkout on disk (``cratekeeper validate``) and on a commit inside a Git repository
(``cratekeeper plan``, the pipeline) without a checkout.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Protocol, runtime_checkable


class Tree(Protocol):
    """Files of one workspace, addressed by POSIX paths relative to the workspace root."""

    def read_bytes(self, relpath: str) -> bytes | None:
        """The file's content, or ``None`` when there is no such file."""

    def files(self) -> list[str]:
        """Every file path (not directories), relative to the workspace root, sorted."""


@runtime_checkable
class BatchTree(Protocol):
    """A tree that reads several files at once cheaper than one by one (a Git commit)."""

    def read_many(self, relpaths: Iterable[str], max_size: int | None = None) -> dict[str, bytes]:
        """The content of each of ``relpaths`` that is a file (of at most ``max_size`` bytes)."""
        ...


class DirectoryTree:
    """A workspace in a directory on disk."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read_bytes(self, relpath: str) -> bytes | None:
        path = self.root / PurePosixPath(relpath)
        if not path.is_file():
            return None
        return path.read_bytes()

    def files(self) -> list[str]:
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*")
            if p.is_file() and ".git" not in p.relative_to(self.root).parts
        )


def read_files(
    tree: Tree, relpaths: Iterable[str], max_size: int | None = None
) -> dict[str, bytes]:
    """The content of each of ``relpaths`` that is a file of at most ``max_size`` bytes (if
    given); all at once when the tree can."""
    if isinstance(tree, BatchTree):
        return tree.read_many(relpaths, max_size)
    found = ((p, tree.read_bytes(p)) for p in relpaths)
    return {
        p: data
        for p, data in found
        if data is not None and (max_size is None or len(data) <= max_size)
    }


def read_text(tree: Tree, relpath: str) -> str | None:
    """The file decoded as UTF-8 (``None`` when missing); undecodable bytes are replaced."""
    data = tree.read_bytes(relpath)
    return None if data is None else data.decode("utf-8", errors="replace")
