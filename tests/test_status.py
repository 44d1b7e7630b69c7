"""status.record: what a reconcile leaves in the status, and what it must never overwrite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.api.status import WorkspaceStatus
from controller.errors import GitUnreachableError, Problem, WorkspaceError
from controller.pipeline import previous_revision, ref_label
from controller.plan import AppliedBlock, config_hash, plan
from controller.source import GitRef
from controller.status import ReconcileOutcome, RunOutcome, applied_blocks, record
from controller.workspace import WorkspaceFile

APP = "registry.acme-corp.com/acme/apps/app-deploy"
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DIGEST = "sha256:" + "d" * 64


def ws(version: str) -> WorkspaceFile:
    return WorkspaceFile.model_validate(
        {"name": "acme-production-1", "blocks": [{"name": "app", "from": f"{APP}:{version}"}]}
    )


def outcome(
    rev: str, status: WorkspaceStatus, version: str, result: str, **kw: object
) -> ReconcileOutcome:
    runs = [
        RunOutcome(
            run, result, DIGEST, T0, message="" if result == "succeeded" else "app deploy failed"
        )
        for run in plan(ws(version), applied_blocks(status)).runs
    ]
    fields: dict[str, object] = {
        "revision": rev,
        "subject": f"commit {rev}",
        "author": "Ada",
        "action": "deploy",
        "started": T0,
        "finished": T0 + timedelta(seconds=5),
        "runs": runs,
    }
    fields.update(kw)
    return ReconcileOutcome(**fields)  # type: ignore[arg-type]


def applied(version: str = "1.1.0") -> WorkspaceStatus:
    return record(WorkspaceStatus(), outcome("a" * 40, WorkspaceStatus(), version, "succeeded"))


def test_a_success_records_revision_blocks_history_and_ready() -> None:
    status = applied()
    assert status.last_applied_revision == status.last_attempted_revision == "a" * 40
    (block,) = status.blocks
    assert (block.name, block.version, block.digest, block.phase) == (
        "app",
        "1.1.0",
        DIGEST,
        "Applied",
    )
    assert block.config_hash == config_hash({})
    (entry,) = status.history
    assert (entry.result, str(entry.changes[0])) == ("Succeeded", "app: (new) → 1.1.0")
    ready = status.condition("Ready")
    assert ready is not None and (ready.status, ready.reason) == ("True", "Succeeded")
    assert ready.message == "Applied revision aaaaaaaaaaaa"


def test_a_failed_run_never_overwrites_the_last_good_state() -> None:
    good = applied()
    failed = record(good, outcome("b" * 40, good, "1.2.0", "failed"))
    assert failed.last_applied_revision == "a" * 40
    assert failed.last_attempted_revision == "b" * 40
    (block,) = failed.blocks
    assert (block.version, block.from_, block.phase) == ("1.1.0", f"{APP}:1.1.0", "Failed")
    assert failed.history[0].result == "Failed"
    ready = failed.condition("Ready")
    assert ready is not None and (ready.status, ready.reason) == ("False", "RunFailed")
    stalled = failed.condition("Stalled")
    assert stalled is not None and stalled.status == "False"  # a retry may succeed


def test_an_invalid_workspace_stalls_until_a_new_commit() -> None:
    good = applied()
    error = WorkspaceError([Problem("workspace.poly", 7, "blocks[0].from: uses ':latest'")])
    status = record(good, outcome("c" * 40, good, "1.1.0", "failed", runs=(), error=error))
    assert status.blocks == good.blocks
    assert status.history[0].result == "Invalid"
    ready, stalled = status.condition("Ready"), status.condition("Stalled")
    assert ready is not None and (ready.reason, ready.message) == (
        "InvalidWorkspace",
        "workspace.poly:7: blocks[0].from: uses ':latest'",
    )
    assert stalled is not None and stalled.status == "True"


def test_an_unreachable_git_is_not_stalled() -> None:
    status = record(
        applied(),
        outcome(
            "d" * 40,
            WorkspaceStatus(),
            "1.1.0",
            "failed",
            runs=(),
            error=GitUnreachableError("down"),
        ),
    )
    ready, stalled = status.condition("Ready"), status.condition("Stalled")
    assert ready is not None and ready.reason == "GitUnreachable"
    assert stalled is not None and stalled.status == "False"


def test_an_up_to_date_revision_changes_only_the_fetched_revision() -> None:
    good = applied()
    again = record(good, outcome("a" * 40, good, "1.1.0", "succeeded", runs=(), up_to_date=True))
    assert again.history == good.history
    assert again.conditions == good.conditions  # no transition, so nothing to write


def test_history_is_bounded_newest_first() -> None:
    status = WorkspaceStatus()
    for i, version in enumerate(["1.0.0", "1.1.0", "1.2.0", "1.3.0"]):
        status = record(status, outcome(str(i) * 40, status, version, "succeeded"), history_limit=3)
    assert [h.revision[0] for h in status.history] == ["3", "2", "1"]


def test_removed_blocks_leave_the_status() -> None:
    good = applied()
    gone = AppliedBlock("app", f"{APP}:1.1.0", DIGEST, config_hash({}))
    status = record(good, outcome("e" * 40, good, "1.1.0", "succeeded", runs=(), removed=(gone,)))
    assert status.blocks == []
    assert status.last_applied_revision == "e" * 40


def test_the_status_dump_uses_the_crd_names() -> None:
    dumped = applied().dump()
    assert {"lastAppliedRevision", "blocks", "history", "conditions"} <= set(dumped)
    block = dumped["blocks"][0]  # type: ignore[index]
    assert {"from", "configHash", "lastRun"} <= set(block)


def test_the_applied_ref_moves_with_the_applied_revision_only() -> None:
    good = record(
        WorkspaceStatus(),
        outcome("a" * 40, WorkspaceStatus(), "1.1.0", "succeeded", ref="branch:main"),
    )
    assert good.last_applied_ref == "branch:main"
    assert good.dump()["lastAppliedRef"] == "branch:main"
    failed = record(good, outcome("b" * 40, good, "1.2.0", "failed", ref="branch:other"))
    assert (failed.last_applied_revision, failed.last_applied_ref) == ("a" * 40, "branch:main")
    # The other branch points at the applied commit: nothing runs, the ref is now that one.
    same = record(
        good,
        outcome("a" * 40, good, "1.1.0", "succeeded", runs=(), up_to_date=True, ref="branch:other"),
    )
    assert (same.last_applied_revision, same.last_applied_ref) == ("a" * 40, "branch:other")


def test_history_must_descend_from_the_last_applied_commit_only_on_the_same_ref() -> None:
    main, other = GitRef.branch("main"), GitRef.branch("other")
    assert (ref_label(main), ref_label(GitRef.tag("v1"))) == ("branch:main", "tag:v1")
    assert ref_label(GitRef.commit("c" * 40)) == "commit:" + "c" * 40
    status = WorkspaceStatus(last_applied_revision="a" * 40, last_applied_ref="branch:main")
    assert previous_revision(status, main) == "a" * 40
    assert previous_revision(status, other) is None
    legacy = WorkspaceStatus(last_applied_revision="a" * 40)  # written before lastAppliedRef
    assert previous_revision(legacy, main) is None
