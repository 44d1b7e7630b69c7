"""fetch → parse → plan → pull → run → record, for one workspace, with no Kopf (DESIGN §4).

:func:`reconcile` takes a resolved :class:`~controller.source.Revision` and the current status
and returns what happened; :func:`controller.status.record` turns that into the next status.
Blocking work (Git export, registry I/O) runs in threads so the operator's loop never blocks.

An action's config is block.poly defaults < the instance's config < its ``secrets.poly`` entry
(DESIGN §2). Secret values go to the runner twice: in the extra-vars, and as the values it
redacts from the log; the messages built here are redacted with them too (Ansible templates
task names, so a failed task's name may hold one).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.api.status import WorkspaceStatus
from controller.errors import CratekeeperError, InternalError, RunError
from controller.plan import AppliedBlock, Plan, Run, SecretConfigs, deep_merge, plan
from controller.refs import BlockRef
from controller.registry import PulledBlock, RegistryClient, pull_block
from controller.runners.artifacts import ArtifactStore, pack, unpack
from controller.runners.base import (
    ActionRequest,
    OutputHandler,
    Runner,
    StaticContract,
    redact,
    redactions,
)
from controller.secrets import (
    AgeKeys,
    config_hash_key,
    read_kubeconfig,
    read_secrets_poly,
    secret_values,
)
from controller.source import GitTree, Revision
from controller.source.applied import (  # re-exported: callers import them from here too
    previous_revision as previous_revision,
)
from controller.source.applied import ref_label as ref_label
from controller.status import ReconcileOutcome, RunOutcome, applied_blocks, is_applied
from controller.tree import Tree
from controller.workspace import (
    SecretsFile,
    Workspace,
    WorkspaceFile,
    block_dir,
    load_workspace,
    parse_secrets,
    read_workspace,
)

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
UNINSTALL = "uninstall"
LOG_LINES = 20
"""The last lines of a run's (redacted) output kept in the status, for ``cratekeeper logs``."""
LOG_LINE_CHARS = 300


@dataclass(frozen=True)
class PipelineContext:
    """The collaborators and knobs of a reconcile."""

    runner: Runner
    registry: RegistryClient
    keys: AgeKeys
    action: str = "deploy"
    timeout: float = 1800.0
    work_dir: Path | None = None
    on_output: OutputHandler | None = None
    ref: str | None = None
    """The source ref this revision was resolved for (:func:`ref_label`; for a local checkout
    what ``--ref`` names there), or ``None`` when unknown; recorded as ``lastAppliedRef`` when
    the revision is applied."""
    reapply: bool = False
    """Run every block of the revision again, applied or not (the re-apply request)."""
    correct: frozenset[str] = frozenset()
    """With ``reapply``: run only these blocks again, a drift correction (controller.drift)."""
    artifacts: ArtifactStore | None = None
    """Where this Workspace's kept ``artifacts/blocks/`` live between runs (DESIGN §2): laid
    back into the export before the first run, saved after each successful one."""


def _now() -> datetime:
    return datetime.now(UTC)


def _resolve_digests(ws: Workspace, client: RegistryClient) -> dict[str, str]:
    """Tag → manifest digest of every registry block (one HEAD request each)."""
    digests = {}
    for block in ws.blocks:
        ref = block.ref
        if ref is None:
            continue
        digest = ref.digest or client.head_manifest(ref.registry, ref.repository, ref.tag)
        if digest:
            digests[block.name] = digest
    return digests


