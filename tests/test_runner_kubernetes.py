"""The kubernetes runner: Job and Secret manifests, and runs followed against the emulator.

The emulator has no controllers, so nothing runs by itself: the tests play the Job controller
and the kubelet. They patch the Job's status (conditions), create its pod with the container
states (the termination message is the result channel) and serve the pod's log with a kmock
reaction (the emulator itself has no ``/log``).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_asyncio
import requests
from hypothesis import given
from hypothesis import strategies as st

from controller.api.spec import WorkspaceSpec
from controller.errors import CratekeeperError, KubeError, RunError
from controller.kube import Kube
from controller.refs import BlockRef
from controller.registry import RegistryClient, RegistryOptions, push_block
from controller.runners import sealed
from controller.runners.artifacts import MAX_PACKED, pack, unpack
from controller.runners.base import ActionRequest, RunResult, StaticContract
from controller.runners.events import parse_events
from controller.runners.kubernetes import (
    LABEL_JOB,
    LABEL_WORKSPACE,
    MAIN,
    PREPARE,
    RUN_SCRIPT,
    KubernetesRunner,
    PodOptions,
    WorkspaceSource,
    extra_labels,
    job_manifest,
    job_name,
    main_env,
    secret_data,
)
from controller.runners.prepare import main as prepare_main
from tests.support.git_servers import GitDaemon, Upstream
from tests.support.kube_emulator import KubeEmulator
from tests.support.oci_registry import Registry

JOBS = "batch/v1/jobs"
SECRETS = "v1/secrets"
PODS = "v1/pods"
DIGEST = "sha256:" + "ab" * 32
REF = BlockRef.parse(f"registry.acme-corp.com/acme/apps/app-deploy:1.2.0@{DIGEST}")
COMMIT = "3f" * 20
TOKEN = "super-secret-cluster-token"
KUBECONFIG = f"""\
apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "https://10.0.0.1:6443"}}}}]
users: [{{name: u, user: {{token: {TOKEN}}}}}]
contexts: [{{name: c, context: {{cluster: c, user: u}}}}]
current-context: c
""".encode()
SOURCE = WorkspaceSource(
    url="https://git.acme-corp.com/acme/workspaces.git",
    path="acme-production-1",
    git_secret="workspace-git",
    registry_secret="acme-registry",
)
STATS = '{"event": "stats", "ok": 4, "changed": 2, "failed": 0, "skipped": 1, "unreachable": 0}'
_namespaces = itertools.count()


def make_request(tmp_path: Path, **over: Any) -> ActionRequest:
    fields: dict[str, Any] = {
        "workspace": "acme-production-1",
        "organization": "acme",
        "revision": COMMIT,
        "block": "app",
        "ref": REF,
        "action": "deploy",
        "playbook": "deploy.yml",
        "has_script": False,
        "config": {"namespace": "acme-app", "image": "ghcr.io/acme/myapp:1.2.0"},
        "workspace_dir": tmp_path,
        "workdir": f"blocks/{REF.name}",
        "contract": StaticContract(
            {"block": {"name": "app", "config": {"image": "ghcr.io/acme/myapp:1.2.0"}}}
        ),
        "kubeconfig": KUBECONFIG,
        "timeout": 600.0,
    }
    fields.update(over)
    return ActionRequest(**fields)


IMAGE = "ghcr.io/acme/ansible-ee:1"
PREPARE_IMAGE = "ghcr.io/cratekeeper/cratekeeper:0.1.0"
OPTIONS = PodOptions(image=IMAGE, prepare_image=PREPARE_IMAGE)


def manifest(tmp_path: Path, **options: Any) -> dict[str, Any]:
    pod_options = PodOptions(image=IMAGE, prepare_image=PREPARE_IMAGE, **options)
    return job_manifest(make_request(tmp_path), "ck-x", pod_options, SOURCE)


# --- names ---------------------------------------------------------------------------------

DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_job_name_is_readable_stable_and_unique_per_commit_block_and_action() -> None:
    name = job_name("acme-production-1", COMMIT, "app", "deploy")
    assert name == job_name("acme-production-1", COMMIT, "app", "deploy")
    assert re.fullmatch(r"ck-acme-production-1-app-deploy-[0-9a-f]{10}", name)
    others = {
        job_name("acme-production-2", COMMIT, "app", "deploy"),
        job_name("acme-production-1", "4e" * 20, "app", "deploy"),
        job_name("acme-production-1", COMMIT, "db", "deploy"),
        job_name("acme-production-1", COMMIT, "app", "uninstall"),
    }
    assert name not in others and len(others) == 4


def test_long_names_are_cut_to_a_valid_dns_label_keeping_the_hash() -> None:
    long = job_name("a" * 80, COMMIT, "Block_With.Dots" * 5, "deploy")
    assert len(long) <= 63 and DNS_1123_LABEL.match(long)
    assert long.startswith("ck-aaaa") and "-deploy-" in long
    assert job_name("a" * 80, COMMIT, "Block_With.Dots" * 5, "rollback") != long


@given(st.text(), st.text(), st.text(), st.text())
def test_any_inputs_give_a_dns_1123_label_of_at_most_63_characters(
    workspace: str, commit: str, block: str, action: str
) -> None:
    name = job_name(workspace, commit, block, action)
    assert len(name) <= 63 and DNS_1123_LABEL.match(name)


# --- manifests (pure) ----------------------------------------------------------------------


def test_job_runs_once_non_root_read_only_within_its_deadline(tmp_path: Path) -> None:
    job = manifest(tmp_path, ttl_seconds_after_finished=900)
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["suspend"] is True
    assert spec["activeDeadlineSeconds"] == 600 and spec["ttlSecondsAfterFinished"] == 900
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    for container in pod["initContainers"] + pod["containers"]:
        ctx = container["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] != 0
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}


def test_pod_gets_no_service_account_token_unless_one_is_configured(tmp_path: Path) -> None:
    pod = manifest(tmp_path)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod
    pod = manifest(tmp_path, service_account_name="deployer")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True
    assert pod["serviceAccountName"] == "deployer"


def test_pod_pulls_its_images_with_the_configured_pull_secrets_only(tmp_path: Path) -> None:
    assert "imagePullSecrets" not in manifest(tmp_path)["spec"]["template"]["spec"]
    pod = manifest(tmp_path, image_pull_secrets=("ghcr", "mirror"))["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "ghcr"}, {"name": "mirror"}]


def test_a_ca_bundle_reaches_only_the_init_container_through_the_runs_secret(
    tmp_path: Path,
) -> None:
    plain = manifest(tmp_path)["spec"]["template"]["spec"]
    assert "ca" not in {v["name"] for v in plain["volumes"]}
    assert "--ca-bundle" not in plain["initContainers"][0]["args"]
    assert "ca.crt" not in secret_data(make_request(tmp_path))

    pem = b"-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"
    pod = manifest(tmp_path, ca_bundle=pem)["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "ca"]
    assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]  # nothing else
    (prepare,) = pod["initContainers"]
    assert {"name": "ca", "mountPath": "/etc/cratekeeper/ca", "readOnly": True} in prepare[
        "volumeMounts"
    ]
    args = prepare["args"]
    assert args[args.index("--ca-bundle") + 1] == "/etc/cratekeeper/ca/ca.crt"
    env = {e["name"]: e["value"] for e in prepare["env"]}
    assert env["GIT_SSL_CAINFO"] == "/etc/cratekeeper/ca/ca.crt"
    (main,) = pod["containers"]
    assert "ca" not in {m["name"] for m in main["volumeMounts"]}
    data = secret_data(make_request(tmp_path), ca_bundle=pem)
    assert base64.b64decode(data["ca.crt"]) == pem


def test_kubeconfig_reaches_the_pod_through_a_memory_backed_secret_volume(tmp_path: Path) -> None:
    pod = manifest(tmp_path)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["run"] == {"name": "run", "secret": {"secretName": "ck-x", "defaultMode": 0o440}}
    for scratch in ("workspace", "tmp", "home", "tools"):
        assert volumes[scratch] == {"name": scratch, "emptyDir": {}}
    main = pod["containers"][0]
    env = {e["name"]: e["value"] for e in main["env"]}
    assert env["KUBECONFIG"] == env["K8S_AUTH_KUBECONFIG"] == "/run/cratekeeper/kubeconfig"
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    assert mounts["/run/cratekeeper"] == {
        "name": "run",
        "mountPath": "/run/cratekeeper",
        "readOnly": True,
    }
    assert {"/tmp", "/workspace", env["HOME"]} <= set(mounts)
    # The init container sees Git and registry credentials, never the kubeconfig.
    prepare = pod["initContainers"][0]
    assert "/run/cratekeeper" not in {m["mountPath"] for m in prepare["volumeMounts"]}
    assert volumes["registry-auth"]["secret"]["items"] == [
        {"key": ".dockerconfigjson", "path": "config.json"}
    ]


def test_main_container_runs_the_playbook_with_the_local_runners_environment(
    tmp_path: Path,
) -> None:
    (tmp_path / "inventory.yml").write_text("all: {}\n")
    pod = manifest(tmp_path)["spec"]["template"]["spec"]
    main = pod["containers"][0]
    assert main["name"] == MAIN and main["image"] == "ghcr.io/acme/ansible-ee:1"
    assert main["workingDir"] == f"/workspace/blocks/{REF.name}"
    assert main["args"] == [
        "ansible-playbook",
        "-e",
        "@/run/cratekeeper/snapshot.yml",
        "deploy.yml",
    ]
    assert main["terminationMessagePath"] == "/dev/termination-log"
    env = {e["name"]: e["value"] for e in main["env"]}
    assert env["POLYCRATE_BLOCK"] == "app" and env["POLYCRATE_ACTION"] == "deploy"
    assert env["ANSIBLE_CALLBACKS_ENABLED"] == "cratekeeper_events"
    assert env["ANSIBLE_CALLBACK_PLUGINS"] == "/opt/cratekeeper/callback_plugins"
    assert env["ANSIBLE_INVENTORY"] == "/workspace/inventory.yml"
    prepare = pod["initContainers"][0]
    assert prepare["name"] == PREPARE
    assert prepare["command"] == ["python", "-m", "controller.runners.prepare"]
    args = prepare["args"]
    assert args[args.index("--commit") + 1] == COMMIT
    assert args[args.index("--block") + 1] == str(REF) and DIGEST in str(REF)
    assert args[args.index("--path") + 1] == "acme-production-1"
    assert "--git-auth" in args and "--docker-config" in args


def test_the_pod_gets_polycrates_runtime_contract_at_its_own_paths(tmp_path: Path) -> None:
    request = make_request(tmp_path, extraenv={"EXTRA_FROM_BLOCK": "yes"}, inventory="hosts.yml")
    env = main_env(request, OPTIONS)
    assert env["POLYCRATE_WORKSPACE"] == "/workspace"
    assert env["POLYCRATE_WORKSPACE_SNAPSHOT_YAML"] == "/run/cratekeeper/snapshot.yml"
    assert env["POLYCRATE_BLOCK_WORKDIR"] == f"/workspace/blocks/{REF.name}"
    assert env["ANSIBLE_INVENTORY"] == "/workspace/hosts.yml"
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "False"
    assert env["ANSIBLE_VARS_PLUGINS"] == "/opt/cratekeeper/vars_plugins"
    assert env["ANSIBLE_REMOTE_TMP"].startswith(env["HOME"] + "/")
    assert env["EXTRA_FROM_BLOCK"] == "yes" and env["IN_CONTAINER"] == "1"


def test_a_script_action_runs_its_rendered_script_from_the_run_secret(tmp_path: Path) -> None:
    lines = ("echo {{ deployed }}", "kubectl get ns")
    request = make_request(
        tmp_path, playbook=None, has_script=True, contract=StaticContract({}, lines)
    )
    main = job_manifest(request, "ck-x", OPTIONS, SOURCE)["spec"]["template"]["spec"]["containers"][
        0
    ]
    assert main["args"] == ["/bin/bash", "/run/cratekeeper/script.sh"]
    assert main["workingDir"] == f"/workspace/blocks/{REF.name}"
    env = {e["name"]: e["value"] for e in main["env"]}
    assert env["POLYCRATE_RUNTIME_SCRIPT_PATH"] == "/run/cratekeeper/script.sh"
    script = base64.b64decode(secret_data(request)["script.sh"]).decode()
    assert script == "#!/bin/bash\nset -euo pipefail\necho {{ deployed }}\nkubectl get ns\n"


def test_a_local_block_is_not_pulled_by_the_pod(tmp_path: Path) -> None:
    request = make_request(tmp_path, ref=None, workdir="blocks/infra/dns")
    job = job_manifest(request, "ck-x", OPTIONS, SOURCE)
    pod = job["spec"]["template"]["spec"]
    assert "--block" not in pod["initContainers"][0]["args"]
    assert pod["containers"][0]["workingDir"] == "/workspace/blocks/infra/dns"
    assert job["metadata"]["annotations"]["cratekeeper.dev/block-ref"] == "local"


def test_kept_artifacts_reach_prepare_through_the_run_secret_without_the_kubeconfig(
    tmp_path: Path,
) -> None:
    inventory = tmp_path / "artifacts/blocks/infra/inventory.yml"
    inventory.parent.mkdir(parents=True)
    inventory.write_text("all: {hosts: {web1: {}}}\n")
    request = make_request(tmp_path)
    data = secret_data(request)
    unpack(base64.b64decode(data["artifacts.tar.gz"]), tmp_path / "out")
    assert (tmp_path / "out/artifacts/blocks/infra/inventory.yml").read_text() == (
        inventory.read_text()
    )
    pod = job_manifest(request, "ck-x", OPTIONS, SOURCE)["spec"]["template"]["spec"]
    kept = next(v for v in pod["volumes"] if v["name"] == "kept")["secret"]
    assert kept["items"] == [{"key": "artifacts.tar.gz", "path": "artifacts.tar.gz"}]
    assert kept["optional"] is True and kept["secretName"] == "ck-x"
    args = pod["initContainers"][0]["args"]
    assert args[args.index("--artifacts") + 1] == "/etc/cratekeeper/kept/artifacts.tar.gz"
    assert args[args.index("--artifacts-dir") + 1] == "artifacts/blocks/app"


def test_job_and_pod_carry_the_runs_labels_and_annotations(tmp_path: Path) -> None:
    job = manifest(tmp_path)
    labels = job["metadata"]["labels"]
    assert labels == {
        "app.kubernetes.io/managed-by": "cratekeeper",
        "cratekeeper.dev/workspace": "acme-production-1",
        "cratekeeper.dev/block": "app",
        "cratekeeper.dev/action": "deploy",
        "cratekeeper.dev/revision": COMMIT[:12],
    }
    assert job["metadata"]["annotations"] == {
        "cratekeeper.dev/commit": COMMIT,
        "cratekeeper.dev/block-ref": str(REF),
    }
    assert job["spec"]["template"]["metadata"]["labels"] == {**labels, LABEL_JOB: "ck-x"}


def test_callers_labels_go_over_the_runs_labels_but_never_over_the_runners_own() -> None:
    workspace = {"cratekeeper.dev/workspace": "acme-production-1-object", "team": "apps"}
    assert extra_labels(workspace) == workspace
    assert extra_labels({"team": "x" * 70 + "!"}) == {"team": "x" * 63}
    for reserved in ("app.kubernetes.io/managed-by", LABEL_JOB):
        with pytest.raises(ValueError, match=reserved):
            extra_labels({reserved: "someone-else"})


# --- runs against the emulator -------------------------------------------------------------


@pytest.fixture
def namespace(kube_emulator: KubeEmulator) -> str:
    name = f"ck-runner-{next(_namespaces)}"
    kube_emulator.create("v1/namespaces", {"metadata": {"name": name}})
    return name


@pytest.fixture
def kube(kubeconfig: Path) -> Iterator[Kube]:
    client = Kube.from_kubeconfig(kubeconfig)
    yield client
    client.close()


def runner_for(kube: Kube, namespace: str, **over: Any) -> KubernetesRunner:
    knobs: dict[str, Any] = {
        "source": SOURCE,
        "prepare_image": PREPARE_IMAGE,
        "poll_interval": 0.05,
        "deadline_grace": 30.0,
    }
    knobs.update(over)
    return KubernetesRunner(kube, namespace, IMAGE, **knobs)


def run_name(request: ActionRequest, namespace: str) -> str:
    """The Job name of ``request`` run by :func:`runner_for` in ``namespace``."""
    return job_name(
        request.workspace, request.revision, request.block, request.action, namespace=namespace
    )


def api(emulator: KubeEmulator, path: str, patch: dict[str, Any]) -> None:
    """PATCH ``path`` (relative to the API root) as a controller would (merge patch)."""
    response = requests.patch(
        f"{emulator.url}/{path}",
        data=json.dumps(patch),
        headers={"Content-Type": "application/merge-patch+json"},
        timeout=5,
    )
    response.raise_for_status()


def set_job_status(
    emulator: KubeEmulator, namespace: str, name: str, status: dict[str, Any]
) -> None:
    api(emulator, f"apis/batch/v1/namespaces/{namespace}/jobs/{name}/status", {"status": status})


def finish_job(
    emulator: KubeEmulator, namespace: str, name: str, condition: str, reason: str = ""
) -> None:
    status = {"conditions": [{"type": condition, "status": "True", "reason": reason}]}
    set_job_status(emulator, namespace, name, status)


def make_pod(
    emulator: KubeEmulator,
    namespace: str,
    job: str,
    *,
    main: dict[str, Any] | None = None,
    prepare: dict[str, Any] | None = None,
    logs: dict[str, bytes] | None = None,
) -> str:
    """The Job's pod, as the Job controller and kubelet leave it: container states, logs."""
    pod = f"{job}-x7k2q"
    emulator.create(
        PODS,
        {
            "metadata": {"name": pod, "labels": {LABEL_JOB: job, "job-name": job}},
            "spec": {"containers": [{"name": MAIN, "image": "ee"}]},
        },
        namespace=namespace,
    )
    prepare = prepare or {"terminated": {"exitCode": 0, "reason": "Completed"}}
    status: dict[str, Any] = {
        "phase": "Failed",
        "initContainerStatuses": [{"name": PREPARE, "state": prepare}],
    }
    if main is not None:
        status["containerStatuses"] = [{"name": MAIN, "state": main}]
    api(emulator, f"api/v1/namespaces/{namespace}/pods/{pod}/status", {"status": status})
    for container, text in (logs or {}).items():
        url = f"get /api/v1/namespaces/{namespace}/pods/{pod}/log"
        emulator.call(lambda h, u=url, c=container, t=text: h[u, {"container": c}] << t)
    return pod


