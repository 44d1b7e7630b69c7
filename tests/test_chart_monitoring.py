"""The chart's Grafana dashboard and PrometheusRule: rendered by the real helm, every PromQL
expression names only metrics (and labels) that the operator exports, and the alerts fire as
docs/install.md says, proven with the real ``promtool test rules`` (Debian's ``prometheus``).

The exported names come from :class:`controller.operator.metrics.OperatorMetrics`' registry at
test time, never from a copied list.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.api.status import Condition, HistoryEntry, WorkspaceStatus
from controller.operator.metrics import OperatorMetrics
from tests.support.tools import KubeTools, ToolsUnavailable, kube_tools

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "cratekeeper"
NAMESPACE = "cratekeeper-system"
KUBERNETES_VERSION = "1.35"
ENABLED = {"grafanaDashboard": {"enabled": True}, "prometheusRule": {"enabled": True}}
ALERTS = {
    "CratekeeperWorkspaceNotReady",
    "CratekeeperWorkspaceStalled",
    "CratekeeperWorkspaceRunsFailing",
    "CratekeeperWorkspaceNoRecentApply",
}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
# Aggregations may put `by (...)` between their name and their parenthesis.
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"}
AGGREGATIONS |= {"bottomk", "topk", "quantile", "limitk", "limit_ratio"}
KEYWORDS = GROUPING | AGGREGATIONS | {"offset", "bool", "and", "or", "unless", "inf", "nan"}


@pytest.fixture(scope="module")
def tools() -> KubeTools:
    try:
        return kube_tools()
    except ToolsUnavailable as exc:
        pytest.skip(f"helm/kubectl unavailable: {exc}")


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus; scripts/setup)")
    return found


def render(tools: KubeTools, values: dict[str, Any]) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [str(tools.helm), "template", "ck", str(CHART), "-n", NAMESPACE, "--values", "-"],
        input=json.dumps(values),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def dashboard(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (configmap,) = of_kind(docs, "ConfigMap")
    loaded: dict[str, Any] = json.loads(configmap["data"]["cratekeeper.json"])
    return loaded


def rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    (rule,) = of_kind(docs, "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


# -- what the operator exports -------------------------------------------------------------------


def exported() -> dict[str, set[str]]:
    """Every series name the operator's registry can expose, with its label names."""
    metrics = OperatorMetrics()
    labels = {
        metric.describe()[0].name: set(names)
        for metric, names in metrics._labelled()  # every metric that has labels
    }
    names: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
        for suffix in suffixes.get(family.type, ("",)):
            extra = {"le"} if suffix == "_bucket" else set()
            names[family.name + suffix] = labels.get(family.name, set()) | extra
    return names


_TOKEN = re.compile(
    r'(?P<str>"(?:[^"\\]|\\.)*")|(?P<var>\$\{?\w+\}?)|(?P<num>\d[\w.]*)'
    r"|(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)|(?P<op>=~|!~|!=|==|=)|(?P<ch>\S)"
)


def references(expr: str) -> tuple[list[tuple[str, set[str]]], set[str]]:
    """The metrics an expression selects (each with the label names it matches on) and the
    label names of its ``by``/``on``/... clauses. Strings, ranges and Grafana variables are
    skipped; an identifier followed by ``(`` is a function."""
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(expr)]
    selected: list[tuple[str, set[str]]] = []
    grouped: set[str] = set()
    braces = brackets = 0
    grouping = False
    for i, (kind, text) in enumerate(tokens):
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "ch":
            braces += {"{": 1, "}": -1}.get(text, 0)
            brackets += {"[": 1, "]": -1}.get(text, 0)
            if text == ")":
                grouping = False
            continue
        if kind != "ident" or brackets:
            continue
        if braces:
            if tokens[i + 1][0] == "op":
                selected[-1][1].add(text)  # a label matcher of the metric before the brace
        elif grouping:
            grouped.add(text)
        elif text in GROUPING and following == "(":
            grouping = True
        elif text not in KEYWORDS and following != "(":
            selected.append((text, set()))
    return selected, grouped


def check_expression(expr: str, where: str, names: dict[str, set[str]]) -> list[str]:
    problems: list[str] = []
    selected, grouped = references(expr)
    if not selected:
        problems.append(f"{where}: selects no metric: {expr}")
    known: set[str] = set()
    for metric, labels in selected:
        if metric not in names:
            problems.append(f"{where}: {metric} is not exported by the operator")
            continue
        known |= names[metric]
        if labels - names[metric]:
            problems.append(f"{where}: {metric} has no label {sorted(labels - names[metric])}")
    if known and grouped - known:
        problems.append(f"{where}: groups by unknown labels {sorted(grouped - known)}")
    return problems