async def reconcile(
    revision: Revision,
    status: WorkspaceStatus,
    ctx: PipelineContext,
    progress: Progress = lambda _: None,
) -> ReconcileOutcome:
    """Apply ``revision`` on top of ``status``; never raises for a bad workspace or a failed run."""
    started = _now()

    def outcome(**kwargs: object) -> ReconcileOutcome:
        return ReconcileOutcome(
            revision=revision.sha,
            subject=revision.subject,
            author=revision.author,
            action=ctx.action,
            started=started,
            finished=_now(),
            ref=ctx.ref,
            reapply=ctx.reapply,
            correction=bool(ctx.correct),
            **kwargs,  # type: ignore[arg-type]
        )

    if is_applied(status, revision.sha) and not ctx.reapply:
        progress(f"revision {revision.sha[:12]} is already applied: nothing to do")
        return outcome(up_to_date=True)
    try:
        return await _reconcile(revision, status, ctx, progress, outcome)
    except CratekeeperError as exc:  # e.g. Git timing out while exporting the tree
        progress(f"revision {revision.sha[:12]}: {exc.reason}: {exc}")
        return outcome(error=exc)
    except Exception as exc:  # a bug or the machine (disk full): a failed attempt, not a crash
        error = unexpected(exc, f"reconciling {revision.sha[:12]}")
        progress(f"revision {revision.sha[:12]}: {error.reason}: {error}")
        return outcome(error=error)


def unexpected(exc: BaseException, doing: str) -> InternalError:
    """An InternalError for ``exc``; its traceback goes to the log without the exception's
    message (which may quote a secret), the error names only its type."""
    log.error(
        "unexpected %s while %s:\n%s",
        type(exc).__name__,
        doing,
        "".join(traceback.format_tb(exc.__traceback__)),
    )
    return InternalError(f"unexpected {type(exc).__name__} while {doing}; see the controller's log")


async def _reconcile(
    revision: Revision,
    status: WorkspaceStatus,
    ctx: PipelineContext,
    progress: Progress,
    outcome: Callable[..., ReconcileOutcome],
) -> ReconcileOutcome:
    try:
        ws = await asyncio.to_thread(read_workspace, revision.tree)
        kubeconfig = await asyncio.to_thread(read_kubeconfig, revision.tree, ctx.keys)
        found = await asyncio.to_thread(load_secrets, revision.tree, ws.file, ctx.keys)
        digests = await asyncio.to_thread(_resolve_digests, ws, ctx.registry)
    except CratekeeperError as exc:
        progress(f"revision {revision.sha[:12]}: {exc.reason}: {exc}")
        return outcome(error=exc)
    secrets = SecretConfigs(
        found.block_configs() if found else {}, config_hash_key(kubeconfig) if found else b""
    )
    the_plan = plan(
        ws,
        applied_blocks(status),
        action=ctx.action,
        digests=digests,
        secrets=secrets,
        reapply=ctx.reapply,
    )
    if ctx.correct:  # a drift correction runs the drifted blocks only
        drifted = tuple(r for r in the_plan.runs if r.block in ctx.correct)
        the_plan = replace(the_plan, runs=drifted, removed=())
    if the_plan.empty:
        progress(f"revision {revision.sha[:12]}: every block is up to date")
        return outcome()
    if ctx.work_dir is not None:
        ctx.work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cratekeeper-ws-", dir=ctx.work_dir) as tmp:
        root = Path(tmp)
        await asyncio.to_thread(revision.tree.export, root)
        try:
            await _lay_back(ctx.artifacts, root, progress)
        except CratekeeperError as exc:
            progress(f"revision {revision.sha[:12]}: {exc.reason}: {exc}")
            return outcome(error=exc)
        here = _Here(ws, root, kubeconfig, secrets, revision, ctx, progress)
        runs, removed_failed = await _execute(the_plan, here, status)
    return outcome(runs=runs, removed=the_plan.removed, removed_failed=tuple(removed_failed))


@dataclass(frozen=True)
class _Here:
    """What every run of one reconcile shares."""

    ws: Workspace
    root: Path
    kubeconfig: bytes = field(repr=False)
    secrets: SecretConfigs = field(repr=False)
    revision: Revision
    ctx: PipelineContext
    progress: Progress


