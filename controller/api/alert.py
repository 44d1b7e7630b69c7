"""``Alert`` (a second, namespaced CRD): one alert rule over many Workspaces.

Flux's notification-controller ``Alert`` + ``Provider``, kept to one resource: where to send
(``provider``, ``secretRef``), what (``eventKinds``), about which Workspaces of the Alert's
namespace (``workspaceSelector``, a ``metav1.LabelSelector``), how often (``window``), and
``suspend``. Label-selector matching is here, pure, with Kubernetes' semantics: every
``matchLabels`` pair and every ``matchExpressions`` requirement must hold; an empty selector
selects every Workspace of the namespace (docs/notifications.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controller.api.spec import EVENT_KINDS, AlertSpec, AlertType, Duration, EventKind, SecretRef

ALERT_KIND = "Alert"
ALERT_PLURAL = "alerts"

Provider = Literal["slack", "msteams", "generic-hmac", "generic"]
Operator = Literal["In", "NotIn", "Exists", "DoesNotExist"]

_TYPES: dict[Provider, AlertType] = {
    "slack": "slack",
    "msteams": "teams",
    "generic-hmac": "webhook",
    "generic": "webhook",
}


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)


class LabelSelectorRequirement(_Model):
    """One matchExpressions entry: a key, an operator and (for In/NotIn) values."""

    key: str = Field(min_length=1, description="The label key.")
    operator: Operator = Field(description="In, NotIn, Exists or DoesNotExist.")
    values: list[str] = Field(
        default_factory=list,
        description="Non-empty for In and NotIn; empty for Exists and DoesNotExist.",
    )

    @model_validator(mode="after")
    def _values_fit_the_operator(self) -> LabelSelectorRequirement:
        wants_values = self.operator in ("In", "NotIn")
        if wants_values and not self.values:
            raise ValueError(f"operator {self.operator} needs values, e.g. values: [production]")
        if not wants_values and self.values:
            raise ValueError(f"operator {self.operator} takes no values; remove them")
        return self

    def holds(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this requirement (NotIn holds when the key is absent)."""
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        inside = self.key in labels and labels[self.key] in self.values
        return inside if self.operator == "In" else not inside


class LabelSelector(_Model):
    """A ``metav1.LabelSelector``: all of ``matchLabels`` and ``matchExpressions`` must hold."""

    match_labels: dict[str, str] = Field(
        default_factory=dict, alias="matchLabels", description="Labels that must be equal."
    )
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, alias="matchExpressions", description="Requirements, all hold."
    )

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether an object with ``labels`` is selected (an empty selector selects all)."""
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and all(
            r.holds(labels) for r in self.match_expressions
        )


class AlertResourceSpec(_Model):
    """Alert.spec: which events of which Workspaces go where."""

    provider: Provider = Field(
        description="slack, msteams, generic-hmac (JSON, X-Signature HMAC-SHA256 with the "
        "Secret's token) or generic (the same JSON, unsigned)."
    )
    secret_ref: SecretRef = Field(
        alias="secretRef",
        description="Secret in the Alert's namespace with the webhook URL (key address); for "
        "generic-hmac also the HMAC key (key token).",
    )
    event_kinds: list[EventKind] = Field(
        default_factory=lambda: list(EVENT_KINDS),
        min_length=1,
        alias="eventKinds",
        description="The event kinds sent (default: all).",
    )
    workspace_selector: LabelSelector = Field(
        default_factory=LabelSelector,
        alias="workspaceSelector",
        description="Workspaces of this namespace whose labels match (default: all of them).",
    )
    suspend: bool = Field(default=False, description="Send nothing while true.")
    window: Duration = Field(
        default="1h",
        description="At most one alert per Workspace, event kind and revision in this window.",
    )

    def channel(self) -> AlertSpec:
        """The same channel as a ``spec.notify.alerts`` entry (what the notifier sends)."""
        return AlertSpec(
            type=_TYPES[self.provider],
            secret_ref=self.secret_ref,
            events=self.event_kinds,
            window=self.window,
        )

    @property
    def signed(self) -> bool:
        """Whether requests carry ``X-Signature`` (generic-hmac)."""
        return self.provider == "generic-hmac"


def selected(spec: AlertResourceSpec, labels: Mapping[str, str], kind: EventKind) -> bool:
    """Whether the Alert sends event ``kind`` of a Workspace with ``labels``."""
    return not spec.suspend and kind in spec.event_kinds and spec.workspace_selector.matches(labels)
