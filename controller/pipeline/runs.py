"""One planned run: prepared before anything runs (pull, action, prompt, templates), then its
request built from the export as it is by then (artifacts earlier runs wrote) and run.

A block's final shape: a registry block's pulled ``block.poly`` (defaults, actions, inventory)
under the instance's chain; a local or inline block as resolved. Its config is defaults <
chain < instance < ``secrets.poly``. Secret values of every block are in the snapshot (it shows
the whole workspace, as Polycrate's does), so every one of them is redacted from the run's log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.errors import CratekeeperError, InternalError, RunError
from controller.pipeline.contract import ModelContract
from controller.plan import Run, SecretConfigs
from controller.refs import BlockRef
from controller.registry import RegistryClient, pull_block
from controller.runners.base import ActionRequest, OutputHandler, Runner, redact, redactions
from controller.secrets import secret_values
from controller.status import RunOutcome
from controller.workspace import ActionSpec, Workspace, deep_merge
from controller.workspace.rules import ONE_CLUSTER, PROMPT_NOTE
from controller.workspace.snapshot import BlockView, SnapshotInput

Progress = Callable[[str], None]
LOG_LINES = 20
"""The last lines of a run's (redacted) output kept in the status, for ``cratekeeper logs``."""
LOG_LINE_CHARS = 300
Unexpected = Callable[[BaseException, str], InternalError]


@dataclass
class Shared:
    """What every run of one reconcile shares (views fill in as registry blocks are pulled)."""

    ws: Workspace
    root: Path
    revision: str
    kubeconfig: bytes = field(repr=False)
    secrets: SecretConfigs = field(repr=False)
    runner: Runner
    registry: RegistryClient
    progress: Progress
    unexpected: Unexpected
    timeout: float = 1800.0
    on_output: OutputHandler | None = None
    allow_prompted: bool = False
    workflow: str | None = None
    views: dict[str, BlockView] = field(default_factory=dict, repr=False)
    workspace_secrets: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for block in self.ws.blocks:
            workdir = f"blocks/{block.ref.name}" if block.ref else block.workdir
            config = deep_merge(block.config, self.secrets.of(block.name))
            self.views[block.name] = BlockView(block, config, workdir, block.actions)

    @property
    def hidden(self) -> tuple[str, ...]:
        """Every secret value of the workspace (the snapshot shows them all)."""
        values = [v for c in self.secrets.configs.values() for v in secret_values(c)]
        values += secret_values(self.workspace_secrets)
        return tuple(sorted(set(values), key=len, reverse=True))


@dataclass(frozen=True)
class Prepared:
    """A run ready to start: its block as the action sees it and the action."""

    run: Run
    view: BlockView
    action: ActionSpec
    inventory_from: str
    inventory_file: str
    digest: str | None


class MissingActionError(RunError):
    """The block has no action of the name the plan (spec.action, a workflow step) asks for."""


def _now() -> datetime:
    return datetime.now(UTC)


def _prompted(shared: Shared, run: Run, action: ActionSpec) -> str | None:
    """What asks a person before this run, if anything."""
    if action.prompted:
        return f"action {action.name!r} of block {run.block!r}"
    workflow = shared.ws.file.workflow(shared.workflow) if shared.workflow else None
    if workflow and workflow.prompt and workflow.prompt.message:
        return f"workflow {workflow.name!r}"
    step = next(
        (s for s in (workflow.steps if workflow else []) if s.block == run.block),
        None,
    )
    if step and step.prompt and step.prompt.message:
        return f"step {step.name!r} of workflow {shared.workflow!r}"
    return None


async def _registry_view(
    shared: Shared, run: Run, ref: BlockRef
) -> tuple[BlockView, str, str, str | None]:
    shared.progress(f"pulling {ref}")
    pulled = await asyncio.to_thread(pull_block, ref, shared.root, client=shared.registry)
    for note in pulled.notes:
        shared.progress(note)
    file = pulled.block
    if file.kubeconfig.is_set:
        raise RunError(f"block {ref}: its block.poly sets kubeconfig: refused: {ONE_CLUSTER}")
    actions = {a.name: a for a in file.actions}
    actions.update({a.name: a for a in run.resolved.actions})
    config = deep_merge(file.config, shared.views[run.block].config)
    workdir = pulled.path.relative_to(shared.root).as_posix()
    view = BlockView(run.resolved, config, workdir, tuple(actions.values()))
    shared.views[run.block] = view
    inventory_from = run.resolved.inventory_from or file.inventory.from_
    inventory_file = run.resolved.inventory_file or file.inventory.filename
    return view, inventory_from, inventory_file, pulled.digest


