"""Blocks that left the workspace: each runs its ``uninstall`` as it was last applied (DESIGN §4).

A Polycrate user runs ``polycrate run NAME uninstall`` before deleting a block; cratekeeper runs
it when the block leaves ``workspace.poly``, whatever its form (registry, local, inline), from
the revision that applied it (:class:`_Earlier`: usually the last applied one). That commit's
tree is exported beside the current one, with
the Workspace's kept artifacts laid back, and the action runs there as any run does: that
revision's ``workspace.poly``, ``block.poly`` and files, the instance's config and
``secrets.poly`` config as they were, the snapshot of that workspace, and that commit as the
run's revision (a Job fetches it). The kubeconfig is the current one: the cluster the workspace
manages now. A registry block is pulled at the digest last applied. What an uninstall writes
under ``artifacts/`` is not kept.

A block whose definition has no ``uninstall`` action is only reported. When the commit is no
longer in Git (garbage-collected after a force-push) or no longer reads as a workspace, the
removal is reported with a note saying the uninstall could not run and what a person can do
(a registry block still runs from its recorded pin, with its block's defaults). A failing
uninstall fails the removal: the block stays in the status and the revision is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from controller.api.status import WorkspaceStatus
from controller.errors import CratekeeperError
from controller.pipeline.loading import lay_back, load_secrets
from controller.pipeline.runs import MissingActionError, Shared, prepare, run_prepared
from controller.plan import AppliedBlock, Run, SecretConfigs, content_digest
from controller.refs import BlockRef
from controller.runners.artifacts import ArtifactStore
from controller.runners.base import redact
from controller.secrets import AgeKeys
from controller.source import GitTree
from controller.source.revision import has_commit
from controller.workspace import (
    BlockInstance,
    ResolvedBlock,
    SecretsFile,
    Workspace,
    WorkspaceFile,
    read_workspace,
    resolve_file,
)

UNINSTALL = "uninstall"


@dataclass(frozen=True)
class Removals:
    """What the removals of one reconcile did: the blocks whose uninstall failed (they stay
    in the status, the revision is retried) and notes for the status (uninstalls that could
    not run, why one failed)."""

    failed: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Was:
    """The workspace at an earlier commit: resolved, its secrets, its tree."""

    revision: str
    ws: Workspace
    secrets: SecretsFile | None = field(repr=False)
    tree: GitTree


_RootOf = Callable[[_Was], Awaitable[Path]]
"""The export of an earlier commit's tree, made once per commit."""


def _read(tree: GitTree, keys: AgeKeys) -> _Was | str:
    """The workspace at ``tree``'s commit, or why it cannot be read."""
    sha = tree.commit[:12]
    if not has_commit(tree.git_dir, tree.commit):
        return (
            f"commit {sha}, which applied it, is no longer in the Git history "
            "(garbage-collected after a force-push?)"
        )
    try:
        ws = read_workspace(tree)
    except CratekeeperError as exc:
        return f"the workspace at commit {sha}, which applied it, no longer reads: {exc}"
    return _Was(tree.commit, ws, load_secrets(tree, ws.file, keys), tree)


class _Earlier:
    """The earlier commits a removed block may be found in, newest first (the last applied,
    the last attempted, then the history's), each read once and only when needed."""

    def __init__(self, current: GitTree, status: WorkspaceStatus, keys: AgeKeys) -> None:
        shas = [status.last_applied_revision, status.last_attempted_revision]
        shas += [entry.revision for entry in status.history]
        self._trees = [
            GitTree(current.git_dir, sha, current.subpath)
            for sha in dict.fromkeys(s for s in shas if s and s != current.commit)
        ]
        self._keys = keys
        self._read: dict[str, _Was | str] = {}

    async def find(self, gone: AppliedBlock) -> tuple[_Was, ResolvedBlock] | str:
        """The workspace that applied ``gone`` and its block there, or why there is none: the
        first commit whose block is the one the status records (a local or inline block's
        content digest, a registry block's pin), else the newest that defines it."""
        first: tuple[_Was, ResolvedBlock] | None = None
        why = ""
        for tree in self._trees:
            if tree.commit not in self._read:
                self._read[tree.commit] = await asyncio.to_thread(_read, tree, self._keys)
            was = self._read[tree.commit]
            if isinstance(was, str):
                why = why or was
                continue
            block = was.ws.block(gone.name)
            if block is None:
                continue
            if _is_applied(was, block, gone):
                return was, block
            first = first or (was, block)
        if first is not None:
            return first
        if not self._trees:
            return "the status records no earlier revision"
        return (
            why
            or f"no revision the status records defines it (newest: {self._trees[0].commit[:12]})"
        )


def _is_applied(was: _Was, block: ResolvedBlock, gone: AppliedBlock) -> bool:
    """Whether ``block`` of ``was`` is what the status records as applied."""
    if block.ref is None:
        return content_digest(block, was.ws.digests) == gone.digest
    return block.pin == gone.from_


