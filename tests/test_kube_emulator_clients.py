"""Real clients work against the emulator: the kubernetes client, Kopf, Ansible's
kubernetes.core and kubectl."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import kopf
import kubernetes
import pytest
import yaml

from tests.support.kube_emulator import WORKSPACES, KubeEmulator


@pytest.fixture
def namespace(kube_emulator: KubeEmulator) -> str:
    name = f"test-{uuid.uuid4().hex[:8]}"
    kube_emulator.create("v1/namespaces", {"metadata": {"name": name}})
    return name


def workspace(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "cratekeeper.dev/v1alpha1",
        "kind": "Workspace",
        "metadata": {"name": name},
        "spec": spec,
    }


# --- Real clients --------------------------------------------------------------------------


def test_kubernetes_client_creates_reads_lists_and_patches_a_deployment(
    kubeconfig: Path, namespace: str
) -> None:
    client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    apps = kubernetes.client.AppsV1Api(client)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1"}]},
            },
        },
    }
    created = apps.create_namespaced_deployment(namespace, deployment)
    assert created.metadata.uid and created.metadata.generation == 1
    read = apps.read_namespaced_deployment("web", namespace)
    assert read.spec.template.spec.containers[0].image == "nginx:1"
    listed = apps.list_namespaced_deployment(namespace)
    assert [d.metadata.name for d in listed.items] == ["web"]
    patched = apps.patch_namespaced_deployment("web", namespace, {"spec": {"replicas": 3}})
    assert patched.spec.replicas == 3 and patched.metadata.generation == 2
    with pytest.raises(kubernetes.client.ApiException) as err:
        apps.read_namespaced_deployment("absent", namespace)
    assert err.value.status == 404
    client.close()


def test_kopf_operator_reacts_to_a_workspace_and_patches_its_status(
    kube_emulator: KubeEmulator, namespace: str
) -> None:
    registry = kopf.OperatorRegistry()
    server, token = kube_emulator.connection_info()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=server, token=token)

    @kopf.on.create("cratekeeper.dev", "v1alpha1", "workspaces", registry=registry, id="created")
    def created(spec: kopf.Spec, **_: Any) -> dict[str, str]:
        return {"seen": str(spec.get("url"))}

    settings = kopf.OperatorSettings()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix="cratekeeper.dev"
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="cratekeeper.dev", key="last-handled-configuration"
    )
    settings.posting.enabled = False

    def handled() -> dict[str, Any] | None:
        obj = kube_emulator.get(WORKSPACES, "kopf", namespace=namespace)
        return obj if obj and obj.get("status", {}).get("created") else None

    async def scenario() -> dict[str, Any]:
        stop, ready = asyncio.Event(), asyncio.Event()
        operator = asyncio.create_task(
            kopf.operator(
                registry=registry,
                settings=settings,
                standalone=True,
                clusterwide=True,
                stop_flag=stop,
                ready_flag=ready,
            )
        )
        try:
            await asyncio.wait_for(ready.wait(), timeout=10)
            kube_emulator.create(
                WORKSPACES, workspace("kopf", url="https://git.example/ws"), namespace=namespace
            )
            return await kube_emulator.until(handled, timeout=10)
        finally:
            stop.set()
            await asyncio.wait_for(operator, timeout=10)

    obj = asyncio.run(scenario())
    assert obj["status"]["created"] == {"seen": "https://git.example/ws"}
    annotations = obj["metadata"]["annotations"]
    assert "cratekeeper.dev/last-handled-configuration" in annotations
    assert kube_emulator.errors() == []


def find_tool(name: str) -> str | None:
    """A tool next to this interpreter (the venv) or on PATH."""
    sibling = Path(sys.executable).with_name(name)
    return str(sibling) if sibling.exists() else shutil.which(name)


PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - kubernetes.core.k8s:
        definition: {apiVersion: v1, kind: Namespace, metadata: {name: NS}}
    - kubernetes.core.k8s:
        namespace: NS
        definition:
          apiVersion: apps/v1
          kind: Deployment
          metadata: {name: web, labels: {app: web}}
          spec:
            replicas: 2
            selector: {matchLabels: {app: web}}
            template:
              metadata: {labels: {app: web}}
              spec:
                containers:
                  - {name: web, image: "nginx:1.27", ports: [{containerPort: 80}]}
    - kubernetes.core.k8s:
        namespace: NS
        definition:
          apiVersion: v1
          kind: Service
          metadata: {name: web}
          spec:
            selector: {app: web}
            ports: [{port: 80, targetPort: 80}]
"""


@pytest.mark.skipif(
    find_tool("ansible-playbook") is None,
    reason="ansible-playbook is not installed (pip install ansible==12.3.0)",
)
def test_ansible_k8s_module_applies_manifests_idempotently(
    kube_emulator: KubeEmulator, kubeconfig: Path, tmp_path: Path
) -> None:
    ns = f"ansible-{uuid.uuid4().hex[:6]}"
    playbook = tmp_path / "site.yml"
    playbook.write_text(textwrap.dedent(PLAYBOOK).replace("NS", ns))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "KUBECONFIG": str(kubeconfig),
        "K8S_AUTH_KUBECONFIG": str(kubeconfig),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
    }

    def play() -> str:
        run = subprocess.run(
            [str(find_tool("ansible-playbook")), "-i", "localhost,", str(playbook)],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        return run.stdout

    assert "changed=3" in play()
    assert kube_emulator.get("apps/v1/deployments", "web", namespace=ns) is not None
    assert kube_emulator.get("v1/services", "web", namespace=ns) is not None
    versions = [
        len(kube_emulator.history(r, "web", namespace=ns))
        for r in ("apps/v1/deployments", "v1/services")
    ]
    mark = kube_emulator.mark()
    assert "changed=0" in play()
    assert {write.method for write in kube_emulator.writes(since=mark)} <= {"PATCH"}
    assert versions == [
        len(kube_emulator.history(r, "web", namespace=ns))
        for r in ("apps/v1/deployments", "v1/services")
    ]  # no-op writes
    assert kube_emulator.errors() == []


@pytest.mark.skipif(find_tool("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_gets_namespaces_and_workspaces_as_tables_and_json(
    kube_emulator: KubeEmulator, kubeconfig: Path, namespace: str, tmp_path: Path
) -> None:
    kube_emulator.create(WORKSPACES, workspace("ws1"), namespace=namespace)

    def kubectl(*args: str) -> str:
        run = subprocess.run(
            [
                str(find_tool("kubectl")),
                f"--kubeconfig={kubeconfig}",
                f"--cache-dir={tmp_path / 'cache'}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
        )
        assert run.returncode == 0, run.stderr
        return run.stdout

    namespaces = kubectl("get", "namespaces")
    assert namespaces.split()[:3] == ["NAME", "STATUS", "AGE"]
    assert namespace in namespaces
    table = kubectl("get", "ws", "-n", namespace)
    assert table.split()[:4] == ["NAME", "READY", "REVISION", "AGE"]
    assert "ws1" in table
    as_json = json.loads(kubectl("get", "workspaces", "-n", namespace, "-o", "json"))
    assert [item["metadata"]["name"] for item in as_json["items"]] == ["ws1"]
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "applied", "namespace": namespace},
                "data": {"k": "v"},
            }
        )
    )
    kubectl("apply", "--validate=false", "-f", str(manifest))
    kubectl("apply", "--validate=false", "-f", str(manifest))
    applied = kube_emulator.get("v1/configmaps", "applied", namespace=namespace)
    assert applied is not None and applied["data"] == {"k": "v"}