def test_the_expression_reader_finds_metrics_labels_and_groupings() -> None:
    selected, grouped = references(
        'histogram_quantile(0.95, sum by (le) (rate(a_bucket{namespace=~"$namespace"}'
        '[$__rate_interval]))) / on (name) b_total{result!="x"} > 3 unless c'
    )
    assert selected == [("a_bucket", {"namespace"}), ("b_total", {"result"}), ("c", set())]
    assert grouped == {"le", "name"}
    names = {"a_bucket": {"namespace", "le"}, "b_total": {"result", "name"}, "c": set()}
    assert check_expression('a_bucket{nope="1"} + d', "x", names) == [
        "x: a_bucket has no label ['nope']",
        "x: d is not exported by the operator",
    ]


# -- the dashboard -------------------------------------------------------------------------------


def test_dashboard_and_rules_are_off_by_default(tools: KubeTools) -> None:
    docs = render(tools, {})
    assert not of_kind(docs, "PrometheusRule")
    assert not of_kind(docs, "ConfigMap")


def test_dashboard_is_a_configmap_the_grafana_sidecar_picks_up(tools: KubeTools) -> None:
    kv = pytest.importorskip("kubernetes_validate")
    docs = render(
        tools,
        {
            "grafanaDashboard": {
                "enabled": True,
                "namespace": "monitoring",
                "annotations": {"grafana_folder": "GitOps"},
            }
        },
    )
    (configmap,) = of_kind(docs, "ConfigMap")
    kv.validate(configmap, KUBERNETES_VERSION, strict=True)
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "GitOps"}
    board = dashboard(docs)
    assert board["uid"] == "cratekeeper"
    assert board["templating"]["list"][0]["type"] == "datasource"
    titles = {p["title"] for p in board["panels"]}
    assert {"Ready", "Not Ready", "Stalled", "Suspended"} <= titles
    assert {"Runs by result", "Reconcile duration", "Fetch and pull errors"} <= titles
    assert "Time since the last successful apply" in titles
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def test_every_dashboard_query_names_only_exported_metrics(tools: KubeTools) -> None:
    names = exported()
    board = dashboard(render(tools, ENABLED))
    problems: list[str] = []
    exprs = 0
    for panel in board["panels"]:
        for target in panel["targets"]:
            exprs += 1
            problems += check_expression(target["expr"], f"panel {panel['title']!r}", names)
    for variable in board["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((\w+), *(\w+)\)", variable["query"]["query"])
        assert match, f"variable {variable['name']}: {variable['query']}"
        metric, label = match.groups()
        if metric not in names or label not in names[metric]:
            problems.append(f"variable {variable['name']}: {metric} has no label {label}")
    assert exprs >= 10
    assert not problems, "\n".join(problems)


# -- the alert rules -----------------------------------------------------------------------------


def test_every_alert_expression_names_only_exported_metrics(tools: KubeTools) -> None:
    names = exported()
    found = rules(render(tools, ENABLED))
    assert {r["alert"] for r in found} == ALERTS
    problems = [p for r in found for p in check_expression(r["expr"], r["alert"], names)]
    assert not problems, "\n".join(problems)


