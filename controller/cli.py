"""The ``cratekeeper`` command: thin argument parsing over the modules below it."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from controller import __version__
from controller.api.status import WorkspaceStatus
from controller.errors import CratekeeperError, Problem, WorkspaceError
from controller.pipeline import PipelineContext, reconcile
from controller.plan import Plan, applied_from, plan
from controller.refs import BlockRef
from controller.registry import RegistryClient, RegistryOptions, pull_block, push_block
from controller.runners.local import LocalRunner
from controller.secrets import AgeKeys, find_kubeconfig
from controller.settings import Settings
from controller.source import GitRef, Revision, fetch, local_revision
from controller.status import record
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


def _settings(args: argparse.Namespace) -> Settings:
    """Environment settings with the command's flags mapped on top."""
    settings = Settings()
    update: dict[str, object] = {}
    if getattr(args, "insecure_registry", None):
        update["insecure_registries"] = [*settings.insecure_registries, *args.insecure_registry]
    if getattr(args, "age_identity_file", None):
        update["age_identity_file"] = Path(args.age_identity_file)
    return settings.model_copy(update=update)


def _registry(args: argparse.Namespace, settings: Settings) -> RegistryClient:
    config = Path(args.docker_config) if getattr(args, "docker_config", None) else None
    return RegistryClient(RegistryOptions.from_settings(settings, docker_config=config))


def _cmd_push(args: argparse.Namespace) -> int:
    settings = _settings(args)
    ref = BlockRef.parse(args.ref)
    digest = push_block(Path(args.dir), ref, client=_registry(args, settings))
    print(f"pushed {ref.name}:{ref.tag}@{digest}")
    return 0


def _cmd_pull(args: argparse.Namespace) -> int:
    settings = _settings(args)
    pulled = pull_block(BlockRef.parse(args.ref), Path(args.dest), client=_registry(args, settings))
    print(f"pulled {pulled.ref} into {pulled.path}")
    return 0


_SHA = re.compile(r"^[0-9a-f]{40}$")


def _git_ref(text: str) -> GitRef:
    if _SHA.match(text):
        return GitRef.commit(text)
    if text.startswith("refs/tags/"):
        return GitRef.tag(text.removeprefix("refs/tags/"))
    return GitRef.branch(text.removeprefix("refs/heads/"))


def _revision(args: argparse.Namespace, settings: Settings, state: WorkspaceStatus) -> Revision:
    if Path(args.source).is_dir():
        return local_revision(Path(args.source), args.ref or "HEAD", args.subpath)
    return fetch(
        args.source,
        _git_ref(args.ref or "main"),
        settings.cache_dir / "git",
        subpath=args.subpath,
        previous=state.last_applied_revision,
    )


def _load_state(path: Path) -> WorkspaceStatus:
    if not path.exists():
        return WorkspaceStatus()
    try:
        return WorkspaceStatus.model_validate_json(path.read_text())
    except ValueError as exc:
        raise WorkspaceError(
            [Problem(str(path), None, f"not a cratekeeper state file ({exc.__class__.__name__})")]
        ) from None


def _save_state(path: Path, state: WorkspaceStatus) -> None:
    """Write atomically: a crash mid-write never leaves half a state file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state.dump(), indent=2) + "\n")
    tmp.replace(path)


def _cmd_reconcile(args: argparse.Namespace) -> int:
    settings = _settings(args)
    state_path = Path(args.state)
    state = _load_state(state_path)
    start = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - start:6.1f}s] {message}", flush=True)

    revision = _revision(args, settings, state)
    progress(f"revision {revision.sha[:12]} {revision.subject!r} by {revision.author}")
    ctx = PipelineContext(
        runner=LocalRunner(),
        registry=_registry(args, settings),
        keys=AgeKeys.from_sources(settings.age_identity_file, settings.age_identity),
        action=args.action,
        timeout=args.timeout,
        on_output=(lambda line: print(f"         | {line}", flush=True)) if args.verbose else None,
    )
    outcome = asyncio.run(reconcile(revision, state, ctx, progress))
    _save_state(state_path, record(state, outcome))
    if outcome.up_to_date or outcome.succeeded:
        progress(f"applied {revision.sha[:12]}; state in {state_path}")
        return 0
    reason = outcome.error.reason if outcome.error else "RunFailed"
    print(f"error: {reason}: revision {revision.sha[:12]} was not applied", file=sys.stderr)
    if outcome.error:
        print(f"error: {outcome.error}", file=sys.stderr)
    return 1


def _add_registry_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--docker-config", help="docker config JSON with registry credentials")
    p.add_argument(
        "--insecure-registry",
        action="append",
        metavar="HOST[:PORT]",
        help="allow plain HTTP for this registry (repeatable; CRATEKEEPER_INSECURE_REGISTRIES)",
    )


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

    p = sub.add_parser("reconcile", help="one pass of the pipeline for one workspace")
    p.add_argument("source", metavar="PATH_OR_URL", help="a local Git checkout or a Git URL")
    p.add_argument("--ref", help="revision (local) or branch/refs/tags/X/SHA (URL)")
    p.add_argument("--path", dest="subpath", default="", help="workspace folder in the repo")
    p.add_argument("--runner", choices=("local",), default="local", help="where actions run")
    p.add_argument("--state", default="cratekeeper-state.json", help="the applied-state file")
    p.add_argument("--action", default="deploy", help="the action each changed block runs")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per action run")
    p.add_argument("--age-identity-file", help="age identity for *.age files")
    p.add_argument("-v", "--verbose", action="store_true", help="stream the Ansible output")
    _add_registry_flags(p)
    p.set_defaults(func=_cmd_reconcile)

    blocks = sub.add_parser("blocks", help="push and pull blocks").add_subparsers(
        dest="blocks_command", required=True
    )
    p = blocks.add_parser("push", help="push a block folder as REF")
    p.add_argument("dir", help="the block folder (holding block.poly)")
    p.add_argument("ref", help="registry/path:version, matching block.poly")
    _add_registry_flags(p)
    p.set_defaults(func=_cmd_push)
    p = blocks.add_parser("pull", help="pull REF into DEST/blocks/<registry-path>/")
    p.add_argument("ref")
    p.add_argument("dest", nargs="?", default=".", help="the workspace root (default: .)")
    _add_registry_flags(p)
    p.set_defaults(func=_cmd_pull)
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
