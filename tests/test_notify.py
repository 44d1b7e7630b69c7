"""Commit statuses and alerts: each forge's and chat service's documented request, checked on a
real local HTTP server; retries, rate limits, and nothing secret in a message or a log."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import socket
from datetime import UTC, datetime
from typing import Any

import pytest

from controller.api.spec import CommitStatusSpec, WorkspaceSpec
from controller.api.status import Change, HistoryEntry
from controller.errors import NotifyError, RunError, WorkspaceError
from controller.kube import Secret
from controller.notify import Notifier, Policy, RateLimiter
from controller.notify.alerts import Notice, alert_request
from controller.notify.events import notices
from controller.notify.forges import Forge, forge_of, status_request
from controller.notify.http import send
from controller.status import ReconcileOutcome, failure
from tests.support.http_recorder import HttpRecorder

SHA = "3f786850e387550fdab836ed7e6dc881de23001b"
TOKEN = "ghp_s3cr3t-t0ken"
FAST = Policy(attempts=3, timeout=2.0, backoff=0.01)
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def spec(**fields: Any) -> CommitStatusSpec:
    return CommitStatusSpec.model_validate({"secretRef": {"name": "forge"}, **fields})


# -- where the repository lives ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/acme/ws.git", Forge("github", "https://api.github.com", "acme/ws")),
        ("git@github.com:acme/ws.git", Forge("github", "https://api.github.com", "acme/ws")),
        (
            "ssh://git@gitlab.com:2222/acme/platform/ws.git",
            Forge("gitlab", "https://gitlab.com/api/v4", "acme/platform/ws"),
        ),
        (
            "https://gitea.acme.internal/acme/ws",
            Forge("gitea", "https://gitea.acme.internal/api/v1", "acme/ws"),
        ),
        ("git@codeberg.org:acme/ws.git", Forge("gitea", "https://codeberg.org/api/v1", "acme/ws")),
    ],
)
def test_the_forge_and_repository_come_from_the_source_url(url: str, expected: Forge) -> None:
    assert forge_of(url, spec()) == expected


def test_github_enterprise_and_self_hosted_gitlab_are_named_by_provider_and_api_url() -> None:
    assert forge_of("git@ghe.acme.com:acme/ws.git", spec(provider="github")) == Forge(
        "github", "https://ghe.acme.com/api/v3", "acme/ws"
    )
    given = spec(provider="gitlab", apiURL="https://code.acme.com/gitlab/api/v4/")
    assert forge_of("https://code.acme.com/gitlab/acme/ws.git", given).api_url == (
        "https://code.acme.com/gitlab/api/v4"
    )


def test_a_source_the_forge_cannot_be_told_from_says_what_to_set() -> None:
    with pytest.raises(NotifyError, match="set provider"):
        forge_of("https://git.acme.com/acme/ws.git", spec())
    with pytest.raises(NotifyError, match="set apiURL and repository"):
        forge_of("file:///srv/git/ws", spec(provider="gitea"))
    explicit = spec(provider="gitea", apiURL="http://127.0.0.1:3000/api/v1", repository="acme/ws")
    assert forge_of("file:///srv/git/ws", explicit).repository == "acme/ws"


def test_a_misspelt_event_kind_or_an_api_url_with_credentials_is_refused_in_the_spec() -> None:
    source = {"url": "https://github.com/acme/ws.git"}
    slack = {"type": "slack", "secretRef": {"name": "s"}}
    with pytest.raises(ValueError, match="RunFailed"):
        WorkspaceSpec.model_validate(
            {"source": source, "notify": {"alerts": [{**slack, "events": ["RunFaild"]}]}}
        )
    with pytest.raises(ValueError, match="apiURL"):
        spec(apiURL="https://user:pass@ghe.acme.com/api/v3")
    defaults = WorkspaceSpec.model_validate({"source": source, "notify": {"alerts": [slack]}})
    (alert,) = defaults.notify.alerts
    assert alert.window == "1h" and "Stalled" in alert.events and "DriftFound" in alert.events


# -- each forge's documented request, on a real server --------------------------------------


def test_github_status_is_posted_with_bearer_token_and_the_documented_body(
    http_recorder: HttpRecorder,
) -> None:
    forge = Forge("github", http_recorder.url, "acme/ws")
    request = status_request(
        forge,
        SHA,
        "pending",
        context="cratekeeper/acme-production-1",
        description="applying: app 1.2.0",
        token=TOKEN,
    )
    assert send(request, FAST) == 201
    (got,) = http_recorder.requests
    assert (got.method, got.path) == ("POST", f"/repos/acme/ws/statuses/{SHA}")
    assert got.headers["authorization"] == f"Bearer {TOKEN}"
    assert got.headers["accept"] == "application/vnd.github+json"
    assert got.headers["content-type"] == "application/json"
    assert got.json() == {
        "state": "pending",
        "context": "cratekeeper/acme-production-1",
        "description": "applying: app 1.2.0",
    }


def test_gitlab_status_names_the_url_encoded_project_and_uses_its_states(
    http_recorder: HttpRecorder,
) -> None:
    forge = Forge("gitlab", f"{http_recorder.url}/api/v4", "acme/platform/ws")
    for state in ("pending", "success", "failure"):
        send(status_request(forge, SHA, state, context="cratekeeper/ws", description="d",
                            token=TOKEN), FAST)  # fmt: skip
    paths = {r.path for r in http_recorder.requests}
    assert paths == {f"/api/v4/projects/acme%2Fplatform%2Fws/statuses/{SHA}"}
    assert [r.json()["state"] for r in http_recorder.requests] == ["running", "success", "failed"]
    first = http_recorder.requests[0]
    assert first.headers["private-token"] == TOKEN and "authorization" not in first.headers
    assert first.json()["name"] == "cratekeeper/ws"


def test_gitea_status_uses_the_token_scheme_and_its_states(http_recorder: HttpRecorder) -> None:
    forge = Forge("gitea", f"{http_recorder.url}/api/v1", "acme/ws")
    send(status_request(forge, SHA, "failure", context="cratekeeper/ws", description="d",
                        token=TOKEN), FAST)  # fmt: skip
    (got,) = http_recorder.requests
    assert got.path == f"/api/v1/repos/acme/ws/statuses/{SHA}"
    assert got.headers["authorization"] == f"token {TOKEN}"
    assert got.json() == {"state": "failure", "context": "cratekeeper/ws", "description": "d"}


def test_a_long_description_is_cut_to_each_apis_limit() -> None:
    long = "app: 1.1.0 → 1.2.0, " * 30
    for provider, limit in (("github", 140), ("gitlab", 255), ("gitea", 140)):
        forge = Forge(provider, "https://forge.example", "acme/ws")  # type: ignore[arg-type]
        body = status_request(forge, SHA, "success", context="c", description=long, token="t")
        text = json.loads(body.body)["description"]
        assert len(text) == limit and text.endswith("…")


# -- one retry policy, and nothing secret in what fails -------------------------------------


def test_a_service_that_answers_503_is_retried_until_it_takes_the_request(
    http_recorder: HttpRecorder,
) -> None:
    http_recorder.answer(503, times=2)
    forge = Forge("github", http_recorder.url, "acme/ws")
    request = status_request(forge, SHA, "success", context="c", description="d", token=TOKEN)
    assert send(request, FAST) == 201
    assert len(http_recorder.requests) == 3


def test_a_refused_token_is_not_retried_and_the_error_never_shows_it(
    http_recorder: HttpRecorder,
) -> None:
    http_recorder.answer(401)
    forge = Forge("github", http_recorder.url, "acme/ws")
    request = status_request(forge, SHA, "success", context="c", description="d", token=TOKEN)
    with pytest.raises(NotifyError) as caught:
        send(request, FAST)
    assert len(http_recorder.requests) == 1
    assert "HTTP 401" in str(caught.value) and "token is refused" in str(caught.value)
    assert TOKEN not in str(caught.value) and TOKEN not in repr(request)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_service_that_is_down_fails_after_bounded_tries_without_naming_the_url() -> None:
    secret_url = f"http://127.0.0.1:{free_port()}/services/T000/B000/XXXXsecret"
    notice = Notice(kind="RunFailed", namespace="acme", name="ws", revision=SHA)
    request = alert_request("slack", notice, secret_url, None, "slack alert (alerts[0])")
    with pytest.raises(NotifyError, match="cannot connect") as caught:
        send(request, FAST)
    assert "XXXXsecret" not in str(caught.value) and "127.0.0.1" not in str(caught.value)


# -- alert payloads ---------------------------------------------------------------------------


def failed_notice() -> Notice:
    return Notice(
        kind="RunFailed",
        namespace="acme",
        name="acme-production-1",
        revision=SHA,
        subject="app-deploy -> 1.2.0",
        reason="RunFailed",
        message="app deploy failed at task 'Deployment'",
        changes=["app: 1.1.0 → 1.2.0"],
    )


def test_slack_gets_a_text_fallback_and_blocks(http_recorder: HttpRecorder) -> None:
    url = f"{http_recorder.url}/services/T000/B000/XXXX"
    send(alert_request("slack", failed_notice(), url, None, "slack"), FAST)
    (got,) = http_recorder.requests
    assert got.path == "/services/T000/B000/XXXX"
    body = got.json()
    assert "acme/acme-production-1: run failed at 3f786850e387" in body["text"]
    details = body["blocks"][1]["text"]["text"]
    assert "app: 1.1.0 → 1.2.0" in details and "Reason: RunFailed" in details


def test_teams_gets_one_adaptive_card_attachment(http_recorder: HttpRecorder) -> None:
    send(alert_request("teams", failed_notice(), f"{http_recorder.url}/workflows/x", None, "t"),
         FAST)  # fmt: skip
    body = http_recorder.requests[0].json()
    assert body["type"] == "message"
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"]
    assert card["body"][0]["text"].startswith("acme/acme-production-1: run failed")


def test_the_generic_webhook_is_signed_like_fluxs_generic_hmac(
    http_recorder: HttpRecorder,
) -> None:
    key = b"hmac-key"
    send(alert_request("webhook", failed_notice(), f"{http_recorder.url}/hook", key, "w"), FAST)
    (got,) = http_recorder.requests
    expected = "sha256=" + hmac.new(key, got.body, hashlib.sha256).hexdigest()
    assert got.headers["x-signature"] == expected
    body = got.json()
    assert body["apiVersion"] == "cratekeeper.dev/v1alpha1" and body["kind"] == "WorkspaceEvent"
    assert body["event"] == "RunFailed"
    assert body["workspace"] == {"namespace": "acme", "name": "acme-production-1"}
    assert body["revision"] == SHA and body["changes"] == ["app: 1.1.0 → 1.2.0"]


# -- what a recorded outcome tells ----------------------------------------------------------


def outcome(error: Exception | None = None) -> ReconcileOutcome:
    return ReconcileOutcome(
        revision=SHA,
        subject="app-deploy -> 1.2.0",
        author="dev",
        action="deploy",
        started=NOW,
        finished=NOW,
        error=error,  # type: ignore[arg-type]
    )


def entry(rollback: bool = False) -> HistoryEntry:
    change = Change(
        block="app", from_="r/app:1.2.0", to="r/app:1.1.0", reason="pin", rollback=rollback
    )
    return HistoryEntry(
        revision=SHA, changes=[change], result="Succeeded", started=NOW, finished=NOW
    )


def test_an_applied_revert_is_a_success_and_a_rollback() -> None:
    kinds = [n.kind for n in notices("acme", "ws", outcome(), entry(rollback=True), None)]
    assert kinds == ["RunSucceeded", "RollbackApplied"]


def test_a_failure_a_retry_may_fix_is_run_failed_and_an_invalid_workspace_stalls() -> None:
    failed = outcome(RunError("app deploy failed"))
    (notice,) = notices("acme", "ws", failed, entry(), failure(failed))
    assert (notice.kind, notice.reason) == ("RunFailed", "RunFailed")
    invalid = outcome(WorkspaceError("workspace.poly:3: block 'app': 'from' has no tag"))
    (notice,) = notices("acme", "ws", invalid, None, failure(invalid))
    assert notice.kind == "Stalled" and "workspace.poly:3" in notice.message


def test_the_rate_limiter_lets_one_alert_per_key_through_per_window() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0], max_keys=2)
    assert limiter.allow("a", 60) and not limiter.allow("a", 60)
    now[0] = 61.0
    assert limiter.allow("a", 60)
    assert limiter.allow("b", 60) and limiter.allow("c", 60)
    assert limiter.allow("a", 60)  # forgotten: only the newest two keys are kept


# -- the notifier: off the reconcile path, in order, counted ---------------------------------


class Secrets:
    """The notifier's SecretReader protocol, from a dict (the boundary, as Kube serves it)."""

    def __init__(self, data: dict[str, dict[str, bytes]]) -> None:
        self.data = data

    async def get_secret(self, namespace: str, name: str) -> Secret | None:
        found = self.data.get(name)
        if found is None:
            return None
        return Secret(name, namespace, "uid", {}, (), found)