def test_rule_values_reach_the_alerts(tools: KubeTools) -> None:
    docs = render(
        tools,
        {
            "prometheusRule": {
                "enabled": True,
                "labels": {"release": "prometheus"},
                "additionalLabels": {"team": "platform"},
                "severity": "critical",
                "notReadyFor": "30m",
                "runFailures": {"count": 5, "window": "2h"},
                "maxApplyAgeSeconds": 86400,
            }
        },
    )
    (rule,) = of_kind(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    by_name = {r["alert"]: r for r in rules(docs)}
    assert by_name["CratekeeperWorkspaceNotReady"]["for"] == "30m"
    assert "[2h])) >= 5" in by_name["CratekeeperWorkspaceRunsFailing"]["expr"]
    assert "> 86400" in by_name["CratekeeperWorkspaceNoRecentApply"]["expr"]
    for alert in by_name.values():
        assert alert["labels"] == {"severity": "critical", "team": "platform"}
        assert "{{ $labels.namespace }}/{{ $labels.name }}" in alert["annotations"]["summary"]


def test_values_schema_rejects_a_bad_duration(tools: KubeTools) -> None:
    proc = subprocess.run(
        [str(tools.helm), "template", "ck", str(CHART), "--values", "-"],
        input=json.dumps({"prometheusRule": {"enabled": True, "notReadyFor": "15 minutes"}}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "notReadyFor" in proc.stderr


def _rules_file(tmp_path: Path, docs: list[dict[str, Any]]) -> Path:
    (rule,) = of_kind(docs, "PrometheusRule")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    return path


def test_rules_pass_promtool_check(tools: KubeTools, promtool: str, tmp_path: Path) -> None:
    path = _rules_file(tmp_path, render(tools, ENABLED))
    proc = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 4 rules found" in proc.stdout


def _alert(ws: str, **labels: str) -> dict[str, Any]:
    return {"exp_labels": {"severity": "warning", "namespace": "acme", "name": ws, **labels}}


def test_alerts_fire_as_documented(tools: KubeTools, promtool: str, tmp_path: Path) -> None:
    """promtool plays series minute by minute from t=0 (Unix time 0) and evaluates the rules."""
    values = ENABLED | {"prometheusRule": {"enabled": True, "maxApplyAgeSeconds": 300}}
    path = _rules_file(tmp_path, render(tools, values))

    def condition(ws: str, kind: str, values: str) -> dict[str, str]:
        labels = f'namespace="acme", name="{ws}", condition="{kind}"'
        return {"series": f"cratekeeper_workspace_condition{{{labels}}}", "values": values}

    series = [
        # broken: never Ready; suspended: not Ready but suspended; healthy: Ready throughout.
        condition("broken", "Ready", "0x30"),
        condition("broken", "Suspended", "0x30"),
        condition("suspended", "Ready", "0x30"),
        condition("suspended", "Suspended", "1x30"),
        condition("healthy", "Ready", "1x30"),
        condition("healthy", "Suspended", "0x30"),
        condition("broken", "Stalled", "1x30"),
        condition("healthy", "Stalled", "0x30"),
        {
            "series": 'cratekeeper_runs_total{namespace="acme", name="broken", result="Failed"}',
            "values": "0+1x30",
        },
        {
            "series": 'cratekeeper_runs_total{namespace="acme", name="healthy", '
            'result="Succeeded"}',
            "values": "0+1x30",
        },
        # broken applied at t=0 (20 minutes before the check); healthy at t=1140s.
        {
            "series": 'cratekeeper_last_successful_apply_timestamp_seconds{namespace="acme", '
            'name="broken"}',
            "values": "0x30",
        },
        {
            "series": 'cratekeeper_last_successful_apply_timestamp_seconds{namespace="acme", '
            'name="healthy"}',
            "values": "1140x30",
        },
    ]
    tests = {
        "rule_files": [str(path)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    # Not Ready for 10 minutes is not yet 15.
                    {"eval_time": "10m", "alertname": "CratekeeperWorkspaceNotReady"},
                    {
                        "eval_time": "20m",
                        "alertname": "CratekeeperWorkspaceNotReady",
                        "exp_alerts": [_alert("broken")],
                    },
                    {
                        "eval_time": "20m",
                        "alertname": "CratekeeperWorkspaceStalled",
                        "exp_alerts": [_alert("broken")],
                    },
                    {
                        "eval_time": "20m",
                        "alertname": "CratekeeperWorkspaceRunsFailing",
                        "exp_alerts": [_alert("broken")],
                    },
                    {
                        "eval_time": "20m",
                        "alertname": "CratekeeperWorkspaceNoRecentApply",
                        "exp_alerts": [_alert("broken")],
                    },
                ],
            }
        ],
    }
    # The texts are checked by test_rule_values_reach_the_alerts; here only who fires, when.
    rules_doc = yaml.safe_load(path.read_text())
    for group in rules_doc["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    path.write_text(yaml.safe_dump(rules_doc))
    test_file = tmp_path / "tests.yaml"
    test_file.write_text(yaml.safe_dump(tests))
    proc = subprocess.run(
        [promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_docs_list_every_metric_the_operator_exports() -> None:
    families = {family.name for family in OperatorMetrics().registry.collect()}
    for doc in (ROOT / "docs" / "install.md", ROOT / "docs" / "operator.md"):
        text = doc.read_text()
        for name in families:
            counter = f"{name}_total"
            assert f"`{name}`" in text or f"`{counter}`" in text, f"{doc.name} omits {name}"


# -- the gauges behind them ----------------------------------------------------------------------


def _sample(metrics: OperatorMetrics, metric: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(metric, labels)


def test_status_sets_the_condition_gauges_and_the_last_apply_from_history() -> None:
    metrics = OperatorMetrics()
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    earlier = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)
    status = WorkspaceStatus(
        conditions=[
            Condition(type="Ready", status="True", reason="Succeeded", lastTransitionTime=now),
            Condition(type="Stalled", status="False", reason="Applied", lastTransitionTime=now),
        ],
        history=[
            HistoryEntry(revision="b" * 40, result="Failed", started=now, finished=now),
            HistoryEntry(revision="a" * 40, result="Succeeded", started=earlier, finished=earlier),
        ],
    )
    metrics.observe("acme", "staging", status, suspended=False)
    gauge = "cratekeeper_workspace_condition"
    assert _sample(metrics, gauge, namespace="acme", name="staging", condition="Ready") == 1
    assert _sample(metrics, gauge, namespace="acme", name="staging", condition="Stalled") == 0
    assert _sample(metrics, gauge, namespace="acme", name="staging", condition="Reconciling") == 0
    assert _sample(metrics, gauge, namespace="acme", name="staging", condition="Suspended") == 0
    last = "cratekeeper_last_successful_apply_timestamp_seconds"
    assert _sample(metrics, last, namespace="acme", name="staging") == earlier.timestamp()

    metrics.observe("acme", "staging", WorkspaceStatus(), suspended=True)
    assert _sample(metrics, gauge, namespace="acme", name="staging", condition="Ready") == 0
    assert _sample(metrics, gauge, namespace="acme", name="staging", condition="Suspended") == 1
    metrics.forget("acme", "staging")
    assert _sample(metrics, gauge, namespace="acme", name="staging", condition="Ready") is None
