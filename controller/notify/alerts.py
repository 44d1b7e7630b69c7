"""Alerts: what happened to a Workspace, and the payload each channel documents (pure).

- Slack incoming webhook: JSON ``{"text": …, "blocks": [...]}``; ``text`` is the fallback
  shown in notifications.
- Microsoft Teams (incoming webhook or a Workflows "post to a channel when a webhook request
  is received" flow): a message with one Adaptive Card attachment,
  ``{"type": "message", "attachments": [{"contentType":
  "application/vnd.microsoft.card.adaptive", "content": {"type": "AdaptiveCard", ...}}]}``.
- Generic webhook: :class:`WebhookPayload` as JSON, signed like Flux's ``generic-hmac``
  provider: ``X-Signature: sha256=<hex HMAC-SHA256 of the body with the Secret's token>``.

Messages carry what the Workspace's status and events already show (names, revisions, block
pins, the failed step's reason and message), never a Secret's contents.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from controller.api.spec import GROUP, VERSION, AlertType, EventKind
from controller.notify.http import Request

SIGNATURE_HEADER = "X-Signature"
MESSAGE_LIMIT = 1000
"""Characters of a failure message put into an alert (the status holds the rest)."""

_TITLES: dict[EventKind, str] = {
    "RunFailed": "run failed",
    "RunSucceeded": "applied",
    "RollbackApplied": "rollback applied",
    "DriftFound": "drift found",
    "Stalled": "stalled",
}
_SLACK_ICONS: dict[EventKind, str] = {
    "RunFailed": ":x:",
    "RunSucceeded": ":white_check_mark:",
    "RollbackApplied": ":rewind:",
    "DriftFound": ":warning:",
    "Stalled": ":octagonal_sign:",
}


class Notice(BaseModel):
    """One thing worth telling people about one Workspace (the generic webhook's ``event``)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    kind: EventKind = Field(description="What happened.")
    namespace: str
    name: str = Field(description="The Workspace.")
    revision: str = Field(description="The commit (full SHA) it is about.")
    subject: str = Field(default="", description="The commit's subject line.")
    reason: str = Field(default="", description="The machine reason (e.g. RunFailed, PullFailed).")
    message: str = Field(default="", description="What happened, in words.")
    changes: list[str] = Field(
        default_factory=list, description="The block changes, as 'block: old → new'."
    )

    @property
    def title(self) -> str:
        return f"{self.namespace}/{self.name}: {_TITLES[self.kind]} at {self.revision[:12]}"

    def lines(self) -> list[str]:
        """The body, one line per fact."""
        out = []
        if self.subject:
            out.append(f"Commit: {self.subject}")
        if self.changes:
            out.append("Changes: " + ", ".join(self.changes))
        if self.reason:
            out.append(f"Reason: {self.reason}")
        if self.message:
            out.append(_clip(self.message))
        return out


class WebhookWorkspace(BaseModel):
    namespace: str
    name: str


class WebhookPayload(BaseModel):
    """The generic webhook's JSON body (documented in docs/notifications.md)."""

    model_config = ConfigDict(populate_by_name=True)

    api_version: str = Field(default=f"{GROUP}/{VERSION}", alias="apiVersion")
    kind: str = "WorkspaceEvent"
    event: EventKind
    workspace: WebhookWorkspace
    revision: str
    subject: str = ""
    reason: str = ""
    message: str = ""
    changes: list[str] = Field(default_factory=list)
    timestamp: datetime


def _clip(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


def slack(notice: Notice) -> dict[str, object]:
    """The Slack incoming-webhook message."""
    title = f"{_SLACK_ICONS[notice.kind]} {notice.title}"
    blocks: list[dict[str, object]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*"}}
    ]
    body = notice.lines()
    if body:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(body)}})
    return {"text": title, "blocks": blocks}


def teams(notice: Notice) -> dict[str, object]:
    """The Teams message: one Adaptive Card."""
    attention = notice.kind in ("RunFailed", "Stalled", "DriftFound")
    card = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": notice.title,
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
                **({"color": "Attention"} if attention else {}),
            },
            *({"type": "TextBlock", "text": line, "wrap": True} for line in notice.lines()),
        ],
    }
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


def webhook(notice: Notice, now: datetime | None = None) -> dict[str, object]:
    """The generic webhook's body."""
    payload = WebhookPayload(
        event=notice.kind,
        workspace=WebhookWorkspace(namespace=notice.namespace, name=notice.name),
        revision=notice.revision,
        subject=notice.subject,
        reason=notice.reason,
        message=_clip(notice.message),
        changes=notice.changes,
        timestamp=now or datetime.now(UTC),
    )
    return payload.model_dump(mode="json", by_alias=True)


def signature(key: bytes, body: bytes) -> str:
    """``sha256=<hex>``: the ``X-Signature`` of ``body`` (Flux's generic-hmac format)."""
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def alert_request(
    kind: AlertType, notice: Notice, address: str, token: bytes | None, label: str
) -> Request:
    """The request that sends ``notice`` to channel ``kind`` at ``address``."""
    payload = slack(notice) if kind == "slack" else teams(notice) if kind == "teams" else None
    if payload is None:
        payload = webhook(notice)
    body = json.dumps(payload, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json"}
    if kind == "webhook" and token:
        headers[SIGNATURE_HEADER] = signature(token, body)
    return Request(address, body, headers, label)
