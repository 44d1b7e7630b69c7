"""``plan --preview``: the planned runs in Ansible check mode against the workspace's cluster.

The Ansible counterpart of tofu-controller's plan: each changed block is pulled and its action
runs with ``--check --diff`` (controller.drift.check_blocks) against the cluster of the
workspace's kubeconfig at the head revision, and the block's diff is printed with, for a
version change, the ``CHANGELOG.poly`` entries between the two versions when the block ships
one. Nothing is applied and no state is written.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from controller.changelog import between, parse_changelog
from controller.cli.configured import registry_for, runner_for, settings_for
from controller.drift import BlockDrift, check_blocks
from controller.pipeline import PipelineContext
from controller.plan import Plan
from controller.secrets import AgeKeys
from controller.source import local_revision

_SAYS = {
    "InSync": "no change in check mode",
    "Drifted": "would change",
    "CheckModeUnsupported": "check mode cannot tell",
    "CheckFailed": "could not be checked",
}


def _version(pin: str | None) -> str | None:
    return pin.rsplit(":", 1)[-1] if pin and ":" in pin else None


def run_preview(args: argparse.Namespace, result: Plan) -> tuple[list[dict[str, Any]], bool]:
    """Every planned run in check mode: one JSON-ready entry per block, and whether all could
    be checked (False: the command exits 1)."""
    settings = settings_for(args)
    revision = local_revision(Path(args.path), args.head, args.subpath)
    ctx = PipelineContext(
        runner=runner_for(settings),
        registry=registry_for(args, settings),
        keys=AgeKeys.from_sources(
            settings.age_identity_file, settings.age_identity, settings.age_passphrase
        ),
        action=args.action,
        timeout=float(getattr(args, "timeout", 1800.0)),
        work_dir=settings.work_dir,
    )
    report = asyncio.run(check_blocks(revision, result.runs, ctx))
    if report.error is not None:
        error = {
            "block": "",
            "state": "CheckFailed",
            "why": f"{report.error.reason}: {report.error}",
        }
        return [error], False
    runs = {run.block: run for run in result.runs}
    entries = [
        _entry(found, runs[found.block].from_, runs[found.block].to) for found in report.blocks
    ]
    return entries, not report.having("CheckFailed")


def _entry(found: BlockDrift, old: str | None, new: str) -> dict[str, Any]:
    notes = parse_changelog(found.changelog) if found.changelog else []
    wanted = _version(new)
    before = _version(old)
    shown = between(notes, before, wanted) if wanted and before and before != wanted else []
    return {
        "block": found.block,
        "from": old,
        "to": new,
        "state": found.state,
        "tasks": list(found.tasks),
        "why": found.why,
        "changelog": [entry.model_dump(exclude_none=True) for entry in shown],
        "changelogLines": [line for entry in shown for line in entry.lines()],
        "diff": list(found.diff),
    }


def format_preview(entries: list[dict[str, Any]]) -> str:
    """The preview as text: per block what check mode says, its changelog, then its diff."""
    out = [f"preview: {len(entries)} block(s) in check mode against the workspace's cluster"]
    for entry in entries:
        old = _version(entry.get("from")) or "(new)"
        new = _version(entry.get("to")) or entry.get("to") or ""
        says = _SAYS.get(entry["state"], entry["state"])
        detail = ", ".join(f"task {t!r}" for t in entry.get("tasks", [])) or entry.get("why", "")
        out.append(
            f"\n== {entry['block']} ({old} -> {new}): {says}" + (f": {detail}" if detail else "")
        )
        if entry.get("changelogLines"):
            out.append("   CHANGELOG.poly:")
            out.extend(f"     {line}" for line in entry["changelogLines"])
        out.extend(f"   | {line}" for line in entry.get("diff", []))
    return "\n".join(out)
