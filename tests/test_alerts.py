"""The Alert resource: its label selector (pure), its spec's validation and defaults, and its
CRD (generated, structural, shipped by the chart)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from controller.api import crd
from controller.api.alert import AlertResourceSpec, LabelSelector, selected
from controller.api.spec import EVENT_KINDS
from tests.test_chart import chart_crd_template
from tests.test_crd import nodes

ROOT = Path(__file__).resolve().parent.parent
ALERT_CRD = ROOT / "crds" / "alert.yaml"
CHART_ALERT_CRD = ROOT / "charts" / "cratekeeper" / "templates" / "crd-alert.yaml"

PRODUCTION = {"tier": "production", "team": "payments"}
STAGING = {"tier": "staging", "team": "payments"}


def selector(**body: object) -> LabelSelector:
    return LabelSelector.model_validate(body)


def alert(**spec: object) -> AlertResourceSpec:
    return AlertResourceSpec.model_validate(
        {"provider": "slack", "secretRef": {"name": "slack"}, **spec}
    )


# -- label selectors -----------------------------------------------------------------------------


def test_an_empty_selector_selects_every_workspace() -> None:
    assert selector().matches(PRODUCTION) and selector().matches({})


def test_match_labels_must_all_be_equal() -> None:
    both = selector(matchLabels={"tier": "production", "team": "payments"})
    assert both.matches(PRODUCTION)
    assert not both.matches(STAGING)
    assert not both.matches({"tier": "production"})


@pytest.mark.parametrize(
    ("expression", "production", "staging", "unlabelled"),
    [
        ({"key": "tier", "operator": "In", "values": ["production", "dr"]}, True, False, False),
        ({"key": "tier", "operator": "NotIn", "values": ["production"]}, False, True, True),
        ({"key": "tier", "operator": "Exists"}, True, True, False),
        ({"key": "tier", "operator": "DoesNotExist"}, False, False, True),
    ],
)
def test_match_expressions_follow_kubernetes_semantics(
    expression: dict[str, object], production: bool, staging: bool, unlabelled: bool
) -> None:
    chosen = selector(matchExpressions=[expression])
    assert (chosen.matches(PRODUCTION), chosen.matches(STAGING), chosen.matches({})) == (
        production,
        staging,
        unlabelled,
    )


def test_match_labels_and_expressions_must_all_hold() -> None:
    chosen = selector(
        matchLabels={"team": "payments"},
        matchExpressions=[{"key": "tier", "operator": "NotIn", "values": ["staging"]}],
    )
    assert chosen.matches(PRODUCTION)
    assert not chosen.matches(STAGING)
    assert not chosen.matches({"tier": "production", "team": "search"})


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ({"key": "tier", "operator": "In"}, "operator In needs values"),
        ({"key": "tier", "operator": "NotIn", "values": []}, "operator NotIn needs values"),
        ({"key": "tier", "operator": "Exists", "values": ["x"]}, "takes no values"),
        ({"key": "tier", "operator": "Equals", "values": ["x"]}, "'In', 'NotIn', 'Exists'"),
    ],
)
def test_a_wrong_expression_says_what_to_write(expression: dict[str, object], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        selector(matchExpressions=[expression])


# -- the spec ------------------------------------------------------------------------------------


def test_an_alert_sends_every_kind_of_every_workspace_by_default() -> None:
    spec = alert()
    assert spec.event_kinds == list(EVENT_KINDS) and spec.window == "1h" and not spec.suspend
    assert all(selected(spec, {}, kind) for kind in EVENT_KINDS)


def test_an_alert_sends_only_its_kinds_of_the_workspaces_it_selects() -> None:
    spec = alert(
        eventKinds=["RunFailed", "Stalled"],
        workspaceSelector={"matchLabels": {"tier": "production"}},
    )
    assert selected(spec, PRODUCTION, "RunFailed")
    assert not selected(spec, PRODUCTION, "RunSucceeded")
    assert not selected(spec, STAGING, "RunFailed")


def test_a_suspended_alert_sends_nothing() -> None:
    assert not selected(alert(suspend=True), PRODUCTION, "RunFailed")


@pytest.mark.parametrize(
    ("provider", "channel", "signed"),
    [
        ("slack", "slack", False),
        ("msteams", "teams", False),
        ("generic-hmac", "webhook", True),
        ("generic", "webhook", False),
    ],
)
def test_each_provider_is_one_of_the_notifiers_channels(
    provider: str, channel: str, signed: bool
) -> None:
    spec = alert(provider=provider, window="10m", eventKinds=["Stalled"])
    assert spec.channel().type == channel and spec.signed is signed
    assert spec.channel().window == "10m" and spec.channel().events == ["Stalled"]
    assert spec.channel().secret_ref.name == "slack"


@pytest.mark.parametrize(
    "bad",
    [
        {"provider": "discord"},
        {"eventKinds": []},
        {"eventKinds": ["RunExploded"]},
        {"window": "an hour"},
        {"secretRef": {}},
        {"selector": {}},
    ],
)
def test_an_invalid_alert_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        alert(**bad)


# -- the CRD -------------------------------------------------------------------------------------


def test_the_committed_alert_crd_is_the_rendering_of_the_model() -> None:
    assert ALERT_CRD.read_text() == crd.render_yaml("alert"), (
        "crds/alert.yaml is stale: run `python -m controller.api.crd alert > crds/alert.yaml`"
    )
    assert yaml.safe_load(ALERT_CRD.read_text()) == crd.render_alert()


def test_the_chart_ships_the_alert_crd_verbatim() -> None:
    assert CHART_ALERT_CRD.read_text() == chart_crd_template(ALERT_CRD.read_text()), (
        "charts/cratekeeper/templates/crd-alert.yaml is out of date with crds/alert.yaml"
    )


def test_the_alert_schema_is_structural_and_defaults_as_the_model_does() -> None:
    (version,) = crd.render_alert()["spec"]["versions"]
    schema = version["schema"]["openAPIV3Schema"]
    for path, node in nodes(schema):
        assert not {"$ref", "anyOf", "oneOf", "allOf", "$defs", "title"} & node.keys(), path
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
    spec = schema["properties"]["spec"]
    assert spec["required"] == ["provider", "secretRef"]
    props = spec["properties"]
    assert props["provider"]["enum"] == ["slack", "msteams", "generic-hmac", "generic"]
    assert props["eventKinds"]["default"] == list(EVENT_KINDS)
    expression = props["workspaceSelector"]["properties"]["matchExpressions"]["items"]
    assert expression["properties"]["operator"]["enum"] == ["In", "NotIn", "Exists", "DoesNotExist"]
    assert "status" not in version.get("subresources", {})