async def _execute(
    the_plan: Plan, here: _Here, status: WorkspaceStatus
) -> tuple[list[RunOutcome], list[str]]:
    """Runs in workspace order; the first failure stops the rest of the plan."""
    done: list[RunOutcome] = []
    for run in the_plan.runs:
        ran = await _keep_artifacts(await _run_one(run, here), here)
        done.append(ran)
        if not ran.succeeded:
            return done, [a.name for a in the_plan.removed]
    failed_removals = []
    if the_plan.removed:
        previous, secrets = await asyncio.to_thread(
            _previous_workspace, here.revision, status, here.ctx.keys
        )
        for gone in the_plan.removed:
            config = _instance_config(previous, gone.name)
            secret = secrets.block_config(gone.name) if secrets else {}
            if not await _uninstall(gone, config, secret, here):
                failed_removals.append(gone.name)
    return done, failed_removals


async def _lay_back(store: ArtifactStore | None, root: Path, progress: Progress) -> None:
    """The Workspace's kept artifacts back into the export, before any run."""
    data = await store.load() if store is not None else None
    if data:
        files = await asyncio.to_thread(unpack, data, root)
        progress(f"laid back {len(files)} kept artifact file(s) under artifacts/blocks/")


async def _keep_artifacts(ran: RunOutcome, here: _Here) -> RunOutcome:
    """After a successful run, keep the export's artifacts/blocks/ for later runs; a tree over
    the budget fails the run (the next block must not read stale artifacts)."""
    store = here.ctx.artifacts
    if store is None or not ran.succeeded:
        return ran
    try:
        await store.save(await asyncio.to_thread(pack, here.root))
    except CratekeeperError as exc:
        here.progress(f"{ran.run.block}: {exc.reason}: {exc}")
        return replace(ran, status="failed", message=f"{ran.run.block}: {exc}", error=exc)
    return ran


def load_secrets(tree: Tree, ws: WorkspaceFile, keys: AgeKeys) -> SecretsFile | None:
    """The workspace's secrets.poly (``secrets.poly.age`` decrypted in memory), if it has one."""
    found = read_secrets_poly(tree, keys)
    if found is None:
        return None
    file, text = found
    return parse_secrets(text, file, ws)


def _previous_workspace(
    revision: Revision, status: WorkspaceStatus, keys: AgeKeys
) -> tuple[WorkspaceFile | None, SecretsFile | None]:
    """The workspace and its secrets as last applied (for a removed block's config), if Git
    still has them."""
    if not status.last_applied_revision:
        return None, None
    tree = revision.tree
    old = GitTree(tree.git_dir, status.last_applied_revision, tree.subpath)
    try:
        ws = load_workspace(old)
    except CratekeeperError:
        return None, None
    try:
        return ws, load_secrets(old, ws, keys)
    except CratekeeperError:
        return ws, None


def _instance_config(ws: WorkspaceFile | None, name: str) -> dict[str, Any]:
    instance = next((b for b in ws.blocks if b.name == name), None) if ws else None
    return dict(instance.config) if instance else {}


