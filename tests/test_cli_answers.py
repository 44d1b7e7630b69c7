"""How the operator answers what the CLI asks (pure: controller.operator.requests): suspend
shows once and never nests its note, resume says so, a request is acknowledged once."""

from __future__ import annotations

from datetime import UTC, datetime

from controller.api.spec import REAPPLY_AT
from controller.api.status import WorkspaceStatus
from controller.operator import requests
from controller.status import set_condition

NOW = datetime(2024, 5, 1, tzinfo=UTC)


def applied() -> WorkspaceStatus:
    conds = set_condition([], "Ready", "True", "Succeeded", "Applied revision abc", NOW, 1)
    return WorkspaceStatus(conditions=conds, last_applied_revision="a" * 40)


def test_suspend_is_shown_once_and_its_note_never_nests() -> None:
    first, news = requests.suspend(applied(), 2)
    again, more = requests.suspend(first, 2)
    ready = again.condition("Ready")
    assert ready is not None and ready.status == "True"
    assert ready.message == f"{requests.SUSPENDED_NOTE}; last: Applied revision abc"
    assert [reason for _, reason, _ in news] == ["Suspended"] and more == []
    assert again == first  # nothing to write on the next tick


def test_resume_sets_suspended_false_with_an_event() -> None:
    resumed, news = requests.resume(requests.suspend(applied(), 2)[0], 3)
    suspended = resumed.condition("Suspended")
    assert suspended is not None and (suspended.status, suspended.reason) == ("False", "Resumed")
    assert [reason for _, reason, _ in news] == ["Resumed"]
    assert not requests.is_suspended(resumed)


def test_a_request_is_acknowledged_once_with_the_outcome() -> None:
    answered, news = requests.acknowledge(applied(), "2024-05-01T10:00:00Z")
    assert answered.last_handled_reconcile_at == "2024-05-01T10:00:00Z"
    assert news[0][1] == "ReconcileHandled" and "Applied revision abc" in news[0][2]
    assert requests.acknowledge(answered, "2024-05-01T10:00:00Z") == (answered, [])
    assert requests.acknowledge(applied(), None) == (applied(), [])


def test_a_reapply_is_pending_until_its_value_is_answered() -> None:
    body = {"metadata": {"annotations": {REAPPLY_AT: "t1"}}}
    assert requests.reapply_requested(applied(), body) == "t1"
    done = applied().model_copy(update={"last_handled_reapply_at": "t1"})
    assert requests.reapply_requested(done, body) is None
    assert requests.reapply_requested(applied(), {"metadata": {}}) is None
