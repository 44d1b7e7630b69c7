"""``diff NAME [PATH]``: what would run if the operator reconciled a Workspace now.

The applied side is the Workspace's own ``status.blocks`` (pins, digests, config hashes as
applied); the other side is the Git head of ``spec.source`` (fetched as the operator would,
into this machine's cache) or a local checkout's commit. The answer is ``plan``'s table, with
its exit codes: 0 nothing would run, 2 something would, 1 an error.

Two limits, said in the output rather than guessed: registry tags are not resolved (a tag
pushed again with new content shows only once the operator resolves it), and a block whose
config includes ``secrets.poly`` values cannot be compared without the decryption key.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from controller.cli import views
from controller.cli.workspaces import add_kube_flags, add_output_flag, existing, with_kube
from controller.errors import CratekeeperError

if TYPE_CHECKING:
    from controller.kube import Kube


def _cmd_diff(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from controller.api.spec import WorkspaceSpec
    from controller.plan import Plan, plan
    from controller.report import format_plan, plan_document
    from controller.settings import load_settings
    from controller.source import fetch, local_revision
    from controller.source.spec import git_ref
    from controller.status import applied_blocks
    from controller.workspace import read_workspace

    async def get(kube: Kube, namespace: str) -> tuple[dict[str, object], dict[str, object]]:
        ws = await existing(kube, namespace, args.name)
        return dict(ws.spec), dict(ws.status)

    raw_spec, raw_status = with_kube(args, get)
    try:
        spec = WorkspaceSpec.model_validate(raw_spec)
    except ValidationError as exc:
        raise CratekeeperError(
            f"Workspace {args.name}: invalid spec ({exc.error_count()} errors)"
        ) from None
    from controller.api.status import salvage_status

    status = salvage_status(raw_status).status
    if args.path:
        revision = local_revision(Path(args.path), args.rev, spec.source.path)
    else:
        cache = load_settings().cache_dir / "git" / "diff"
        revision = fetch(spec.source.url, git_ref(spec), cache, subpath=spec.source.path)
    head = read_workspace(revision.tree)
    applied = applied_blocks(status)
    full = plan(head, applied, action=spec.action)
    # A hash keyed by the decrypted kubeconfig cannot be recomputed here: not a change.
    keyed = {a.name for a in applied if a.config_hash.startswith("hmac-")}
    unsure = [r.block for r in full.runs if r.reason == "config" and r.block in keyed]
    result = Plan(tuple(r for r in full.runs if r.block not in unsure), full.removed)
    doc = plan_document(head.name, status.last_applied_revision or "", revision.sha, result)
    doc["uncompared"] = unsure
    if args.output == "text":
        print(format_plan(doc))
        if unsure:
            print(f"not compared (secret config): {', '.join(unsure)}")
    else:
        print(views.dumps(doc, args.output) if args.output == "yaml" else json.dumps(doc, indent=2))
    return 2 if result.runs or result.removed else 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register diff."""
    p = sub.add_parser(
        "diff",
        help="what would run between a Workspace's applied revision and its Git head (or PATH)",
        epilog="example: cratekeeper diff acme-production-1 ./acme-production-1 "
        "(exit 0: nothing would run, 2: something would, 1: error)",
    )
    p.add_argument("name", metavar="NAME", help="the Workspace")
    p.add_argument(
        "path", metavar="PATH", nargs="?", help="a local checkout instead of the Git head"
    )
    p.add_argument("--rev", default="HEAD", help="the checkout's revision (default: HEAD)")
    add_kube_flags(p)
    add_output_flag(p)
    p.set_defaults(func=_cmd_diff)