async def running_job(emulator: KubeEmulator, namespace: str, name: str) -> dict[str, Any]:
    """Wait until the runner has created and resumed the Job."""

    def resumed() -> dict[str, Any] | None:
        job = emulator.get(JOBS, name, namespace=namespace)
        return job if job and job["spec"].get("suspend") is False else None

    return await emulator.until(resumed)


@pytest_asyncio.fixture
async def run_task() -> AsyncIterator[list[asyncio.Task[RunResult]]]:
    tasks: list[asyncio.Task[RunResult]] = []
    yield tasks
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def start(
    tasks: list[asyncio.Task[RunResult]], runner: KubernetesRunner, request: ActionRequest
) -> asyncio.Task[RunResult]:
    task = asyncio.create_task(runner.run(request))
    tasks.append(task)
    return task


def job_writes(emulator: KubeEmulator, since: int) -> list[str]:
    return [
        f"{r.method} {r.resource}" + (f"/{r.name}" if r.name else "")
        for r in emulator.writes(since)
        if r.resource in (JOBS, SECRETS)
    ]


@pytest.mark.asyncio
async def test_run_creates_the_job_suspended_then_its_owned_secret_then_resumes_it(
    kube_emulator: KubeEmulator, kube: Kube, namespace: str, tmp_path: Path, run_task: list[Any]
) -> None:
    request = make_request(tmp_path)
    name = run_name(request, namespace)
    mark = kube_emulator.mark()
    start(run_task, runner_for(kube, namespace), request)
    job = await running_job(kube_emulator, namespace, name)

    assert job_writes(kube_emulator, mark) == [
        f"POST {JOBS}",
        f"POST {SECRETS}",
        f"PATCH {JOBS}/{name}",
    ]
    created = kube_emulator.writes(mark)[0].data
    assert created["spec"]["suspend"] is True
    secret = kube_emulator.get(SECRETS, name, namespace=namespace)
    assert secret is not None
    assert secret["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": name,
            "uid": job["metadata"]["uid"],
            "controller": True,
        }
    ]
    assert base64.b64decode(secret["data"]["kubeconfig"]) == KUBECONFIG
    snapshot = base64.b64decode(secret["data"]["snapshot.yml"]).decode()
    assert "ghcr.io/acme/myapp:1.2.0" in snapshot
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "cratekeeper"


