"""The chart's CRD and operator on a real cluster: the API server's view of Workspaces."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.cluster import Cluster

pytestmark = pytest.mark.e2e

CRD = "workspaces.cratekeeper.dev"


def test_workspace_crd_is_established(cluster: Cluster) -> None:
    cluster.run("wait", "--for=condition=Established", f"crd/{CRD}", "--timeout=60s")
    crd = cluster.get("crd", CRD)
    assert crd["spec"]["names"]["shortNames"] == ["ws"]


def test_operator_deployment_becomes_available(cluster: Cluster) -> None:
    deployment = f"deployment/{cluster.release}"
    cluster.run(
        "-n", cluster.namespace, "wait", "--for=condition=Available", deployment, "--timeout=180s"
    )
    pod = cluster.get("-n", cluster.namespace, "pods", "-l", "app.kubernetes.io/component=operator")
    (item,) = pod["items"]
    (status,) = item["status"]["containerStatuses"]
    assert status["ready"] is True
    assert item["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_workspace_is_accepted_defaulted_and_listed(cluster: Cluster, namespace: str) -> None:
    cluster.apply(
        {
            "apiVersion": "cratekeeper.dev/v1alpha1",
            "kind": "Workspace",
            "metadata": {"name": "acme-staging-1", "namespace": namespace},
            # Suspended: the repository does not exist; this test is about the API only.
            "spec": {
                "source": {"url": "https://git.invalid/acme/acme-staging-1.git"},
                "suspend": True,
            },
        }
    )
    spec = cluster.get("-n", namespace, "workspace", "acme-staging-1")["spec"]
    assert spec["source"]["ref"] == {"branch": "main"}
    assert spec["source"]["interval"] == "5m"
    assert spec["action"] == "deploy"
    assert spec["runner"]["timeout"] == "30m"
    assert spec["historyLimit"] == 10

    table = cluster.run("-n", namespace, "get", "ws")  # the short name works too
    header = table.splitlines()[0].split()
    assert header == ["NAME", "READY", "SUSPENDED", "REVISION", "BLOCKS", "STATUS", "AGE"]
    assert table.splitlines()[1].split()[0] == "acme-staging-1"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"source": {}}, "url"),
        ({"source": {"url": "https://git.invalid/x.git", "ref": {"commit": "main"}}}, "commit"),
        ({"source": {"url": "https://git.invalid/x.git"}, "historyLimit": 0}, "historyLimit"),
    ],
)
def test_invalid_workspace_is_refused_by_the_api_server(
    cluster: Cluster, namespace: str, spec: dict[str, Any], field: str
) -> None:
    out = cluster.apply(
        {
            "apiVersion": "cratekeeper.dev/v1alpha1",
            "kind": "Workspace",
            "metadata": {"name": "broken", "namespace": namespace},
            "spec": spec,
        },
        check=False,
    )
    assert "is invalid" in out and field in out, out
