"""``promote SOURCE_WS TARGET_WS``: pin the target workspace's blocks to the source's versions.

The target's ``workspace.poly`` is edited as text, at the line of each ``from:`` that changes,
so its config, comments and formatting stay exactly as they were (never re-dumped). With
``--commit`` the change is committed in the target's Git repository, with a message naming
the versions (the promotion commit of DESIGN §1; a rollback is its ``git revert``).
"""

from __future__ import annotations

import argparse
import subprocess
from dataclasses import dataclass
from pathlib import Path

from controller.errors import CratekeeperError, Problem, WorkspaceError
from controller.refs import BlockRef
from controller.tree import DirectoryTree
from controller.workspace import WORKSPACE_FILE, read_workspace
from controller.yamldoc import load_yaml


@dataclass(frozen=True)
class Promotion:
    """One instance of the target moved from ``old`` to ``new``."""

    block: str
    old: BlockRef
    new: BlockRef
    line: int

    def __str__(self) -> str:
        return f"{self.block} {self.old.tag} → {self.new.tag}"


def promote_text(
    text: str, pins: dict[str, BlockRef], only: set[str] | None = None
) -> tuple[str, list[Promotion]]:
    """``text`` (a workspace.poly) with each registry ``from:`` whose block (by registry path)
    ``pins`` holds set to that pin, only for instances or paths in ``only`` when given."""
    doc, problems = load_yaml(text, WORKSPACE_FILE)
    if doc is None:
        raise WorkspaceError(problems)
    blocks = doc.value.get("blocks") if isinstance(doc.value, dict) else None
    lines = text.splitlines(keepends=True)
    done: list[Promotion] = []
    for i, entry in enumerate(blocks if isinstance(blocks, list) else []):
        if not isinstance(entry, dict) or not isinstance(entry.get("from"), str):
            continue
        try:
            old = BlockRef.parse(entry["from"])
        except (ValueError, CratekeeperError):
            continue  # a local block: promoted with its Git commit, not a pin
        name = str(entry.get("name", ""))
        new = pins.get(old.name)
        if new is None or str(new) == str(old):
            continue
        if only is not None and not only & {name, old.name}:
            continue
        line = doc.line_of(("blocks", i, "from"))
        if line is None or str(old) not in lines[line - 1]:
            raise WorkspaceError(
                [Problem(WORKSPACE_FILE, line, f"cannot edit block {name!r}'s from: in place")]
            )
        lines[line - 1] = lines[line - 1].replace(str(old), str(new), 1)
        done.append(Promotion(name, old, new, line))
    return "".join(lines), done


def _pins(source: Path) -> dict[str, BlockRef]:
    """The registry pins of the source workspace, by registry path."""
    ws = read_workspace(DirectoryTree(source))
    return {b.ref.name: b.ref for b in ws.blocks if b.ref is not None}


def commit_message(target: str, source: str, done: list[Promotion]) -> str:
    """``promote app 1.1.0 → 1.2.0 to acme-production-1 (from acme-staging-1)``."""
    changes = ", ".join(str(p) for p in done)
    body = "\n".join(f"- {p.block}: {p.old} → {p.new}" for p in done)
    return f"promote {changes} to {target} (from {source})\n\n{body}\n"


def _commit(target: Path, message: str) -> str:
    """Commit workspace.poly in the target's repository (the person's own Git config)."""

    def git(*args: str) -> str:
        proc = subprocess.run(
            ["git", "-C", str(target), *args], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise CratekeeperError(f"git {args[0]} in {target} failed: {proc.stderr.strip()}")
        return proc.stdout.strip()

    git("add", "--", WORKSPACE_FILE)
    git("commit", "-q", "-m", message, "--", WORKSPACE_FILE)
    return git("rev-parse", "HEAD")


def _cmd_promote(args: argparse.Namespace) -> int:
    source, target = Path(args.source), Path(args.target)
    file = target / WORKSPACE_FILE
    if not file.is_file():
        raise CratekeeperError(f"{file}: not found; TARGET_WS is the target workspace's folder")
    text = file.read_text(encoding="utf-8")
    new_text, done = promote_text(text, _pins(source), set(args.block) if args.block else None)
    if not done:
        print(f"{file}: already pinned as {source} (nothing to promote)")
        return 0
    for p in done:
        print(f"{file}:{p.line}: {p}")
    file.write_text(new_text, encoding="utf-8")
    if args.commit:
        target_ws = read_workspace(DirectoryTree(target)).name
        source_ws = read_workspace(DirectoryTree(source)).name
        sha = _commit(target, commit_message(target_ws, source_ws, done))
        print(f"committed {sha[:12]}: promote {', '.join(str(p) for p in done)}")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register promote."""
    p = sub.add_parser(
        "promote",
        help="pin the target workspace's blocks to the source workspace's versions",
        epilog="example: cratekeeper promote acme-staging-1 acme-production-1 --block app --commit",
    )
    p.add_argument("source", metavar="SOURCE_WS", help="the workspace folder to promote from")
    p.add_argument("target", metavar="TARGET_WS", help="the workspace folder to edit")
    p.add_argument(
        "--block",
        action="append",
        help="only this block (instance name or registry path; repeatable)",
    )
    p.add_argument(
        "--commit", action="store_true", help="commit workspace.poly with the versions named"
    )
    p.set_defaults(func=_cmd_promote)
