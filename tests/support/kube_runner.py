"""Shared data, fixtures and helpers of the ``kubernetes`` runner's tests.

A run's :class:`ActionRequest` and pod options, and the emulator playing the Job controller and
the kubelet: the emulator has no controllers, so nothing runs by itself. The helpers patch the
Job's status (conditions), create its pod with the container states (the termination message is
the result channel) and serve the pod's log with a kmock reaction (the emulator itself has no
``/log``). Registered as a pytest plugin in tests/conftest.py (fixtures ``namespace``, ``kube``,
``run_task``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import requests

from controller.kube import Kube
from controller.refs import BlockRef
from controller.runners.base import ActionRequest, RunResult, StaticContract
from controller.runners.kubernetes import (
    LABEL_JOB,
    MAIN,
    PREPARE,
    KubernetesRunner,
    PodOptions,
    WorkspaceSource,
    job_manifest,
    job_name,
)
from tests.support.kube_emulator import KubeEmulator

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
ANSIBLE = str(Path(sys.executable).parent / "ansible-playbook")


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
