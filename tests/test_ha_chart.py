"""The chart's replicas and shards: one Deployment and Service per instance, leader election
when there are several replicas, each instance's selector and Lease (docs/high-availability.md)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from controller.operator.shards import SHARD_KEY, parse_selector
from controller.settings import Settings
from tests.support.tools import KubeTools
from tests.test_chart import CHART, KUBERNETES_VERSION, NAMESPACE, _helm, kv, tools

__all__ = ["kv", "tools"]  # the fixtures, shared with tests/test_chart.py

SHARDED = {"replicas": 2, "shards": ["shard1", "shard2"]}


def rendered(tools: KubeTools, values: dict[str, Any]) -> list[dict[str, Any]]:
    out = _helm(
        tools,
        "template",
        "ck",
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBERNETES_VERSION,
        values=values,
    )
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def env(deployment: dict[str, Any]) -> dict[str, str]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_shards_make_one_deployment_and_service_each_plus_the_main_one(tools: KubeTools) -> None:
    docs = rendered(tools, SHARDED)
    deployments = by_kind(docs, "Deployment")
    services = by_kind(docs, "Service")
    names = ["ck-cratekeeper", "ck-cratekeeper-shard1", "ck-cratekeeper-shard2"]
    assert sorted(deployments) == sorted(services) == names
    shards = {"ck-cratekeeper": "main", "ck-cratekeeper-shard1": "shard1"}
    shards["ck-cratekeeper-shard2"] = "shard2"
    for name, shard in shards.items():
        pod_labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert pod_labels["cratekeeper.dev/shard"] == shard
        # A shard's Service reaches only that shard's pods (its Workspaces' webhooks go there).
        assert services[name]["spec"]["selector"]["cratekeeper.dev/shard"] == shard
        selector = deployments[name]["spec"]["selector"]["matchLabels"]
        assert all(pod_labels[k] == v for k, v in selector.items())


def test_each_instance_reconciles_its_own_workspaces_and_holds_its_own_lease(
    tools: KubeTools,
) -> None:
    deployments = by_kind(rendered(tools, SHARDED), "Deployment")
    labelled = {
        "main": {},
        "shard1": {SHARD_KEY: "shard1"},
        "shard2": {SHARD_KEY: "shard2"},
    }
    for name, deployment in deployments.items():
        values = env(deployment)
        settings = Settings(
            **{
                k.removeprefix("CRATEKEEPER_").lower(): v
                for k, v in values.items()
                if k.startswith("CRATEKEEPER_")
            }
        )
        assert settings.leader_election and settings.lease_name == name
        assert settings.lease_namespace == NAMESPACE
        assert deployment["spec"]["replicas"] == 2
        assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        shard = name.removeprefix("ck-cratekeeper-") if "-shard" in name else None
        assert settings.shard == shard  # its own finalizer: <shard>.cratekeeper.dev/finalizer
        selector = parse_selector(settings.label_selector)
        served = [shard for shard, labels in labelled.items() if selector.matches(labels)]
        assert served == [name.removeprefix("ck-cratekeeper-") if "-shard" in name else "main"]


def test_one_replica_without_shards_is_the_single_recreated_operator(tools: KubeTools) -> None:
    docs = rendered(tools, {})
    (deployment,) = by_kind(docs, "Deployment").values()
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    names = set(env(deployment))
    assert not names & {"CRATEKEEPER_LEADER_ELECTION", "CRATEKEEPER_LABEL_SELECTOR"}
    assert "cratekeeper.dev/shard" not in deployment["spec"]["template"]["metadata"]["labels"]
    assert not by_kind(docs, "Role")  # no Lease, no Lease permissions


def test_leader_election_may_only_get_create_and_update_leases_in_the_release_namespace(
    tools: KubeTools,
) -> None:
    docs = rendered(tools, {"leaderElection": {"enabled": True}})
    role = by_kind(docs, "Role")["ck-cratekeeper-leader-election"]
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "create", "update"],
        }
    ]
    binding = by_kind(docs, "RoleBinding")["ck-cratekeeper-leader-election"]
    assert binding["subjects"][0]["name"] == "ck-cratekeeper"
    (deployment,) = by_kind(docs, "Deployment").values()
    assert deployment["spec"]["replicas"] == 1
    assert env(deployment)["CRATEKEEPER_LEADER_ELECTION"] == "true"


@pytest.mark.parametrize("values", [SHARDED, {"leaderElection": {"enabled": True}}])
def test_replica_and_shard_objects_are_valid_for_kubernetes(
    tools: KubeTools, kv: Any, values: dict[str, Any]
) -> None:
    assert "0 chart(s) failed" in _helm(tools, "lint", "--strict", str(CHART), values=values)
    for doc in rendered(tools, values):
        if doc["kind"] in ("ServiceMonitor", "PrometheusRule"):
            continue
        kv.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("bad", [{"shards": ["Shard_1"]}, {"replicas": 0}, {"shards": ["a", "a"]}])
def test_the_values_schema_refuses_bad_shards_and_replicas(
    tools: KubeTools, bad: dict[str, Any]
) -> None:
    with pytest.raises(AssertionError, match="values don't meet the specifications"):
        rendered(tools, bad)
