"""The demo's story (``cratekeeper demo``) on a real cluster, with the ``kubernetes`` runner.

A Git server (git daemon in the controller image) and an OCI registry (``registry:2``) run in the
cluster; two Workspaces, staging and production, target the cluster itself (two namespaces stand
in for two clusters; production's kubeconfig is age-encrypted). Production is promoted by a
commit and rolled back by ``git revert``; after each step the test checks the Job of the
revision, its log, the Deployment's image and the Workspace's status. This is the only place a
real API server and Job controller run, so it covers whole runs.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyrage
import pytest
import yaml

from controller.refs import BlockRef
from controller.registry.client import RegistryClient, RegistryOptions
from controller.registry.push import push_block
from controller.runners.kubernetes.manifests import (
    MAIN,
)
from controller.runners.kubernetes.names import (
    ANNOTATION_COMMIT,
    LABEL_WORKSPACE,
)
from tests.e2e.cluster import Cluster

pytestmark = pytest.mark.e2e

INFRA = "ck-e2e-infra"
# The workflow installs the chart with this registry in insecureRegistries (plain HTTP).
REGISTRY_HOST = f"registry.{INFRA}.svc.cluster.local:5000"
GIT_HOST = f"git.{INFRA}.svc.cluster.local"
REGISTRY_IMAGE = "registry:2.8.3"  # loaded into kind by the workflow
SEED_BLOCK = "registry.acme-corp.com/acme/apps/app-deploy"
BLOCK = f"{REGISTRY_HOST}/acme/apps/app-deploy"
STAGING, PRODUCTION = "acme-staging-1", "acme-production-1"
STEP_TIMEOUT = 600.0
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GIT_AUTHOR = {
    "GIT_AUTHOR_NAME": "Ada Admin",
    "GIT_AUTHOR_EMAIL": "ada@acme-corp.com",
    "GIT_COMMITTER_NAME": "Ada Admin",
    "GIT_COMMITTER_EMAIL": "ada@acme-corp.com",
}
# Bare repositories for both workspaces, then git daemon with push enabled (the test pushes).
GIT_DAEMON = (
    f"git init -q --bare -b main /srv/git/{STAGING}.git"
    f" && git init -q --bare -b main /srv/git/{PRODUCTION}.git"
    " && exec git daemon --reuseaddr --export-all --enable=receive-pack"
    " --base-path=/srv/git --listen=0.0.0.0 --port=9418 /srv/git"
)


def _service(name: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": INFRA},
        "spec": {"selector": {"app": name}, "ports": [{"port": port, "targetPort": port}]},
    }


def _deployment(name: str, container: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": INFRA},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": name, "imagePullPolicy": "IfNotPresent", **container}],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    }


def infra_manifests(git_image: str) -> list[dict[str, Any]]:
    """The Git server (git daemon in the controller image), the registry, and the account the
    workspaces' kubeconfigs use to deploy into this same cluster."""
    ready = {"periodSeconds": 2}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": INFRA}},
        _deployment(
            "git",
            {
                "image": git_image,
                "command": ["/bin/sh", "-c", GIT_DAEMON],
                "ports": [{"containerPort": 9418}],
                "readinessProbe": {"tcpSocket": {"port": 9418}, **ready},
                "volumeMounts": [{"name": "data", "mountPath": "/srv/git"}],
            },
        ),
        _service("git", 9418),
        _deployment(
            "registry",
            {
                "image": REGISTRY_IMAGE,
                "ports": [{"containerPort": 5000}],
                "readinessProbe": {"httpGet": {"path": "/v2/", "port": 5000}, **ready},
                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/registry"}],
            },
        ),
        _service("registry", 5000),
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "acme-deployer", "namespace": INFRA},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "ck-e2e-acme-deployer"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",  # the e2e cluster's own "target cluster" account
            },
            "subjects": [{"kind": "ServiceAccount", "name": "acme-deployer", "namespace": INFRA}],
        },
    ]