def workspace_spec(api: str, alerts: list[dict[str, Any]]) -> WorkspaceSpec:
    return WorkspaceSpec.model_validate(
        {
            "source": {"url": "https://github.com/acme/ws.git"},
            "notify": {
                "commitStatus": {"secretRef": {"name": "forge"}, "apiURL": api},
                "alerts": alerts,
            },
        }
    )


def test_statuses_go_out_in_order_and_a_retry_loop_alerts_once(
    http_recorder: HttpRecorder,
) -> None:
    secrets = Secrets(
        {
            "forge": {"token": TOKEN.encode()},
            "slack": {"address": f"{http_recorder.url}/slack/T/B/X".encode()},
        }
    )
    failures: list[tuple[str, str, str]] = []
    ws = workspace_spec(http_recorder.url, [{"type": "slack", "secretRef": {"name": "slack"}}])

    async def scenario() -> None:
        notifier = Notifier(secrets, policy=FAST, on_failure=lambda *f: failures.append(f))
        failed = outcome(RunError("app deploy failed"))
        for _ in range(3):  # the first attempt and two retries of the same revision
            notifier.started("acme", "ws", ws, SHA, "applying: app 1.2.0")
            notifier.finished("acme", "ws", ws, failed, entry(), failure(failed))
        await notifier.idle()

    asyncio.run(scenario())
    states = [r.json()["state"] for r in http_recorder.to("/repos/")]
    assert states == ["pending", "failure"] * 3
    assert len(http_recorder.to("/slack/")) == 1
    assert failures == []


