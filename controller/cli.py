"""The ``cratekeeper`` command: thin argument parsing over the modules below it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from controller import __version__
from controller.errors import CratekeeperError, Problem, WorkspaceError
from controller.plan import Plan, applied_from, plan
from controller.secrets import find_kubeconfig
from controller.source import local_revision
from controller.tree import DirectoryTree, Tree, read_text
from controller.workspace import (
    BLOCK_FILE,
    WORKSPACE_FILE,
    WorkspaceFile,
    check_block,
    check_workspace,
    parse_workspace,
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


def _cmd_validate(args: argparse.Namespace) -> int:
    root = Path(args.path)
    if not root.is_dir():
        print(f"error: {root} is not a directory; give the workspace's folder", file=sys.stderr)
        return 2
    problems = validate_tree(DirectoryTree(root))
    for problem in problems:
        print(problem)
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    if errors:
        print(f"{root}: {errors} error(s), {warnings} warning(s)", file=sys.stderr)
        return 1
    print(f"{root}: valid ({warnings} warning(s))")
    return 0


def _load_at(
    repo: Path, rev: str, subpath: str, *, missing_ok: bool
) -> tuple[str, WorkspaceFile | None]:
    """The commit ``rev`` resolves to and its parsed workspace (``None`` if absent and allowed)."""
    revision = local_revision(repo, rev, subpath)
    text = read_text(revision.tree, WORKSPACE_FILE)
    if text is None:
        if missing_ok:
            return revision.sha, None
        raise WorkspaceError(
            [Problem(WORKSPACE_FILE, None, f"not found at {rev} ({revision.sha[:12]})")]
        )
    try:
        return revision.sha, parse_workspace(text)
    except WorkspaceError as exc:
        raise WorkspaceError(
            [
                Problem(p.file, p.line, f"at {rev} ({revision.sha[:12]}): {p.message}")
                for p in exc.problems
            ]
        ) from None


def plan_document(name: str, base: str, head: str, result: Plan) -> dict[str, Any]:
    """The JSON shape of ``cratekeeper plan --output json`` (stable, for PR checks)."""
    return {
        "workspace": name,
        "base": base,
        "head": head,
        "runs": [
            {
                "block": r.block,
                "action": r.action,
                "from": r.from_,
                "to": r.to,
                "reason": r.reason,
                "rollback": r.rollback,
            }
            for r in result.runs
        ],
        "removed": [a.name for a in result.removed],
    }


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def format_plan(doc: dict[str, Any]) -> str:
    """A readable table of a plan document."""
    lines = [f"workspace {doc['workspace']}: {doc['base'][:7]} -> {doc['head'][:7]}"]
    if not doc["runs"] and not doc["removed"]:
        lines.append("nothing to run: every block is up to date")
    if doc["runs"]:
        rows = [["BLOCK", "ACTION", "FROM", "TO", "REASON", "ROLLBACK"]]
        rows += [
            [
                r["block"],
                r["action"],
                r["from"] or "-",
                r["to"],
                r["reason"],
                "yes" if r["rollback"] else "no",
            ]
            for r in doc["runs"]
        ]
        lines.append(_table(rows))
    if doc["removed"]:
        lines.append("removed: " + ", ".join(doc["removed"]))
    return "\n".join(lines)


def _cmd_plan(args: argparse.Namespace) -> int:
    repo = Path(args.path)
    base_sha, base = _load_at(repo, args.base, args.subpath, missing_ok=True)
    head_sha, head = _load_at(repo, args.head, args.subpath, missing_ok=False)
    assert head is not None  # missing_ok=False raised otherwise
    result = plan(head, applied_from(base) if base else [], action=args.action)
    doc = plan_document(head.name, base_sha, head_sha, result)
    if args.output == "json":
        print(json.dumps(doc, indent=2))
    else:
        print(format_plan(doc))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cratekeeper",
        description="GitOps reconciliation of Polycrate workspaces: one Git repo per cluster.",
    )
    parser.add_argument("--version", action="version", version=f"cratekeeper {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "validate", help="check a workspace (or block) folder and print every problem"
    )
    p.add_argument("path", help="the workspace folder (workspace.poly) or a block (block.poly)")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("plan", help="what would run between two revisions of a Git checkout")
    p.add_argument("path", help="a local Git checkout holding the workspace")
    p.add_argument("--base", required=True, help="the revision applied before (e.g. main)")
    p.add_argument("--head", default="HEAD", help="the revision to apply (default: HEAD)")
    p.add_argument("--path", dest="subpath", default="", help="workspace folder in the repo")
    p.add_argument("--action", default="deploy", help="the action each run performs")
    p.add_argument("--output", choices=("text", "json"), default="text")
    p.set_defaults(func=_cmd_plan)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cratekeeper`` console script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except CratekeeperError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
