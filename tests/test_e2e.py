"""Against a real cluster with the chart installed (.github/workflows/e2e.yml: kind).

Every test here skips, with the reason, unless ``KUBECONFIG`` names a reachable cluster; set
``CRATEKEEPER_E2E_REQUIRED=1`` (as the workflow does) to turn those skips into failures. The
release is found by ``CRATEKEEPER_E2E_NAMESPACE`` (``cratekeeper-system``) and
``CRATEKEEPER_E2E_RELEASE`` (``cratekeeper``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests.support.tools import ToolsUnavailable, kube_tools

pytestmark = pytest.mark.e2e

CRD = "workspaces.cratekeeper.dev"


@dataclass(frozen=True)
class Cluster:
    kubectl: str
    namespace: str
    release: str

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        proc = subprocess.run(
            [self.kubectl, *args], input=stdin, capture_output=True, text=True, timeout=300
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout if proc.returncode == 0 else proc.stderr

    def apply(self, manifest: dict[str, Any], *, check: bool = True) -> str:
        return self.run("apply", "-f", "-", stdin=yaml.safe_dump(manifest), check=check)

    def get(self, *args: str) -> Any:
        return json.loads(self.run("get", *args, "-o", "json"))


def _unavailable(reason: str) -> None:
    if os.environ.get("CRATEKEEPER_E2E_REQUIRED") == "1":
        pytest.fail(f"e2e required but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        _unavailable("KUBECONFIG is not set: e2e tests need a real cluster (docs/install.md)")
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        try:
            kubectl = str(kube_tools().kubectl)
        except ToolsUnavailable as exc:
            _unavailable(f"no kubectl: {exc}")
    assert kubectl
    try:
        proc = subprocess.run(
            [kubectl, "get", "--raw", "/readyz", "--request-timeout=10s"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        proc = None
    if proc is None or proc.returncode != 0:
        detail = proc.stderr.strip().splitlines()[-1:] if proc else ["timed out"]
        _unavailable(f"the cluster of KUBECONFIG={kubeconfig} is unreachable: {detail}")
    return Cluster(
        kubectl=kubectl,
        namespace=os.environ.get("CRATEKEEPER_E2E_NAMESPACE", "cratekeeper-system"),
        release=os.environ.get("CRATEKEEPER_E2E_RELEASE", "cratekeeper"),
    )


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace for the test's Workspaces, deleted afterwards."""
    name = f"ck-e2e-{uuid.uuid4().hex[:8]}"
    cluster.run("create", "namespace", name)
    yield name
    cluster.run("delete", "namespace", name, "--wait=false", check=False)


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
    assert header == ["NAME", "READY", "REVISION", "BLOCKS", "STATUS", "AGE"]
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