def test_a_forge_that_is_down_or_a_missing_secret_is_counted_and_logged_without_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    secrets = Secrets({"forge": {"token": TOKEN.encode()}})
    failures: list[tuple[str, str, str]] = []
    ws = workspace_spec(down, [{"type": "slack", "secretRef": {"name": "missing"}}])

    async def scenario() -> None:
        notifier = Notifier(secrets, policy=FAST, on_failure=lambda *f: failures.append(f))
        notifier.finished("acme", "ws", ws, outcome(), entry(), None)
        await notifier.idle()

    with caplog.at_level(logging.WARNING, logger="cratekeeper.notify"):
        asyncio.run(scenario())
    assert sorted(failures) == [("acme", "ws", "github"), ("acme", "ws", "slack")]
    logged = caplog.text
    assert "cannot connect" in logged and "Secret acme/missing not found" in logged
    assert TOKEN not in logged


def test_drift_found_alerts_the_channels_that_take_it_once_per_revision(
    http_recorder: HttpRecorder,
) -> None:
    secrets = Secrets(
        {
            "drift": {"address": f"{http_recorder.url}/slack/drift".encode()},
            "runs": {"address": f"{http_recorder.url}/slack/runs".encode()},
        }
    )
    ws = workspace_spec(
        http_recorder.url,
        [
            {"type": "slack", "secretRef": {"name": "drift"}, "events": ["DriftFound"]},
            {"type": "slack", "secretRef": {"name": "runs"}, "events": ["RunFailed"]},
        ],
    )

    async def scenario() -> None:
        notifier = Notifier(secrets, policy=FAST)
        for _ in range(2):  # the next check finds the same drift: no second alert
            notifier.drifted("acme", "ws", ws, SHA, "app: task 'Deployment' would change")
        await notifier.idle()

    asyncio.run(scenario())
    sent = http_recorder.to("/slack/drift")
    assert len(sent) == 1
    assert "task 'Deployment' would change" in sent[0].body.decode()
    assert http_recorder.to("/slack/runs") == []