async def _run_one(run: Run, here: _Here) -> RunOutcome:
    label = f"{run.block} ({run.from_ or 'new'} -> {run.to}, {run.reason})"
    secret = here.secrets.of(run.block)
    hide = secret_values(secret)
    try:
        if run.ref is None:
            raise RunError(
                f"block {run.block!r} is a {run.resolved.source} block; this version of "
                "cratekeeper runs registry blocks only"
            )
        here.progress(f"pulling {run.ref}")
        pulled = await asyncio.to_thread(pull_block, run.ref, here.root, client=here.ctx.registry)
        request = _request(pulled, run.block, run.action, run.resolved.config, secret, here)
    except CratekeeperError as exc:
        here.progress(f"{label}: {exc.reason}: {redact(str(exc), hide)}")
        message = redact(f"{run.block}: {exc}", hide)
        return RunOutcome(run, "failed", None, _now(), message=message, error=exc)
    hide = tuple(sorted(set(redactions(request)), key=len, reverse=True))  # longest first
    here.progress(f"running {run.block} {run.action} {label}")
    try:
        result = await here.ctx.runner.run(request, here.ctx.on_output)
    except Exception as exc:  # the runner could not run it (API refused, no engine, a bug)
        error = exc if isinstance(exc, CratekeeperError) else unexpected(exc, f"running {label}")
        message = redact(f"{run.block}: {error}", hide)
        here.progress(f"{label}: {error.reason}: {message}")
        return RunOutcome(run, "failed", pulled.digest, _now(), message=message, error=error)
    elapsed = (result.finished - result.started).total_seconds()
    counts = result.counts
    here.progress(
        f"{run.block} {run.action}: {result.status} in {elapsed:.1f}s "
        f"(ok={counts.ok} changed={counts.changed} failed={counts.failed})"
    )
    message = ""
    if not result.succeeded:
        if result.failure_reason:  # it exited 0 but did nothing (no host matched)
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
        run, result.status, pulled.digest, result.finished, result.job_name, message, log_tail=tail
    )


def _request(
    pulled: PulledBlock,
    block: str,
    action: str,
    config: Mapping[str, Any],
    secret: Mapping[str, Any],
    here: _Here,
) -> ActionRequest:
    """The run of ``action``; its config is block defaults < instance config < secrets."""
    spec = pulled.block.action(action)
    if spec is None:
        known = ", ".join(a.name for a in pulled.block.actions) or "none"
        raise RunError(
            f"block {pulled.ref.name}:{pulled.ref.tag} has no action {action!r} "
            f"(its actions: {known}); set spec.action or add it to block.poly"
        )
    if spec.playbook is None:
        raise RunError(
            f"block {pulled.ref.name}:{pulled.ref.tag} action {action!r} is a script action; "
            "this version of cratekeeper runs playbook actions only"
        )
    merged = deep_merge(pulled.block.config, deep_merge(config, secret))
    # Until the model builds Polycrate's snapshot (a RunContract), the extra-vars keep their
    # earlier shape.
    snapshot = {
        "block": {
            "name": block,
            "from": str(pulled.ref),
            "version": pulled.ref.version,
            "config": merged,
        },
        "workspace": {"name": here.ws.name, "organization": here.ws.organization},
        "action": {"name": action},
    }
    return ActionRequest(
        workspace=here.ws.name,
        organization=here.ws.organization,
        revision=here.revision.sha,
        block=block,
        ref=pulled.ref,
        action=action,
        playbook=spec.playbook,
        has_script=False,
        config=merged,
        workspace_dir=here.root,
        workdir=block_dir(pulled.ref),
        contract=StaticContract(snapshot),
        kubeconfig=here.kubeconfig,
        timeout=here.ctx.timeout,
        secrets=secret_values(secret),
    )


async def _uninstall(
    gone: AppliedBlock, config: Mapping[str, Any], secret: Mapping[str, Any], here: _Here
) -> bool:
    """Run the removed block's ``uninstall`` action when it has one; True when done."""
    ref = BlockRef.parse(gone.from_)
    try:
        pulled = await asyncio.to_thread(pull_block, ref, here.root, client=here.ctx.registry)
    except CratekeeperError as exc:
        here.progress(f"{gone.name} was removed; cannot pull {ref} to uninstall it: {exc}")
        return False
    if pulled.block.action(UNINSTALL) is None:
        here.progress(f"{gone.name} was removed; its block has no uninstall action")
        return True
    here.progress(f"{gone.name} was removed: running uninstall of {ref}")
    request = _request(pulled, gone.name, UNINSTALL, config, secret, here)
    try:
        result = await here.ctx.runner.run(request, here.ctx.on_output)
    except CratekeeperError as exc:
        here.progress(f"{gone.name} uninstall could not run: {redact(str(exc), request.secrets)}")
        return False
    here.progress(f"{gone.name} uninstall: {result.status}")
    return result.succeeded
