"""The files of a workspace at one commit, read straight from the Git object database.

:class:`GitTree` needs no checkout: it lists and reads blobs, and exports a working directory
through a throw-away index when a tool needs real files.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from controller.errors import SourceError
from controller.source import gitcmd

__all__ = ["GitTree"]


@dataclass(frozen=True)
class GitTree:
    """The files of a workspace at one commit, read from the Git object database (no checkout).

    Implements :class:`controller.tree.Tree`, rooted at ``subpath`` inside the repository.
    """

    git_dir: Path
    commit: str
    subpath: str = ""
    _entries: dict[str, str] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )
    _sizes: dict[str, int] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    @property
    def _treeish(self) -> str:
        """The tree of the sub-path at the commit, as Git spells it."""
        return f"{self.commit}:{self.subpath}" if self.subpath else f"{self.commit}^{{tree}}"

    def _index(self) -> dict[str, str]:
        """Path → blob id of the regular files, listed once and kept."""
        if not self._entries:
            out = gitcmd.git(
                ["ls-tree", "-r", "-z", "-l", "--full-tree", self._treeish], git_dir=self.git_dir
            )
            for record in out.split(b"\0"):
                if not record:
                    continue
                meta, _, path = record.partition(b"\t")
                mode, kind, oid, size = meta.decode().split()
                # Regular files only: symlinks could point outside the workspace, and
                # submodules are not part of this repository's objects.
                if kind == "blob" and mode in ("100644", "100755"):
                    name = path.decode("utf-8", errors="surrogateescape")
                    self._entries[name] = oid
                    self._sizes[name] = int(size)
        return self._entries

    def read_bytes(self, relpath: str) -> bytes | None:
        """The file's content at this commit, or ``None`` when there is no such file."""
        oid = self._index().get(PurePosixPath(relpath).as_posix())
        if oid is None:
            return None
        return gitcmd.git(["cat-file", "blob", oid], git_dir=self.git_dir)

    def read_many(self, relpaths: Iterable[str], max_size: int | None = None) -> dict[str, bytes]:
        """The content of each of ``relpaths`` that is a file at this commit (of at most
        ``max_size`` bytes, if given), read through one ``git cat-file --batch`` process
        (:meth:`read_bytes` costs one process per file)."""
        index = self._index()
        paths = (PurePosixPath(r).as_posix() for r in relpaths)
        wanted = {
            p: index[p]
            for p in paths
            if p in index and (max_size is None or self._sizes[p] <= max_size)
        }
        oids = list(dict.fromkeys(wanted.values()))
        if not oids:
            return {}
        out = gitcmd.git(
            ["cat-file", "--batch"],
            git_dir=self.git_dir,
            stdin="".join(f"{o}\n" for o in oids).encode(),
        )
        blobs: dict[str, bytes] = {}
        at = 0
        for oid in oids:  # each: "<oid> <type> <size>\n", the content, "\n"
            end = out.index(b"\n", at)
            name, kind, size = out[at:end].decode().split()
            if name != oid or kind != "blob":
                raise SourceError(f"git cat-file --batch answered {name} {kind} for {oid}")
            start = end + 1
            blobs[oid] = out[start : start + int(size)]
            at = start + int(size) + 1
        return {path: blobs[oid] for path, oid in wanted.items()}

    def files(self) -> list[str]:
        """Every regular file path relative to the workspace root, sorted."""
        return sorted(self._index())

    def export(self, dest: Path) -> None:
        """Write the workspace at this commit into ``dest`` (created if missing).

        Ansible needs a real working directory; this materialises one from the object database
        through a throw-away index, leaving the cache untouched.
        """
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="cratekeeper-index-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            gitcmd.git(["read-tree", self._treeish], git_dir=self.git_dir, extra_env=env)
            gitcmd.git(
                ["--work-tree", str(dest.resolve()), "checkout-index", "--all", "--force"],
                git_dir=self.git_dir,
                extra_env=env,
            )
