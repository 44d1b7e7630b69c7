"""The kubernetes runner's runs, followed against the emulator: create, adopt, retry, report.

The emulator has no controllers, so nothing runs by itself: the tests play the Job controller
and the kubelet (helpers in tests/support/kube_runner.py). A Workspace's earlier Jobs end before
its next run starts.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any, cast

import pytest

from controller.api.spec import WorkspaceSpec
from controller.errors import CratekeeperError, KubeError, RunError
from controller.kube import Kube
from controller.refs import BlockRef
from controller.runners.events import parse_events
from controller.runners.kubernetes import (
    LABEL_WORKSPACE,
    MAIN,
    KubernetesRunner,
    job_manifest,
    job_name,
)
from tests.support.kube_emulator import KubeEmulator
from tests.support.kube_runner import (
    DIGEST,
    IMAGE,
    JOBS,
    KUBECONFIG,
    OPTIONS,
    PREPARE_IMAGE,
    REF,
    SECRETS,
    SOURCE,
    STATS,
    TOKEN,
    finish_job,
    job_writes,
    make_pod,
    make_request,
    run_name,
    runner_for,
    running_job,
    start,
)


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
async def test_a_tag_pin_runs_the_digest_the_pipeline_pulled(
    kube_emulator: KubeEmulator, kube: Kube, namespace: str, tmp_path: Path, run_task: list[Any]
) -> None:
    tag_only = BlockRef.parse(str(REF).split("@")[0])
    request = make_request(tmp_path, ref=tag_only, digest=DIGEST)
    start(run_task, runner_for(kube, namespace), request)
    job = await running_job(kube_emulator, namespace, run_name(request, namespace))
    args = job["spec"]["template"]["spec"]["initContainers"][0]["args"]
    assert args[args.index("--block") + 1] == f"{tag_only}@{DIGEST}"