@contextlib.contextmanager
def port_forward(cluster: Cluster, service: str, port: int) -> Iterator[int]:
    """``kubectl port-forward`` to an infra Service; the local port."""
    proc = subprocess.Popen(
        [cluster.kubectl, "-n", INFRA, "port-forward", f"svc/{service}", f":{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # Forwarding from 127.0.0.1:NNNNN -> PORT
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert match, f"kubectl port-forward svc/{service}: {line!r}"
        # It prints a line per connection: keep reading, or a full pipe would stall it.
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield int(match.group(1))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=repo,
        env={**os.environ, **GIT_AUTHOR},
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout.strip()


@dataclass
class Story:
    """The two workspaces' repositories on this machine, pushed to the in-cluster Git server."""

    cluster: Cluster
    namespace: str
    work: Path
    git_port: int

    def repo(self, name: str) -> Path:
        return self.work / name

    def push(self, name: str) -> str:
        repo = self.repo(name)
        git(repo, "push", "-q", f"git://127.0.0.1:{self.git_port}/{name}.git", "main")
        return git(repo, "rev-parse", "HEAD")

    def pin(self, name: str, version: str, message: str) -> str:
        poly = self.repo(name) / "workspace.poly"
        poly.write_text(
            re.sub(rf"{re.escape(BLOCK)}:[\d.]+", f"{BLOCK}:{version}", poly.read_text())
        )
        git(self.repo(name), "commit", "-q", "-am", message)
        return self.push(name)

    def revert(self, name: str) -> str:
        git(self.repo(name), "revert", "--no-edit", "HEAD")
        return self.push(name)

    def reconcile_now(self, name: str) -> None:
        stamp = datetime.now(UTC).isoformat()
        self.cluster.run(
            "-n", self.namespace, "annotate", "workspace", name,
            f"cratekeeper.dev/requested-at={stamp}", "--overwrite",
        )  # fmt: skip

    def applied(self, name: str, revision: str) -> dict[str, Any]:
        """Wait until ``revision`` is applied (bounded); the Workspace's status."""
        deadline = time.monotonic() + STEP_TIMEOUT
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.cluster.get("-n", self.namespace, "workspace", name).get("status") or {}
            if status.get("lastAppliedRevision") == revision:
                return status
            time.sleep(3)
        jobs = self.cluster.run("-n", self.namespace, "get", "jobs,pods", "-o", "wide", check=False)
        logs = self.cluster.run(
            "-n", self.cluster.namespace, "logs", f"deployment/{self.cluster.release}",
            "--tail=80", check=False,
        )  # fmt: skip
        raise AssertionError(
            f"{name} did not apply {revision[:12]} within {STEP_TIMEOUT:.0f}s; status: "
            f"{json.dumps(status.get('conditions'))}\n{jobs}\noperator log:\n{logs}"
        )

    def jobs(self, name: str, revision: str) -> list[dict[str, Any]]:
        """The Jobs the operator ran for ``revision`` of Workspace ``name``."""
        found = self.cluster.get("-n", self.namespace, "jobs", "-l", f"{LABEL_WORKSPACE}={name}")
        items: list[dict[str, Any]] = found["items"]
        return [j for j in items if j["metadata"]["annotations"].get(ANNOTATION_COMMIT) == revision]

    def image(self, name: str) -> str:
        deployment = self.cluster.get("-n", f"acme-app-{name}", "deployment", "acme-app")
        return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])

    def check_step(self, name: str, revision: str, version: str) -> dict[str, Any]:
        """After a step: one completed Job for the revision, its log, the image, the status."""
        status = self.applied(name, revision)
        (job,) = self.jobs(name, revision)
        conditions = {c["type"]: c["status"] for c in job["status"].get("conditions", [])}
        assert conditions.get("Complete") == "True", job["status"]
        log = self.cluster.run(
            "-n", self.namespace, "logs", f"job/{job['metadata']['name']}", "-c", MAIN
        )
        assert "TASK [Deployment]" in log and "PLAY RECAP" in log, log[-2000:]
        assert "failed=0" in log, log[-2000:]
        assert self.image(name) == f"ghcr.io/acme/myapp:{version}"
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", ready
        assert status["blocksSummary"] == "1/1"
        (block,) = status["blocks"]
        assert (block["version"], block["phase"]) == (version, "Applied")
        assert block["from"].split("@")[0] == f"{BLOCK}:{version}"
        return status


def _push_blocks(registry_port: int, work: Path) -> None:
    local = f"127.0.0.1:{registry_port}"
    client = RegistryClient(
        RegistryOptions(
            insecure_registries=(REGISTRY_HOST, local), mirrors=((REGISTRY_HOST, local),)
        )
    )
    for version in ("1.1.0", "1.2.0"):
        block = work / "blocks" / version
        shutil.copytree(EXAMPLES / "blocks" / "app-deploy", block)
        poly = block / "block.poly"
        text = poly.read_text().replace("version: 1.2.0", f"version: {version}")
        poly.write_text(text.replace(f"name: {SEED_BLOCK}", f"name: {BLOCK}"))
        push_block(block, BlockRef.parse(f"{BLOCK}:{version}"), client=client)


def _kubeconfig(cluster: Cluster) -> dict[str, Any]:
    """A kubeconfig that reaches this cluster from a pod, as the deployer account."""
    token = cluster.run("-n", INFRA, "create", "token", "acme-deployer", "--duration=2h").strip()
    ca = cluster.get("-n", INFRA, "configmap", "kube-root-ca.crt")["data"]["ca.crt"]
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "e2e",
                "cluster": {
                    "server": "https://kubernetes.default.svc",
                    "certificate-authority-data": base64.b64encode(ca.encode()).decode(),
                },
            }
        ],
        "users": [{"name": "acme-deployer", "user": {"token": token}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "acme-deployer"}}],
        "current-context": "e2e",
    }