async def prepare(shared: Shared, run: Run) -> Prepared:
    """Pull (registry blocks only), find the action, refuse a prompt, render the templates."""
    digest = run.digest
    if run.ref is not None:
        view, inventory_from, inventory_file, digest = await _registry_view(shared, run, run.ref)
    else:
        view = shared.views[run.block]
        inventory_from, inventory_file = run.resolved.inventory_from, run.resolved.inventory_file
    action = next((a for a in view.actions if a.name == run.action), None)
    if action is None:
        known = ", ".join(a.name for a in view.actions) or "none"
        raise MissingActionError(
            f"block {run.block!r} ({run.to}) has no action {run.action!r} (its actions: "
            f"{known}); set spec.action (or the workflow step), or add the action"
        )
    asks = _prompted(shared, run, action)
    if asks and not shared.allow_prompted:
        raise RunError(f"{asks} has a prompt: {PROMPT_NOTE}")
    prepared = Prepared(run, view, action, inventory_from, inventory_file, digest)
    contract(shared, prepared).preflight()
    return prepared


def _inventory(shared: Shared, prepared: Prepared) -> str | None:
    """Polycrate's resolution: ``inventory.from`` a block's artifacts, else the block's own
    artifacts inventory, else ``None`` (the runner uses the workspace ``inventory.yml``)."""
    file = prepared.inventory_file or "inventory.yml"
    if prepared.inventory_from:
        return f"artifacts/blocks/{prepared.inventory_from}/{file}"
    own = f"{prepared.view.artifacts}/{file}"
    return own if (shared.root / own).is_file() else None


def contract(shared: Shared, prepared: Prepared) -> ModelContract:
    """The snapshot and script of ``prepared``."""
    data = SnapshotInput(
        name=shared.ws.name,
        organization=shared.ws.organization,
        config=shared.ws.file.config,
        blocks=tuple(shared.views[b.name] for b in shared.ws.blocks),
        block=prepared.run.block,
        action=prepared.action,
        inventory=_inventory(shared, prepared),
        extraenv=shared.ws.file.env(),
        secrets=shared.workspace_secrets,
        workflow=shared.workflow,
    )
    where = f"block {prepared.run.block!r} action {prepared.action.name!r}"
    return ModelContract(data, prepared.action.script, where)


def request(shared: Shared, prepared: Prepared) -> ActionRequest:
    """The runner's request, from the export as it is now."""
    action = prepared.action
    return ActionRequest(
        workspace=shared.ws.name,
        organization=shared.ws.organization,
        revision=shared.revision,
        block=prepared.run.block,
        ref=prepared.run.ref,
        action=action.name,
        playbook=action.playbook,
        has_script=action.script is not None,
        config=prepared.view.config,
        workspace_dir=shared.root,
        workdir=prepared.view.workdir,
        contract=contract(shared, prepared),
        kubeconfig=shared.kubeconfig,
        inventory=_inventory(shared, prepared),
        extraenv=shared.ws.file.env(),
        artifacts=prepared.view.artifacts,
        timeout=shared.timeout,
        secrets=shared.hidden,
        digest=prepared.digest if prepared.run.ref is not None else None,
    )


def failed(
    run: Run, error: CratekeeperError, hide: tuple[str, ...], digest: str | None
) -> RunOutcome:
    """The outcome of a run that could not start."""
    return RunOutcome(
        run, "failed", digest, _now(), message=redact(f"{run.block}: {error}", hide), error=error
    )


async def run_prepared(shared: Shared, prepared: Prepared) -> RunOutcome:
    """Run it and say how it ended (never raises)."""
    run = prepared.run
    label = f"{run.block} ({run.from_ or 'new'} -> {run.to}, {run.reason})"
    try:
        req = request(shared, prepared)
    except CratekeeperError as exc:
        return failed(run, exc, shared.hidden, prepared.digest)
    hide = tuple(sorted(set(redactions(req)), key=len, reverse=True))  # longest first
    shared.progress(f"running {run.block} {run.action} {label}")
    try:
        result = await shared.runner.run(req, shared.on_output)
    except Exception as exc:  # the runner could not run it (API refused, no engine, a bug)
        error = (
            exc if isinstance(exc, CratekeeperError) else shared.unexpected(exc, f"running {label}")
        )
        shared.progress(f"{label}: {error.reason}: {redact(str(error), hide)}")
        return failed(run, error, hide, prepared.digest)
    elapsed = (result.finished - result.started).total_seconds()
    counts = result.counts
    shared.progress(
        f"{run.block} {run.action}: {result.status} in {elapsed:.1f}s "
        f"(ok={counts.ok} changed={counts.changed} failed={counts.failed})"
    )
    message = ""
    if not result.succeeded:
        if result.failure_reason:  # it exited 0 but did nothing, or its artifacts were lost
            where = f": {result.failure_reason}"
        elif result.failed_task:
            where = f" at task {result.failed_task!r}"
        else:  # it never reached a task: the log says why (redacted)
            last = next((line for line in reversed(result.log_tail) if line.strip()), "")
            where = f" (exit code {result.exit_code}): {last.strip()[:300]}"
        # A task name is templated by Ansible, so it may hold a secret too.
        message = redact(f"{run.block} {run.action} {result.status}{where}", hide)
    tail = tuple(redact(line, hide)[:LOG_LINE_CHARS] for line in result.log_tail[-LOG_LINES:])
    return RunOutcome(
        run,
        result.status,
        prepared.digest,
        result.finished,
        result.job_name,
        message,
        error=result.error,
        log_tail=tail,
    )
