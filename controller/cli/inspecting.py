"""``validate``, ``plan`` and ``promotions``: read-only looks at workspaces."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from controller.cli.flags import add_registry_flags
from controller.cli.state import load_state
from controller.errors import CratekeeperError, Problem, WorkspaceError
from controller.plan import applied_from, plan
from controller.refs import is_downgrade
from controller.report import (
    format_plan,
    format_promotions,
    format_status,
    plan_document,
    promotion_matrix,
)
from controller.source import local_revision
from controller.tree import DirectoryTree, read_text
from controller.validate import validate_tree
from controller.workspace import WORKSPACE_FILE, Workspace, read_workspace


def relative(root: Path, file: str) -> str:
    """``file`` (relative to the workspace ``root``) as a path from where the command runs, so
    editors and CI annotations can open it."""
    path = root / file
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return str(path)


def _cmd_validate(args: argparse.Namespace) -> int:
    root = Path(args.path)
    if not root.is_dir():
        print(f"error: {root} is not a directory; give the workspace's folder", file=sys.stderr)
        return 2
    problems = [replace(p, file=relative(root, p.file)) for p in validate_tree(DirectoryTree(root))]
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    if args.output == "json":
        doc = {
            "path": str(root),
            "valid": not errors,
            "errors": errors,
            "warnings": warnings,
            "problems": [
                {"file": p.file, "line": p.line, "severity": p.severity, "message": p.message}
                for p in problems
            ],
        }
        print(json.dumps(doc, indent=2))
        return 1 if errors else 0
    for problem in problems:
        print(problem)
    if errors:
        print(f"{root}: {errors} error(s), {warnings} warning(s)", file=sys.stderr)
        return 1
    print(f"{root}: valid ({warnings} warning(s))")
    return 0


def _load_at(
    repo: Path, rev: str, subpath: str, *, missing_ok: bool
) -> tuple[str, Workspace | None]:
    """The commit ``rev`` resolves to and its resolved workspace (``None`` if absent and
    allowed)."""
    revision = local_revision(repo, rev, subpath)
    text = read_text(revision.tree, WORKSPACE_FILE)
    if text is None:
        if missing_ok:
            return revision.sha, None
        raise WorkspaceError(
            [Problem(WORKSPACE_FILE, None, f"not found at {rev} ({revision.sha[:12]})")]
        )
    try:
        return revision.sha, read_workspace(revision.tree)
    except WorkspaceError as exc:
        raise WorkspaceError(
            [
                Problem(p.file, p.line, f"at {rev} ({revision.sha[:12]}): {p.message}")
                for p in exc.problems
            ]
        ) from None


def _cmd_plan(args: argparse.Namespace) -> int:
    repo = Path(args.path)
    base_sha, base = _load_at(repo, args.base, args.subpath, missing_ok=True)
    head_sha, head = _load_at(repo, args.head, args.subpath, missing_ok=False)
    assert head is not None  # missing_ok=False raised otherwise
    if args.workflow and head.file.workflow(args.workflow) is None:
        known = ", ".join(w.name for w in head.file.workflows) or "none"
        raise CratekeeperError(f"workspace.poly has no workflow {args.workflow!r} (its: {known})")
    result = plan(
        head, applied_from(base) if base else [], action=args.action, workflow=args.workflow
    )
    doc = plan_document(head.name, base_sha, head_sha, result)
    checked = True
    if args.preview:  # pulls and runs check mode: only imported when asked for
        from controller.cli.preview import format_preview, run_preview

        doc["preview"], checked = run_preview(args, result)
    if args.output == "json":
        print(json.dumps(doc, indent=2))
    else:
        print(format_plan(doc))
        if args.preview:
            print(format_preview(doc["preview"]))
    if not checked:
        return 1
    if args.exit_code:
        return 2 if doc["runs"] or doc["removed"] else 0
    return 0


def promotion_document(
    matrix: dict[str, dict[str, str | None]], names: list[str]
) -> dict[str, dict[str, object]]:
    """``promotions --output json``: per block, each workspace's version, whether they agree,
    and which workspaces are ahead (the highest version; empty when in sync or not
    comparable)."""
    doc: dict[str, dict[str, object]] = {}
    for block, row in matrix.items():
        versions = {n: row.get(n) for n in names}
        pinned = {n: v for n, v in versions.items() if v is not None and "," not in v}
        in_sync = len(set(versions.values())) == 1
        ahead: list[str] = []
        if not in_sync and pinned:
            top = None
            for version in pinned.values():
                if top is None or is_downgrade(version, top):
                    top = version
            ahead = [n for n, v in pinned.items() if v == top]
            if len(ahead) == len(versions):
                ahead = []
        doc[block] = {"versions": versions, "inSync": in_sync, "ahead": ahead}
    return doc


def _cmd_promotions(args: argparse.Namespace) -> int:
    workspaces = [read_workspace(DirectoryTree(Path(p))) for p in args.paths]
    matrix = promotion_matrix(workspaces)
    names = [ws.name for ws in workspaces]
    if args.output == "json":
        print(json.dumps(promotion_document(matrix, names), indent=2))
    else:
        print(format_promotions(matrix, names))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    path = Path(args.state)
    if not path.is_file():
        raise CratekeeperError(
            f"no state file at {path}: run `cratekeeper reconcile --state {path}` first "
            "(for the operator's workspaces: kubectl get workspaces)"
        )
    status = load_state(path)
    if args.output == "json":
        print(json.dumps(status.dump(), indent=2))
    else:
        print(format_status(status, args.history))
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register validate, plan and promotions."""
    p = sub.add_parser(
        "validate",
        help="check a workspace (or block) folder and print every problem",
        epilog="example: cratekeeper validate examples/acme-staging-1 --output json",
    )
    p.add_argument("path", help="the workspace folder (workspace.poly) or a block (block.poly)")
    p.add_argument(
        "--output", choices=("text", "json"), default="text", help="text, or json for CI"
    )
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser(
        "plan",
        help="what would run between two revisions of a Git checkout",
        epilog="example: cratekeeper plan . --base origin/main --exit-code",
    )
    p.add_argument("path", help="a local Git checkout holding the workspace")
    p.add_argument("--base", required=True, help="the revision applied before (e.g. main)")
    p.add_argument("--head", default="HEAD", help="the revision to apply (default: HEAD)")
    p.add_argument("--path", dest="subpath", default="", help="workspace folder in the repo")
    p.add_argument("--action", default="deploy", help="the action each run performs")
    p.add_argument(
        "--workflow", default=None, help="run changed blocks in this workflow's order and actions"
    )
    p.add_argument("--output", choices=("text", "json"), default="text", help="text or json")
    p.add_argument(
        "--exit-code",
        action="store_true",
        help="exit 0 when nothing would run, 2 when something would, 1 on an error",
    )
    p.add_argument(
        "--preview",
        action="store_true",
        help="pull the changed blocks and run their action in check mode (--check --diff) "
        "against the workspace's cluster; print each block's diff and CHANGELOG.poly entries",
    )
    p.add_argument("--age-identity-file", help="age identity for *.age files (--preview)")
    add_registry_flags(p)
    p.set_defaults(func=_cmd_plan)

    p = sub.add_parser(
        "promotions",
        help="each block's pinned version across workspaces",
        epilog="example: cratekeeper promotions acme-staging-1 acme-production-1 --output json",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="workspace folders, in order")
    p.add_argument(
        "--output",
        choices=("text", "json"),
        default="text",
        help="text, or json (versions, inSync, ahead per block)",
    )
    p.set_defaults(func=_cmd_promotions)

    p = sub.add_parser(
        "status",
        help="where a workspace applied by `reconcile` stands",
        epilog="example: cratekeeper status --state cratekeeper-state.json --history 10",
    )
    p.add_argument("--state", default="cratekeeper-state.json", help="the reconcile state file")
    p.add_argument("--history", type=int, default=5, help="history entries shown")
    p.add_argument("--output", choices=("text", "json"), default="text", help="text or json")
    p.set_defaults(func=_cmd_status)