@pytest.mark.asyncio
async def test_job_pod_and_secret_carry_the_workspace_objects_name_so_its_deletion_finds_them(
    kube_emulator: KubeEmulator, kube: Kube, namespace: str, tmp_path: Path, run_task: list[Any]
) -> None:
    """workspace.poly says ``acme-production-1``; the Workspace object is named otherwise."""
    request = make_request(tmp_path)
    name = job_name("production", request.revision, "app", "deploy", namespace=namespace)
    spec = WorkspaceSpec.model_validate(
        {
            "source": {"url": SOURCE.url, "path": SOURCE.path, "secretRef": {"name": "git"}},
            "runner": {"image": IMAGE},
        }
    )
    runner = KubernetesRunner.for_workspace(
        kube,
        namespace,
        spec,
        default_image="unused",
        labels={LABEL_WORKSPACE: "production"},
        prepare_image=PREPARE_IMAGE,
        poll_interval=0.05,
    )
    start(run_task, runner, request)
    job = await running_job(kube_emulator, namespace, name)

    secret = kube_emulator.get(SECRETS, name, namespace=namespace)
    assert secret is not None
    for labels in (
        job["metadata"]["labels"],
        job["spec"]["template"]["metadata"]["labels"],
        secret["metadata"]["labels"],
    ):
        assert labels[LABEL_WORKSPACE] == "production"
        assert labels["app.kubernetes.io/managed-by"] == "cratekeeper"
    found = await kube.list_jobs(namespace, {LABEL_WORKSPACE: "production"})
    assert [j.name for j in found] == [name]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("runner_spec", "pull_secrets"),
    [
        ({}, [{"name": "operator-default"}]),  # the chart's execution.imagePullSecrets
        ({"imagePullSecrets": [{"name": "acme-ghcr"}]}, [{"name": "acme-ghcr"}]),
    ],
)
async def test_a_workspaces_pull_secrets_replace_the_operators_default(
    kube_emulator: KubeEmulator,
    kube: Kube,
    namespace: str,
    tmp_path: Path,
    run_task: list[Any],
    runner_spec: dict[str, Any],
    pull_secrets: list[dict[str, str]],
) -> None:
    request = make_request(tmp_path)
    name = run_name(request, namespace)
    spec = WorkspaceSpec.model_validate({"source": {"url": SOURCE.url}, "runner": runner_spec})
    runner = KubernetesRunner.for_workspace(
        kube,
        namespace,
        spec,
        default_image=IMAGE,
        default_image_pull_secrets=["operator-default"],
        prepare_image=PREPARE_IMAGE,
        poll_interval=0.05,
    )
    start(run_task, runner, request)
    job = await running_job(kube_emulator, namespace, name)
    assert job["spec"]["template"]["spec"]["imagePullSecrets"] == pull_secrets


