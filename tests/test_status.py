"""status.record: what a reconcile leaves in the status, and what it must never overwrite."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.api.status import WorkspaceStatus, salvage_status
from controller.cli.state import load_state
from controller.errors import (
    CratekeeperError,
    DigestMismatchError,
    GitUnreachableError,
    Problem,
    RegistryError,
    RegistryUnreachableError,
    StatusUnreadableError,
    WorkspaceError,
)
from controller.operator.stored import failed_status, status_of, unreadable_patch
from controller.pipeline import previous_revision, ref_label
from controller.plan import AppliedBlock, config_hash, plan
from controller.source import GitRef
from controller.status import (
    ReconcileOutcome,
    RunOutcome,
    applied_blocks,
    changed,
    failure,
    is_applied,
    record,
)
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


# ---------------------------------------------------------------------------------------------
# History: one entry per (revision, result)


def _promoted_and_rolled_back() -> WorkspaceStatus:
    status = applied("1.1.0")
    status = record(status, outcome("b" * 40, status, "1.2.0", "succeeded"))
    return record(status, outcome("c" * 40, status, "1.1.0", "succeeded"))


def test_a_failing_revision_retried_keeps_one_entry_and_the_promotion_record() -> None:
    status = _promoted_and_rolled_back()
    record_before = status.history
    for attempt in range(12):
        at = T0 + timedelta(minutes=attempt)
        failing = outcome(
            "f" * 40,
            status,
            "9.9.9",
            "failed",
            started=at,
            finished=at + timedelta(seconds=3),
        )
        status = record(status, failing, history_limit=4)
    head, *rest = status.history
    assert rest == record_before  # the promotion and the rollback survive the retry loop
    assert (head.revision, head.result, head.attempts) == ("f" * 40, "Failed", 12)
    assert head.started == T0  # the first attempt
    assert head.last_attempt == T0 + timedelta(minutes=11)
    assert head.finished == T0 + timedelta(minutes=11, seconds=3)
    assert rest[0].changes[0].rollback  # the rollback is recorded as such


def test_another_result_of_the_same_revision_is_its_own_entry() -> None:
    good = applied()
    failed = record(good, outcome("b" * 40, good, "1.2.0", "failed"))
    timed_out = record(failed, outcome("b" * 40, failed, "1.2.0", "timedOut"))
    again = record(timed_out, outcome("b" * 40, timed_out, "1.2.0", "failed"))
    assert [(h.result, h.attempts) for h in again.history] == [
        ("Failed", 2),
        ("TimedOut", 1),
        ("Succeeded", 1),
    ]


def test_only_a_new_entry_or_another_ready_reason_is_news() -> None:
    good = applied()
    failed = record(good, outcome("b" * 40, good, "1.2.0", "failed"))
    retried = record(failed, outcome("b" * 40, failed, "1.2.0", "failed"))
    assert changed(good, failed)
    assert retried.dump() != failed.dump()  # the attempt count moved: the status is written
    assert not changed(failed, retried)  # but nothing new happened: no event
    fixed = record(retried, outcome("c" * 40, retried, "1.1.0", "succeeded"))
    assert changed(retried, fixed)


# ---------------------------------------------------------------------------------------------
# Blocks are those of the applied revision


def test_a_revert_after_a_failure_shows_every_block_applied() -> None:
    good = applied("1.1.0")
    failed = record(good, outcome("b" * 40, good, "1.2.0", "failed"))
    assert (failed.blocks[0].phase, failed.blocks_summary) == ("Failed", "0/1")
    reverted = record(failed, outcome("c" * 40, failed, "1.1.0", "succeeded"))
    assert reverted.history == failed.history  # the revert ran nothing: 1.1.0 is applied
    ready = reverted.condition("Ready")
    assert ready is not None and ready.status == "True"
    (block,) = reverted.blocks
    assert (block.phase, block.version, block.from_, block.digest) == (
        "Applied",
        "1.1.0",
        f"{APP}:1.1.0",
        DIGEST,
    )
    assert reverted.blocks_summary == "1/1"
    assert reverted.dump()["blocksSummary"] == "1/1"


def test_the_applied_revision_back_after_a_failed_attempt_is_reconciled_again() -> None:
    good = applied()
    assert is_applied(good, "a" * 40)
    failed = record(good, outcome("b" * 40, good, "1.2.0", "failed"))
    # The branch was reset to the applied commit: the failed attempt may have moved blocks.
    assert not is_applied(failed, "a" * 40)
    back = record(failed, outcome("a" * 40, failed, "1.1.0", "succeeded"))
    assert is_applied(back, "a" * 40) and back.blocks_summary == "1/1"


# ---------------------------------------------------------------------------------------------
# Failures say what failed; Stalled=False says why not


def _pull_failed(status: WorkspaceStatus, error: CratekeeperError) -> ReconcileOutcome:
    (run,) = plan(ws("1.2.0"), applied_blocks(status)).runs
    failed = RunOutcome(run, "failed", None, T0, message=f"app: {error}", error=error)
    return outcome("b" * 40, status, "1.2.0", "failed", runs=(failed,))


def test_a_pull_failure_is_a_pull_reason_and_is_retried() -> None:
    good = applied()
    status = record(good, _pull_failed(good, RegistryUnreachableError("registry down")))
    ready, stalled = status.condition("Ready"), status.condition("Stalled")
    assert ready is not None and (ready.status, ready.reason) == ("False", "RegistryUnreachable")
    assert ready.message == "app: registry down"
    assert stalled is not None
    assert (stalled.status, stalled.reason) == ("False", "ProgressingWithRetry")
    assert stalled.message == "RegistryUnreachable: will retry"


def test_tampered_block_content_stalls() -> None:
    good = applied()
    outcome_ = _pull_failed(good, DigestMismatchError("blob sha256:ab does not match"))
    found = failure(outcome_)
    assert found is not None and (found.reason, found.stalled) == ("DigestMismatch", True)
    status = record(good, outcome_)
    stalled = status.condition("Stalled")
    assert stalled is not None and (stalled.status, stalled.reason) == ("True", "DigestMismatch")
    assert "push the block again" in stalled.message


def test_an_error_marked_not_retryable_stalls() -> None:
    class Tampered(RegistryError):
        reason = "PullFailed"
        retryable = False

    found = failure(_pull_failed(applied(), Tampered("checksum label does not match")))
    assert found is not None and (found.reason, found.stalled) == ("PullFailed", True)


def test_stalled_false_says_applied_after_a_success() -> None:
    stalled = applied().condition("Stalled")
    assert stalled is not None
    assert (stalled.status, stalled.reason) == ("False", "Applied")


def test_a_failure_before_any_revision_is_retrying_not_succeeded() -> None:
    new = failed_status(applied(), "GitUnreachable", "cannot reach git", 3, stalled=False)
    stalled = new.condition("Stalled")
    assert stalled is not None and (stalled.status, stalled.reason) == (
        "False",
        "ProgressingWithRetry",
    )


# ---------------------------------------------------------------------------------------------
# A stored status that does not validate is salvaged, never treated as empty


def _stored(**damage: object) -> dict[str, Any]:
    status = _promoted_and_rolled_back()
    raw = status.dump()
    raw.update(damage)
    return raw


def test_an_invalid_history_entry_is_left_out_and_the_rest_kept() -> None:
    raw = _stored()
    history = list(raw["history"])  # type: ignore[call-overload]
    history[1] = {**history[1], "result": "Exploded"}  # a value of a newer version
    raw["history"] = history
    salvaged = salvage_status(raw)
    assert salvaged.readable and salvaged.dropped == ("history[1]",)
    status = salvaged.status
    assert status.last_applied_revision == "c" * 40
    assert [h.revision for h in status.history] == ["c" * 40, "a" * 40]
    assert [b.name for b in status.blocks] == ["app"]
    assert status_of(raw) == status  # the operator's reading is the same


def test_a_block_with_an_unknown_phase_is_kept_pending() -> None:
    raw = _stored()
    raw["blocks"] = [{**raw["blocks"][0], "phase": "Drifting"}]  # type: ignore[index]
    status = salvage_status(raw).status
    (block,) = status.blocks
    assert (block.version, block.digest, block.phase) == ("1.1.0", DIGEST, "Pending")
    # Its pin is known, so the planner does not run it again.
    assert plan(ws("1.1.0"), applied_blocks(status)).empty


@pytest.mark.parametrize(
    ("damage", "part"),
    [
        ({"lastAppliedRevision": 42}, "lastAppliedRevision"),
        ({"lastAppliedRef": ["branch:main"]}, "lastAppliedRef"),
        ({"blocks": [{"name": "app"}]}, "blocks[0]"),
        ({"blocks": "app"}, "blocks"),
    ],
)
def test_an_unreadable_applied_state_stops_the_reconcile(
    damage: dict[str, object], part: str
) -> None:
    raw = _stored(**damage)
    salvaged = salvage_status(raw)
    assert not salvaged.readable and salvaged.unreadable == (part,)
    patch = unreadable_patch(raw, salvaged, generation=2)
    assert set(patch) == {"conditions"}  # history, blocks and revisions stay as stored
    conds = {c["type"]: c for c in patch["conditions"]}
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("False", "StatusUnreadable")
    assert part in conds["Ready"]["message"] and "kubectl edit" in conds["Ready"]["message"]
    assert (conds["Stalled"]["status"], conds["Stalled"]["reason"]) == ("True", "StatusUnreadable")
    # Written once: the next tick finds nothing to write.
    again = {**raw, **patch}
    assert unreadable_patch(again, salvage_status(again), generation=2) == {}


def test_a_damaged_state_file_is_salvaged_or_stops_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "state.json"
    raw = _stored()
    raw["history"] = [*raw["history"], {"revision": 1}]  # type: ignore[misc]
    path.write_text(json.dumps(raw))
    assert [h.revision for h in load_state(path).history] == ["c" * 40, "b" * 40, "a" * 40]
    assert "history[3] do not validate and are left out" in capsys.readouterr().err
    path.write_text(json.dumps(_stored(lastAppliedRevision=None, blocks=[{"name": "app"}])))
    with pytest.raises(StatusUnreadableError, match=r"blocks\[0\] do not validate"):
        load_state(path)
    path.write_text("{not json")
    with pytest.raises(StatusUnreadableError, match="not a cratekeeper state file"):
        load_state(path)