def _workspace_repo(story: Story, name: str, kubeconfig: dict[str, Any], *, seal: Any) -> str:
    """The seed's workspace with pins on the in-cluster registry, committed and pushed."""
    repo = story.repo(name)
    shutil.copytree(EXAMPLES / name, repo)
    poly = repo / "workspace.poly"
    poly.write_text(poly.read_text().replace(SEED_BLOCK, BLOCK))
    secrets = repo / "artifacts" / "secrets"
    text = yaml.safe_dump(kubeconfig).encode()
    (secrets / "kubeconfig.yml").unlink()
    if seal is None:
        (secrets / "kubeconfig.yml").write_bytes(text)
    else:  # production's kubeconfig is age-encrypted, as a real one should be
        (secrets / "kubeconfig.yml.age").write_bytes(pyrage.encrypt(text, [seal.to_public()]))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"{name}: initial workspace")
    return story.push(name)


@pytest.fixture
def story(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[Story]:
    (operator,) = cluster.get("-n", cluster.namespace, "deployment", cluster.release)["spec"][
        "template"
    ]["spec"]["containers"]
    for manifest in infra_manifests(operator["image"]):
        cluster.apply(manifest)
    for name in ("git", "registry"):
        cluster.run("-n", INFRA, "rollout", "status", f"deployment/{name}", "--timeout=180s")
    try:
        with (
            port_forward(cluster, "git", 9418) as git_port,
            port_forward(cluster, "registry", 5000) as registry_port,
        ):
            _push_blocks(registry_port, tmp_path)
            yield Story(cluster, namespace, tmp_path / "repos", git_port)
    finally:
        for name in (STAGING, PRODUCTION):
            cluster.run("-n", namespace, "delete", "workspace", name, "--timeout=120s", check=False)
            cluster.run("delete", "namespace", f"acme-app-{name}", "--wait=false", check=False)
        cluster.run("delete", "clusterrolebinding", "ck-e2e-acme-deployer", check=False)
        cluster.run("delete", "namespace", INFRA, "--wait=false", check=False)


def test_promotion_and_rollback_run_as_jobs_on_the_cluster(cluster: Cluster, story: Story) -> None:
    kubeconfig = _kubeconfig(cluster)
    identity = pyrage.x25519.Identity.generate()
    heads = {
        STAGING: _workspace_repo(story, STAGING, kubeconfig, seal=None),
        PRODUCTION: _workspace_repo(story, PRODUCTION, kubeconfig, seal=identity),
    }
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{PRODUCTION}-age", "namespace": story.namespace},
            "stringData": {"identity.agekey": str(identity)},
        }
    )
    for name in (STAGING, PRODUCTION):
        spec: dict[str, Any] = {
            "source": {"url": f"git://{GIT_HOST}/{name}.git", "interval": "1m"},
            "runner": {"timeout": "10m"},
        }
        if name == PRODUCTION:
            spec["decryption"] = {"secretRef": {"name": f"{PRODUCTION}-age"}}
        cluster.apply(
            {
                "apiVersion": "cratekeeper.dev/v1alpha1",
                "kind": "Workspace",
                "metadata": {"name": name, "namespace": story.namespace},
                "spec": spec,
            }
        )

    # 1. Two workspaces, two "clusters": staging on 1.2.0, production on 1.1.0.
    story.check_step(STAGING, heads[STAGING], "1.2.0")
    story.check_step(PRODUCTION, heads[PRODUCTION], "1.1.0")

    # 2. Promotion: a commit pins production to the version staging runs.
    promoted = story.pin(PRODUCTION, "1.2.0", f"Promote app-deploy 1.2.0 from {STAGING}")
    story.reconcile_now(PRODUCTION)
    status = story.check_step(PRODUCTION, promoted, "1.2.0")
    entry = status["history"][0]
    assert (entry["revision"], entry["result"]) == (promoted, "Succeeded")
    (change,) = entry["changes"]
    assert (change["from"], change["to"]) == (f"{BLOCK}:1.1.0", f"{BLOCK}:1.2.0")
    assert not change.get("rollback")

    # 3. Rollback: git revert of the promotion.
    reverted = story.revert(PRODUCTION)
    story.reconcile_now(PRODUCTION)
    status = story.check_step(PRODUCTION, reverted, "1.1.0")
    entry = status["history"][0]
    assert (entry["revision"], entry["result"]) == (reverted, "Succeeded")
    (change,) = entry["changes"]
    assert (change["from"], change["to"]) == (f"{BLOCK}:1.2.0", f"{BLOCK}:1.1.0")
    assert change["rollback"] is True
    # Staging was never touched again, and each revision ran exactly one Job.
    assert story.image(STAGING) == "ghcr.io/acme/myapp:1.2.0"
    assert len(story.jobs(PRODUCTION, promoted)) == len(story.jobs(PRODUCTION, reverted)) == 1
