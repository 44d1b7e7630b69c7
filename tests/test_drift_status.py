"""The Drifted condition from a drift report (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from controller.api.status import WorkspaceStatus
from controller.drift import BlockDrift, DriftReport, drifted_condition, with_drifted
from controller.errors import WorkspaceError

SHA = "a" * 40
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def report(*blocks: BlockDrift, error: WorkspaceError | None = None) -> DriftReport:
    return DriftReport(SHA, blocks, NOW, error)


def test_blocks_in_sync_are_no_drift_at_the_applied_revision() -> None:
    state, reason, message = drifted_condition(report(BlockDrift("app", "InSync")))
    assert (state, reason) == ("False", "NoDrift")
    assert SHA[:12] in message


def test_drift_names_the_block_and_its_changed_tasks() -> None:
    found = report(
        BlockDrift("app", "Drifted", tasks=("Deployment", "Service")), BlockDrift("db", "InSync")
    )
    state, reason, message = drifted_condition(found)
    assert (state, reason) == ("True", "DriftDetected")
    assert "block app: task 'Deployment', task 'Service'" in message
    assert "db" not in message


def test_a_script_action_is_reported_as_check_mode_unsupported_not_as_drift() -> None:
    why = "action 'deploy' is a script: scripts have no check mode"
    state, reason, message = drifted_condition(
        report(BlockDrift("tool", "CheckModeUnsupported", why=why), BlockDrift("app", "InSync"))
    )
    assert (state, reason) == ("Unknown", "CheckModeUnsupported")
    assert "block tool: action 'deploy' is a script" in message


def test_drift_elsewhere_still_names_the_blocks_check_mode_could_not_judge() -> None:
    state, reason, message = drifted_condition(
        report(
            BlockDrift("app", "Drifted", tasks=("Deployment",)),
            BlockDrift("tool", "CheckModeUnsupported", why="task 'x' fails in check mode"),
        )
    )
    assert (state, reason) == ("True", "DriftDetected")
    assert "not checked: block tool: task 'x' fails in check mode" in message


def test_an_unreadable_applied_revision_is_a_failed_check_not_drift() -> None:
    error = WorkspaceError("workspace.poly:1: broken")
    state, reason, _ = drifted_condition(report(error=error))
    assert (state, reason) == ("Unknown", "DriftCheckFailed")


def test_the_drifted_condition_keeps_the_rest_of_the_status() -> None:
    status = WorkspaceStatus(last_applied_revision=SHA)
    new = with_drifted(status, "True", "DriftDetected", "m", NOW, 3)
    assert new.last_applied_revision == SHA
    drifted = new.condition("Drifted")
    assert drifted is not None and (drifted.status, drifted.observed_generation) == ("True", 3)
    assert status.condition("Drifted") is None  # the input is not modified