@pytest.mark.asyncio
async def test_an_unreachable_api_server_is_a_kube_error_not_a_client_exception(
    tmp_path: Path,
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        KUBECONFIG.decode().replace("https://10.0.0.1:6443", "http://127.0.0.1:9")
    )
    kube = Kube.from_kubeconfig(kubeconfig)
    try:
        with pytest.raises(KubeError, match="cannot reach the Kubernetes API") as raised:
            await runner_for(kube, "default").run(make_request(tmp_path))
        with pytest.raises(KubeError, match="client refused the request"):
            await kube.get_job("default", cast(Any, None))  # the client's own ApiValueError
    finally:
        kube.close()
    error = raised.value
    assert isinstance(error, CratekeeperError) and error.reason == "KubernetesApiError"


@pytest.mark.asyncio
async def test_succeeded_job_reports_counts_from_the_termination_message_and_a_redacted_tail(
    kube_emulator: KubeEmulator, kube: Kube, namespace: str, tmp_path: Path, run_task: list[Any]
) -> None:
    request = make_request(tmp_path)
    name = run_name(request, namespace)
    lines: list[str] = []
    task = asyncio.create_task(runner_for(kube, namespace).run(request, lines.append))
    run_task.append(task)
    await running_job(kube_emulator, namespace, name)

    log = f"PLAY [deploy]\nTASK [apply] token={TOKEN}\nPLAY RECAP ok=4 changed=2\n".encode()
    terminated = {"terminated": {"exitCode": 0, "reason": "Completed", "message": STATS + "\n"}}
    make_pod(kube_emulator, namespace, name, main=terminated, logs={MAIN: log})
    finish_job(kube_emulator, namespace, name, "Complete")
    result = await asyncio.wait_for(task, 10)

    assert result.status == "succeeded" and result.job_name == name
    assert result.exit_code == 0 and result.failed_task is None
    assert (result.counts.ok, result.counts.changed, result.counts.skipped) == (4, 2, 1)
    assert result.log_tail[:3] == (
        "PLAY [deploy]",
        "TASK [apply] token=***",
        "PLAY RECAP ok=4 changed=2",
    )
    assert not any(TOKEN in line for line in result.log_tail)
    assert lines == list(result.log_tail)


@pytest.mark.asyncio
async def test_failed_job_reports_the_failed_task_and_the_exit_code(
    kube_emulator: KubeEmulator, kube: Kube, namespace: str, tmp_path: Path, run_task: list[Any]
) -> None:
    request = make_request(tmp_path)
    name = run_name(request, namespace)
    task = start(run_task, runner_for(kube, namespace), request)
    await running_job(kube_emulator, namespace, name)

    failed = json.dumps(
        {"event": "task", "status": "failed", "task": "wait for rollout", "host": "localhost"}
    )
    stats = STATS.replace('"failed": 0', '"failed": 1')
    terminated = {
        "terminated": {"exitCode": 2, "reason": "Error", "message": f"{failed}\n{stats}\n"}
    }
    make_pod(kube_emulator, namespace, name, main=terminated, logs={MAIN: b"fatal: [localhost]\n"})
    finish_job(kube_emulator, namespace, name, "Failed", "BackoffLimitExceeded")
    result = await asyncio.wait_for(task, 10)

    assert result.status == "failed" and result.exit_code == 2
    assert result.failed_task == "wait for rollout" and result.counts.failed == 1
    assert "fatal: [localhost]" in result.log_tail