async def uninstall_removed(
    removed: Sequence[AppliedBlock],
    shared: Shared,
    current: GitTree,
    status: WorkspaceStatus,
    keys: AgeKeys,
    store: ArtifactStore | None,
    work_dir: Path | None,
) -> Removals:
    """Run the ``uninstall`` of each removed block that defines one, in the order given;
    ``current`` is the tree of the revision being applied (its repository holds the others)."""
    earlier = _Earlier(current, status, keys)
    failed: list[str] = []
    notes: list[str] = []
    with contextlib.ExitStack() as stack:
        roots: dict[str, Path] = {}

        async def root_of(was: _Was) -> Path:
            """The commit's tree exported (once), the kept artifacts laid back."""
            if was.revision not in roots:
                tmp = stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="cratekeeper-was-", dir=work_dir)
                )
                await asyncio.to_thread(was.tree.export, Path(tmp))
                await lay_back(store, Path(tmp), shared.progress)
                roots[was.revision] = Path(tmp)
            return roots[was.revision]

        for gone in removed:
            try:
                found = await earlier.find(gone)
                if isinstance(found, str):
                    done, note = await _without_tree(gone, found, shared)
                else:
                    was, block = found
                    done, note = await _uninstall(gone, was, block, shared, root_of)
            except CratekeeperError as exc:  # its secrets, exporting or laying back its tree
                done, note = False, f"{gone.name} was removed; cannot uninstall it: {exc}"
            if note:
                shared.progress(note)
                notes.append(note)
            if not done:
                failed.append(gone.name)
    return Removals(tuple(failed), tuple(notes))


async def _uninstall(
    gone: AppliedBlock, was: _Was, block: ResolvedBlock, shared: Shared, root_of: _RootOf
) -> tuple[bool, str]:
    """Run ``block``'s uninstall in the workspace ``was``; (done, a note for the status)."""
    if block.ref is None and block.action(UNINSTALL) is None:
        shared.progress(f"{gone.name} was removed; it has no uninstall action")
        return True, ""
    if block.ref is not None and block.ref.digest is None and gone.digest:
        block = replace(block, ref=replace(block.ref, digest=gone.digest))  # what was applied
    root = await root_of(was)
    secrets = was.secrets.block_configs() if was.secrets else {}
    then = _with(shared, was.ws, root, was.revision, secrets, was.secrets)
    where = f"as applied at {was.revision[:12]}"
    return await _run(gone, block, then, where)


async def _without_tree(gone: AppliedBlock, why: str, shared: Shared) -> tuple[bool, str]:
    """The commit that applied ``gone`` cannot be read: a registry block still runs from its
    recorded pin (its block's defaults, no instance config); a local or inline block cannot."""
    try:
        BlockRef.parse(gone.from_)
    except ValueError:
        return True, (
            f"{gone.name} was removed, but its uninstall could not run: {why}. Its code was "
            f"in that commit only; if it defines an uninstall action, run it by hand from a "
            f"checkout of that commit (polycrate run {gone.name} uninstall)"
        )
    only = WorkspaceFile(
        name=shared.ws.name,
        organization=shared.ws.organization,
        blocks=[BlockInstance.model_validate({"name": gone.name, "from": gone.from_})],
    )
    ws = resolve_file(only)
    (block,) = ws.blocks
    if block.ref is not None and block.ref.digest is None and gone.digest:
        block = replace(block, ref=replace(block.ref, digest=gone.digest))
    alone = _with(shared, ws, shared.root, shared.revision, {}, None)
    lost = (
        f"{gone.name}: its config as last applied is lost ({why}); its uninstall ran with defaults"
    )
    return await _run(gone, block, alone, f"from {gone.from_}", ran_note=lost)


def _with(
    shared: Shared,
    ws: Workspace,
    root: Path,
    revision: str,
    secrets: dict[str, dict[str, Any]],
    file: SecretsFile | None,
) -> Shared:
    """``shared`` (runner, registry, kubeconfig, knobs) for a run in another workspace."""
    return Shared(
        ws=ws,
        root=root,
        revision=revision,
        kubeconfig=shared.kubeconfig,
        secrets=SecretConfigs(secrets, b""),
        runner=shared.runner,
        registry=shared.registry,
        progress=shared.progress,
        unexpected=shared.unexpected,
        timeout=shared.timeout,
        on_output=shared.on_output,
        allow_prompted=shared.allow_prompted,
        workspace_secrets=file.config if file else {},
    )


async def _run(
    gone: AppliedBlock, block: ResolvedBlock, shared: Shared, where: str, ran_note: str = ""
) -> tuple[bool, str]:
    """Prepare and run the uninstall; (done, a note: why it failed, and ``ran_note`` when it
    ran)."""
    run = Run(
        gone.name, UNINSTALL, gone.from_, gone.from_, "version", False, block, "", gone.digest
    )
    try:
        prepared = await prepare(shared, run)
    except MissingActionError:
        shared.progress(f"{gone.name} was removed; its block has no uninstall action")
        return True, ""
    except CratekeeperError as exc:  # a pull, a prompt, a template: it may quote a secret
        return False, redact(f"{gone.name} was removed; cannot uninstall it: {exc}", shared.hidden)
    shared.progress(f"{gone.name} was removed: running its uninstall {where}")
    ran = await run_prepared(shared, prepared)
    shared.progress(f"{gone.name} uninstall: {ran.status}")
    why = "" if ran.succeeded else ran.message or f"{gone.name} uninstall {ran.status}"
    return ran.succeeded, "; ".join(n for n in (ran_note, why) if n)