@pytest.mark.asyncio
async def test_job_past_its_active_deadline_is_reported_as_timed_out(
    kube_emulator: KubeEmulator, kube: Kube, namespace: str, tmp_path: Path, run_task: list[Any]
) -> None:
    request = make_request(tmp_path, timeout=120.0)
    name = run_name(request, namespace)
    task = start(run_task, runner_for(kube, namespace), request)
    job = await running_job(kube_emulator, namespace, name)
    assert job["spec"]["activeDeadlineSeconds"] == 120

    killed = {"terminated": {"exitCode": 137, "reason": "Error"}}
    make_pod(kube_emulator, namespace, name, main=killed, logs={MAIN: b"TASK [slow]\n"})
    finish_job(kube_emulator, namespace, name, "Failed", "DeadlineExceeded")
    result = await asyncio.wait_for(task, 10)

    assert result.status == "timedOut" and result.job_name == name
    assert result.log_tail[0] == "TASK [slow]"
    assert "activeDeadlineSeconds" in result.log_tail[-1]


@pytest.mark.asyncio
async def test_run_past_its_timeout_is_stopped_by_deleting_the_job_in_the_background(
    kube_emulator: KubeEmulator, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    request = make_request(tmp_path, timeout=0.3)
    name = run_name(request, namespace)
    runner = runner_for(kube, namespace, deadline_grace=0.0)
    mark = kube_emulator.mark()
    result = await asyncio.wait_for(runner.run(request), 10)  # nobody ever finishes the Job

    assert result.status == "timedOut" and result.job_name == name
    deletes = [r for r in kube_emulator.writes(mark) if r.method == "DELETE"]
    assert [(d.resource, d.name, d.query) for d in deletes] == [
        (JOBS, name, {"propagationPolicy": "Background"})
    ]
    assert kube_emulator.get(JOBS, name, namespace=namespace) is None
    assert "timeout" in result.log_tail[-1]


@pytest.mark.asyncio
async def test_restarted_controller_adopts_the_running_job_instead_of_starting_another(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    tmp_path: Path,
    run_task: list[Any],
) -> None:
    request = make_request(tmp_path)
    name = run_name(request, namespace)
    mark = kube_emulator.mark()
    first_kube = Kube.from_kubeconfig(kubeconfig)
    first = start(run_task, runner_for(first_kube, namespace), request)
    await running_job(kube_emulator, namespace, name)
    first.cancel()  # the controller goes away mid-run ...
    await asyncio.gather(first, return_exceptions=True)
    first_kube.close()
    assert kube_emulator.get(JOBS, name, namespace=namespace) is not None  # ... the Job stays

    second_kube = Kube.from_kubeconfig(kubeconfig)  # ... and a new one starts from scratch
    restart = kube_emulator.mark()
    second = start(run_task, runner_for(second_kube, namespace), request)
    await kube_emulator.until(  # it has found the running Job ...
        lambda: any(r.method == "GET" and r.name == name for r in kube_emulator.requests(restart))
    )
    make_pod(kube_emulator, namespace, name, main={"terminated": {"exitCode": 0, "message": STATS}})
    finish_job(kube_emulator, namespace, name, "Complete")
    result = await asyncio.wait_for(second, 10)
    second_kube.close()

    assert result.status == "succeeded" and result.job_name == name
    assert result.counts.ok == 4
    posts = [r for r in kube_emulator.writes(mark) if r.method == "POST" and r.resource == JOBS]
    assert len(posts) == 1
    assert any("adopted" in line for line in result.log_tail)


@pytest.mark.asyncio
async def test_adopting_a_job_left_suspended_creates_its_secret_and_resumes_it(
    kube_emulator: KubeEmulator, kube: Kube, namespace: str, tmp_path: Path, run_task: list[Any]
) -> None:
    """The controller died between creating the Job and creating its Secret."""
    request = make_request(tmp_path)
    name = run_name(request, namespace)
    runner = runner_for(kube, namespace)
    kube_emulator.create(JOBS, job_manifest(request, name, OPTIONS, SOURCE), namespace)
    mark = kube_emulator.mark()
    task = start(run_task, runner, request)
    job = await running_job(kube_emulator, namespace, name)

    assert job_writes(kube_emulator, mark) == [f"POST {SECRETS}", f"PATCH {JOBS}/{name}"]
    secret = kube_emulator.get(SECRETS, name, namespace=namespace)
    assert secret is not None
    assert secret["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    finish_job(kube_emulator, namespace, name, "Complete")
    assert (await asyncio.wait_for(task, 10)).status == "succeeded"


@pytest.mark.asyncio
async def test_retry_replaces_a_failed_job_and_the_secret_its_owner_left_behind(
    kube_emulator: KubeEmulator, kube: Kube, namespace: str, tmp_path: Path, run_task: list[Any]
) -> None:
    request = make_request(tmp_path)
    name = run_name(request, namespace)
    runner = runner_for(kube, namespace)
    body = job_manifest(request, name, OPTIONS, SOURCE)
    old = kube_emulator.create(JOBS, body, namespace)
    finish_job(kube_emulator, namespace, name, "Failed", "BackoffLimitExceeded")
    stale = {
        "metadata": {"name": name, "ownerReferences": [{"uid": old["metadata"]["uid"]}]},
        "data": {},
    }
    kube_emulator.create(SECRETS, stale, namespace)  # not yet garbage-collected

    task = start(run_task, runner, request)
    job = await running_job(kube_emulator, namespace, name)
    assert job["metadata"]["uid"] != old["metadata"]["uid"]
    secret = kube_emulator.get(SECRETS, name, namespace=namespace)
    assert secret is not None and "kubeconfig" in secret["data"]
    assert secret["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    finish_job(kube_emulator, namespace, name, "Complete")
    result = await asyncio.wait_for(task, 10)
    assert result.status == "succeeded"
    assert any("replaced Job" in line for line in result.log_tail)


@pytest.mark.asyncio
async def test_a_job_of_that_name_not_made_by_cratekeeper_is_never_adopted(
    kube_emulator: KubeEmulator, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    request = make_request(tmp_path)
    name = run_name(request, namespace)
    foreign = {"metadata": {"name": name}, "spec": {"template": {"spec": {"containers": []}}}}
    kube_emulator.create(JOBS, foreign, namespace)
    with pytest.raises(RunError, match="not created by cratekeeper"):
        await runner_for(kube, namespace).run(request)


@pytest.mark.asyncio
async def test_a_failed_prepare_step_is_reported_with_its_termination_message(
    kube_emulator: KubeEmulator, kube: Kube, namespace: str, tmp_path: Path, run_task: list[Any]
) -> None:
    request = make_request(tmp_path)
    name = run_name(request, namespace)
    task = start(run_task, runner_for(kube, namespace), request)
    await running_job(kube_emulator, namespace, name)

    why = "DigestMismatch: manifest of ... hashes to sha256:12, but the registry reported ..."
    prepare = {"terminated": {"exitCode": 1, "reason": "Error", "message": why}}
    make_pod(
        kube_emulator,
        namespace,
        name,
        prepare=prepare,
        main={"waiting": {"reason": "PodInitializing"}},
    )
    finish_job(kube_emulator, namespace, name, "Failed", "BackoffLimitExceeded")
    result = await asyncio.wait_for(task, 10)

    assert result.status == "failed" and result.exit_code is None
    assert result.log_tail[-1] == f"cratekeeper: preparing the workspace failed: {why}"
    assert any("log of" in line and "not available" in line for line in result.log_tail)


def test_termination_message_lines_that_are_not_events_are_ignored() -> None:
    cut = '"status": "failed", "task": "cut off by the kubelet"}'  # the message keeps its end
    bad = '{"event": "stats", "ok": "many"}'
    events = parse_events(f"{cut}\nError: something\n[]\n{STATS}\n{bad}\n")
    assert events.counts.ok == 4 and events.failed_task is None


# --- the pod's two steps, run here for real ------------------------------------------------

ANSIBLE = str(Path(sys.executable).parent / "ansible-playbook")


@pytest.mark.skipif(not Path(ANSIBLE).exists(), reason="ansible-playbook is not installed")
def test_run_script_puts_the_first_failed_task_and_the_stats_in_the_termination_message(
    tmp_path: Path,
) -> None:
    """The main container's command, with the callback where prepare installs it."""
    from controller.runners.prepare import install_plugins

    block = tmp_path / "ws" / "blocks" / REF.name
    block.mkdir(parents=True)
    (block / "deploy.yml").write_text(
        textwrap.dedent(
            """\
            - hosts: localhost
              connection: local
              gather_facts: false
              tasks:
                - {name: first, debug: {msg: hello}}
                - {name: breaks here, fail: {msg: boom}}
            """
        )
    )
    request = make_request(tmp_path / "ws")
    env = main_env(request, OPTIONS)
    env.update(
        HOME=str(tmp_path),
        ANSIBLE_HOME=str(tmp_path / ".ansible"),
        KUBECONFIG="/dev/null",
        PATH=f"{Path(ANSIBLE).parent}:{os.environ['PATH']}",
        ANSIBLE_CALLBACK_PLUGINS=str(install_plugins(tmp_path / "tools") / "callback_plugins"),
        ANSIBLE_VARS_PLUGINS=str(tmp_path / "tools" / "vars_plugins"),
        POLYCRATE_WORKSPACE_SNAPSHOT_YAML=str(tmp_path / "snapshot.yml"),
        CRATEKEEPER_EVENTS_FILE=str(tmp_path / "events.jsonl"),
        CRATEKEEPER_TERMINATION_LOG=str(tmp_path / "termination-log"),
    )
    (tmp_path / "snapshot.yml").write_text("block: {name: app}\n")
    args = [ANSIBLE, "-e", f"@{tmp_path / 'snapshot.yml'}", "deploy.yml"]
    proc = subprocess.run(
        ["/bin/sh", "-c", RUN_SCRIPT, "cratekeeper-run", *args],
        cwd=block,
        env=env,
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 2, proc.stdout.decode()
    events = parse_events((tmp_path / "termination-log").read_text())
    assert events.failed_task == "breaks here"
    assert (events.counts.ok, events.counts.failed) == (1, 1)

    # A playbook that matched no host exits 0; the termination message still tells (and
    # counts the files written under the block's artifacts folder, which are not kept).
    env["CRATEKEEPER_ARTIFACTS_DIR"] = str(tmp_path / "ws" / request.artifacts_dir)
    args = [
        "/bin/sh",
        "-c",
        'mkdir -p "$CRATEKEEPER_ARTIFACTS_DIR" && touch "$CRATEKEEPER_ARTIFACTS_DIR/x" && '
        f'{ANSIBLE} "$@"',
        "x",
        "-e",
        f"@{tmp_path / 'snapshot.yml'}",
        "deploy.yml",
    ]
    (block / "deploy.yml").write_text("- hosts: all\n  tasks: [{ping: {}}]\n")
    (tmp_path / "events.jsonl").unlink()
    proc = subprocess.run(
        ["/bin/sh", "-c", RUN_SCRIPT, "cratekeeper-run", *args],
        cwd=block,
        env=env,
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout.decode()
    events = parse_events((tmp_path / "termination-log").read_text())
    assert events.nothing_ran is not None and "matched no host" in events.nothing_ran
    assert events.artifacts_written == 1


def test_prepare_lays_out_the_workspace_at_the_commit_and_the_block_at_the_digest(
    upstream: Upstream, git_daemon: GitDaemon, oci_registry: Registry, tmp_path: Path
) -> None:
    block_dir = tmp_path / "block"
    block_dir.mkdir()
    ref = BlockRef.parse(f"{oci_registry.host}/acme/blocks/prepared-app:1.0.0")
    (block_dir / "block.poly").write_text(f"name: {ref.name}\nversion: 1.0.0\nkind: generic\n")
    (block_dir / "deploy.yml").write_text("- hosts: localhost\n  tasks: []\n")
    client = RegistryClient(RegistryOptions(insecure_registries=(oci_registry.host,)))
    digest = push_block(block_dir, ref, client=client)
    commit = upstream.commit({"ws/workspace.poly": "name: one\n", "other.txt": "x"}, "first")
    upstream.commit({"ws/workspace.poly": "name: two\n"}, "second")
    dest = tmp_path / "pod" / "workspace"
    termination = tmp_path / "termination-log"
    common = [
        *("--repo", git_daemon.url(upstream), "--commit", commit, "--path", "ws"),
        *("--dest", str(dest), "--tools", str(tmp_path / "pod" / "tools")),
        *("--insecure-registry", oci_registry.host, "--termination-log", str(termination)),
    ]

    assert prepare_main([*common, "--block", f"{ref}@{digest}"]) == 0
    assert (dest / "workspace.poly").read_text() == "name: one\n"  # the commit, not the branch
    assert not (dest / "other.txt").exists()  # only the workspace's folder
    assert (dest / "blocks" / ref.name / "deploy.yml").is_file()
    assert (tmp_path / "pod/tools/callback_plugins/cratekeeper_events.py").is_file()
    assert (tmp_path / "pod/tools/vars_plugins/polycrate_vars.py").is_file()
    assert not termination.exists()

    # A local block: nothing to pull; the kept artifacts are laid back, the block's folder made.
    kept = tmp_path / "kept"
    (kept / "artifacts/blocks/infra").mkdir(parents=True)
    (kept / "artifacts/blocks/infra/inventory.yml").write_text("all: {}\n")
    (tmp_path / "kept.tar.gz").write_bytes(pack(kept))
    shutil.rmtree(dest)
    local = [
        "--artifacts",
        str(tmp_path / "kept.tar.gz"),
        "--artifacts-dir",
        "artifacts/blocks/app",
    ]
    assert prepare_main([*common, *local]) == 0
    assert (dest / "artifacts/blocks/infra/inventory.yml").read_text() == "all: {}\n"
    assert (dest / "artifacts/blocks/app").is_dir()

    wrong = "sha256:" + "0" * 64
    assert prepare_main([*common, "--block", f"{ref}@{wrong}"]) == 1
    assert termination.read_text().startswith("BlockNotFound: ")  # a digest it never held


def _flags(args: list[str], name: str) -> list[str]:
    """Every ``name VALUE`` pair of a command line, in order."""
    return [part for i, arg in enumerate(args) if arg == name for part in (arg, args[i + 1])]


def test_the_operators_jobs_pull_where_it_resolved_within_its_limits_and_outlast_its_grace(
    upstream: Upstream, git_daemon: GitDaemon, oci_registry: Registry, tmp_path: Path
) -> None:
    """DESIGN §5: CRATEKEEPER_REGISTRY_MIRRORS and CRATEKEEPER_MAX_BLOCK_SIZE reach the Job's
    init container (which then pulls a block named after a registry it cannot reach, through
    the mirror, as the operator did), and the pod may take the operator's shutdown grace."""
    from controller.operator.wiring import runner_factory
    from controller.settings import Settings

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_bytes(KUBECONFIG)
    kube = Kube.from_kubeconfig(kubeconfig)  # never reached: only manifests are built
    spec = WorkspaceSpec.model_validate({"source": {"url": "https://git.example.com/ws.git"}})
    settings = Settings(
        runner="kubernetes",
        registry_mirrors=f"registry.acme-corp.com={oci_registry.host}",
        insecure_registries=oci_registry.host,
        max_block_size=10_000_000,
        shutdown_grace=300.5,
    )
    runner = runner_factory(settings, kube)("acme", "acme-staging-1", spec)
    assert isinstance(runner, KubernetesRunner)
    pod = job_manifest(make_request(tmp_path), "ck-x", runner._options, SOURCE)["spec"]["template"]
    assert pod["spec"]["terminationGracePeriodSeconds"] >= settings.shutdown_grace
    args = pod["spec"]["initContainers"][0]["args"]
    mirror = _flags(args, "--registry-mirror")
    assert mirror == ["--registry-mirror", f"registry.acme-corp.com={oci_registry.host}"]
    assert _flags(args, "--max-block-size") == ["--max-block-size", "10000000"]
    assert manifest(tmp_path)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 10

    block_dir = tmp_path / "block"
    block_dir.mkdir()
    (block_dir / "block.poly").write_text(
        "name: acme/blocks/mirrored\nversion: 1.0.0\nkind: generic\n"
    )
    (block_dir / "big.bin").write_bytes(os.urandom(200_000))
    ref = BlockRef.parse("registry.acme-corp.com/acme/blocks/mirrored:1.0.0")
    client = RegistryClient(
        RegistryOptions(
            insecure_registries=(oci_registry.host,),
            mirrors=(("registry.acme-corp.com", oci_registry.host),),
        )
    )
    digest = push_block(block_dir, ref, client=client)
    commit = upstream.commit({"ws/workspace.poly": "name: mirrored\n"}, "first")
    dest = tmp_path / "pod" / "workspace"
    common = [
        *("--repo", git_daemon.url(upstream), "--commit", commit, "--path", "ws"),
        *("--dest", str(dest), "--block", f"{ref}@{digest}"),
        *("--insecure-registry", oci_registry.host, "--cache", str(tmp_path / "pod" / "cache")),
    ]
    assert prepare_main([*common, *mirror]) == 0
    assert (dest / "blocks" / ref.name / "big.bin").is_file()
    shutil.rmtree(dest)
    assert prepare_main([*common, *mirror, "--max-block-size", "100000"]) == 1
    assert prepare_main([*common, "--registry-mirror", "no-equals-sign"]) == 1


@pytest.mark.asyncio
async def test_a_job_still_running_for_an_older_commit_ends_before_the_next_run_starts(
    kube_emulator: KubeEmulator, kube: Kube, namespace: str, tmp_path: Path, run_task: list[Any]
) -> None:
    """Issue 10 point 6: the branch moved while the controller was down; the first Job runs on."""
    labels = {"cratekeeper.dev/workspace": "acme-prod"}
    older = make_request(tmp_path, revision="1a" * 20)
    first = start(run_task, runner_for(kube, namespace, labels=labels), older)
    old_name = job_name("acme-prod", older.revision, "app", "deploy", namespace=namespace)
    await running_job(kube_emulator, namespace, old_name)
    first.cancel()  # the controller goes away; its Job runs on

    newer = make_request(tmp_path)
    new_name = job_name("acme-prod", newer.revision, "app", "deploy", namespace=namespace)
    second = start(run_task, runner_for(kube, namespace, labels=labels), newer)
    await asyncio.sleep(0.5)
    assert kube_emulator.get(JOBS, new_name, namespace=namespace) is None  # not beside it
    assert not second.done()

    finish_job(kube_emulator, namespace, old_name, "Complete")
    await running_job(kube_emulator, namespace, new_name)
    make_pod(
        kube_emulator, namespace, new_name, main={"terminated": {"exitCode": 0, "message": STATS}}
    )
    finish_job(kube_emulator, namespace, new_name, "Complete")
    result = await asyncio.wait_for(second, 10)
    assert result.status == "succeeded"
    assert any(f"Job {old_name} of this Workspace" in line for line in result.log_tail)
    assert any(
        f"earlier Job {old_name}" in line and "succeeded" in line for line in result.log_tail
    )


@pytest.mark.asyncio
async def test_jobs_of_another_workspace_with_the_same_workspace_poly_name_are_left_alone(
    kube_emulator: KubeEmulator, kube: Kube, namespace: str, tmp_path: Path, run_task: list[Any]
) -> None:
    request = make_request(tmp_path)  # both objects' workspace.poly say acme-production-1
    one = runner_for(kube, namespace, labels={"cratekeeper.dev/workspace": "one"})
    two = runner_for(kube, namespace, labels={"cratekeeper.dev/workspace": "two"})
    assert one.job_name(request) != two.job_name(request)
    first = start(run_task, one, request)
    await running_job(kube_emulator, namespace, one.job_name(request))
    second = start(run_task, two, request)
    await running_job(kube_emulator, namespace, two.job_name(request))  # not waiting on "one"
    for task in (first, second):
        task.cancel()


@pytest.mark.asyncio
async def test_an_earlier_job_left_suspended_is_deleted_not_waited_for(
    kube_emulator: KubeEmulator, kube: Kube, namespace: str, tmp_path: Path, run_task: list[Any]
) -> None:
    older = make_request(tmp_path, revision="1a" * 20)
    old_name = run_name(older, namespace)
    manifest = job_manifest(older, old_name, OPTIONS, SOURCE)
    kube_emulator.create(JOBS, manifest, namespace=namespace)  # a controller died right here
    request = make_request(tmp_path)
    task = start(run_task, runner_for(kube, namespace), request)
    await running_job(kube_emulator, namespace, run_name(request, namespace))
    job = kube_emulator.get(JOBS, old_name, namespace=namespace)
    assert job is None or job["metadata"].get("deletionTimestamp")
    task.cancel()


@pytest.mark.asyncio
async def test_artifacts_a_job_wrote_but_did_not_seal_are_named_as_not_kept(
    kube_emulator: KubeEmulator, kube: Kube, namespace: str, tmp_path: Path, run_task: list[Any]
) -> None:
    request = make_request(tmp_path)
    name = run_name(request, namespace)
    task = start(run_task, runner_for(kube, namespace), request)
    await running_job(kube_emulator, namespace, name)
    message = f'{{"event": "artifacts", "written": 2}}\n{STATS}\n'
    make_pod(
        kube_emulator, namespace, name, main={"terminated": {"exitCode": 0, "message": message}}
    )
    finish_job(kube_emulator, namespace, name, "Complete")
    result = await asyncio.wait_for(task, 10)
    assert result.status == "succeeded" and result.counts.ok == 4
    assert any(
        "wrote 2 file(s) under artifacts/blocks/app/" in line and "nothing new was kept" in line
        for line in result.log_tail
    )


INVENTORY = "all: {hosts: {db-7f3a.internal: {ansible_password: hunter2-plaintext}}}\n"


def test_run_script_seals_the_artifacts_so_the_log_holds_only_ciphertext(tmp_path: Path) -> None:
    """The entry script for real: the action writes an inventory, exits 3; the log carries it
    sealed under the run's key, and only the runner's key and run id open it."""
    from controller.runners.prepare import install_plugins

    ws = tmp_path / "ws"
    block = ws / "blocks" / REF.name
    block.mkdir(parents=True)
    request = make_request(ws)
    key = sealed.new_key()
    (tmp_path / "artifacts.key").write_bytes(key)
    env = main_env(request, OPTIONS)
    env.update(
        PATH=f"{Path(ANSIBLE).parent}:{os.environ['PATH']}",  # its Python seals
        POLYCRATE_WORKSPACE=str(ws),
        CRATEKEEPER_ARTIFACTS_DIR=str(ws / request.artifacts_dir),
        CRATEKEEPER_EVENTS_FILE=str(tmp_path / "events.jsonl"),
        CRATEKEEPER_TERMINATION_LOG=str(tmp_path / "termination-log"),
        CRATEKEEPER_ARTIFACTS_KEY=str(tmp_path / "artifacts.key"),
        CRATEKEEPER_SEALER=str(install_plugins(tmp_path / "tools") / "sealed.py"),
        CRATEKEEPER_RUN_ID="ck-run-1",
    )
    action = (
        'mkdir -p "$CRATEKEEPER_ARTIFACTS_DIR" && '
        'printf "$1" > "$CRATEKEEPER_ARTIFACTS_DIR/inventory.yml"; echo done; exit 3'
    )
    proc = subprocess.run(
        ["/bin/sh", "-c", RUN_SCRIPT, "cratekeeper-run", "/bin/sh", "-c", action, "x", INVENTORY],
        cwd=block,
        env=env,
        capture_output=True,
        check=False,
    )
    log = proc.stdout.decode() + proc.stderr.decode()
    assert proc.returncode == 3, log
    assert "hunter2" not in log and "db-7f3a" not in log
    lines, body = sealed.split_log(log, "ck-run-1")
    assert body is not None and lines == ["done"]
    back = tmp_path / "back"
    assert unpack(sealed.open_block(body, key, "ck-run-1"), back) == ["app/inventory.yml"]
    assert (back / "artifacts/blocks/app/inventory.yml").read_text() == INVENTORY

    tampered = body[:40] + ("A" if body[40] != "A" else "B") + body[41:]
    for wrong in (
        lambda: sealed.open_block(tampered, key, "ck-run-1"),
        lambda: sealed.open_block(body, sealed.new_key(), "ck-run-1"),
        lambda: sealed.open_block(body, key, "ck-run-2"),  # another run's block
        lambda: sealed.open_block(body[:-8], key, "ck-run-1"),
    ):
        with pytest.raises(ValueError, match="sealed artifacts"):
            wrong()
    assert sealed.split_log(log, "ck-run-2") == (["done"], None)
    assert sealed.MAX_PACKED == MAX_PACKED


def _sealed_log(tree: Path, key: bytes, run_id: str) -> bytes:
    (tree / "app").mkdir(parents=True)
    (tree / "app" / "inventory.yml").write_text(INVENTORY)
    lines = sealed.seal(sealed.pack_tree(tree), key, run_id)
    return ("PLAY [deploy]\nPLAY RECAP ok=4\n" + "\n".join(lines) + "\n").encode()


@pytest.mark.asyncio
async def test_a_jobs_sealed_artifacts_are_brought_back_into_the_export(
    kube_emulator: KubeEmulator, kube: Kube, namespace: str, tmp_path: Path, run_task: list[Any]
) -> None:
    request = make_request(tmp_path / "export")
    name = run_name(request, namespace)
    task = start(run_task, runner_for(kube, namespace), request)
    job = await running_job(kube_emulator, namespace, name)
    secret = kube_emulator.get(SECRETS, name, namespace=namespace)
    assert secret is not None
    key = base64.b64decode(secret["data"]["artifacts.key"])
    assert len(key) == 32 and secret["data"]["artifacts.key"] not in json.dumps(job)
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CRATEKEEPER_RUN_ID"] == name
    assert env["CRATEKEEPER_ARTIFACTS_KEY"] == "/run/cratekeeper/artifacts.key"

    log = _sealed_log(tmp_path / "pod", key, name)
    terminated = {"terminated": {"exitCode": 0, "message": STATS + "\n"}}
    make_pod(kube_emulator, namespace, name, main=terminated, logs={MAIN: log})
    finish_job(kube_emulator, namespace, name, "Complete")
    result = await asyncio.wait_for(task, 10)

    assert result.status == "succeeded"
    kept = tmp_path / "export" / "artifacts/blocks/app/inventory.yml"
    assert kept.read_text() == INVENTORY
    assert result.log_tail[:2] == ("PLAY [deploy]", "PLAY RECAP ok=4")
    assert "cratekeeper: brought back 1 artifact file(s) from the Job" in result.log_tail
    assert not any("cratekeeper-artifacts" in line for line in result.log_tail)
    assert len(result.log_tail) == 3


@pytest.mark.asyncio
async def test_a_block_not_sealed_with_the_runs_key_is_refused_and_nothing_is_kept(
    kube_emulator: KubeEmulator, kube: Kube, namespace: str, tmp_path: Path, run_task: list[Any]
) -> None:
    request = make_request(tmp_path / "export")
    name = run_name(request, namespace)
    task = start(run_task, runner_for(kube, namespace), request)
    await running_job(kube_emulator, namespace, name)
    log = _sealed_log(tmp_path / "pod", sealed.new_key(), name)
    terminated = {"terminated": {"exitCode": 0, "message": STATS + "\n"}}
    make_pod(kube_emulator, namespace, name, main=terminated, logs={MAIN: log})
    finish_job(kube_emulator, namespace, name, "Complete")
    result = await asyncio.wait_for(task, 10)

    assert result.status == "succeeded"  # the playbook's result; the artifacts' is in the log
    assert not (tmp_path / "export" / "artifacts").exists()
    assert any(
        "artifacts were not kept" in line and "do not decrypt" in line for line in result.log_tail
    )
