"""A Workspace's life in the operator: woken by a webhook push or the requested-at annotation,
an operator stopped mid-run, suspend and delete (Kopf on the emulated API, real Git and
registry; runs are the recording double's)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
from pathlib import Path

from controller.api.spec import REQUESTED_AT
from controller.operator.metrics import OperatorMetrics, refresh_cache_sizes
from controller.operator.state import WEBHOOK_SECRET_ANNOTATION
from controller.registry.cache import BlobCache
from controller.settings import Settings
from controller.source import GitRef, fetch
from tests.support.gitrepo import GitRepo
from tests.support.kube_emulator import WORKSPACES, KubeEmulator
from tests.support.operator import (
    Staging,
    app_block,
    applied,
    change,
    condition,
    delete_workspace,
    github_signature,
    http,
    namespace,
    patched,
    ready,
    running,
    secret,
    settings,
    status_of,
    ticks,
    until_status,
    workspace,
    workspace_writes,
)
from tests.support.recording_runner import RecordingRunner

__all__ = ["app_block", "namespace", "settings"]  # fixtures of tests/support/operator.py


def test_a_webhook_push_or_the_requested_at_annotation_reconciles_at_once(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    settings: Settings,
    app_block: str,
    tmp_path: Path,
) -> None:
    staging = Staging(GitRepo(tmp_path / "staging"), app_block, f"{namespace}-app", kubeconfig)
    token = b"hook-s3cret"
    secret(kube_emulator, namespace, "hook", token=token)
    body = workspace("ws", staging.url, interval="1h")
    body["metadata"]["annotations"] = {WEBHOOK_SECRET_ANNOTATION: "hook"}

    runner = RecordingRunner()

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace, runner.factory) as operator:
            kube_emulator.create(WORKSPACES, body, namespace)
            await until_status(kube_emulator, namespace, "ws", applied(staging.head))
            url = f"http://127.0.0.1:{operator.bound['webhook']}/hook/{namespace}/ws"
            push = json.dumps({"ref": "refs/heads/main"}).encode()

            async def post(headers: dict[str, str], path: str = url) -> int:
                return (await http("POST", path, data=push, headers=headers))[0]

            bumped = staging.pin("1.2.0")
            bad = await post({"X-Hub-Signature-256": github_signature(b"wrong", push)})
            unknown = await post(
                {"X-Hub-Signature-256": github_signature(token, push)},
                url.replace("/ws", "/nope"),
            )
            assert (bad, unknown) == (404, 404)
            good = await post(
                {"X-Hub-Signature-256": github_signature(token, push), "X-GitHub-Event": "push"}
            )
            assert good == 202
            await until_status(kube_emulator, namespace, "ws", applied(bumped))

            back = staging.pin("1.1.0")
            patch = {"metadata": {"annotations": {REQUESTED_AT: "2024-05-01T10:00:00Z"}}}
            assert await patched(kubeconfig, namespace, "ws", patch)
            status = await until_status(kube_emulator, namespace, "ws", applied(back))
            assert change(status["history"][0]) == ("1.2.0", "1.1.0", True)

            probes = f"http://127.0.0.1:{operator.bound['metrics']}"
            for probe in ("/healthz", "/readyz"):
                assert (await http("GET", probes + probe))[0] == 200
            _, metrics = await http("GET", probes + "/metrics")
            runs = f'cratekeeper_runs_total{{name="ws",namespace="{namespace}",result="Succeeded"}}'
            assert f"{runs} 3.0" in metrics
            assert 'cratekeeper_cache_bytes{cache="git"}' in metrics
            assert 'cratekeeper_cache_bytes{cache="blobs"}' in metrics

    asyncio.run(scenario())


def test_an_operator_stopped_mid_run_does_not_run_the_revision_twice(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    settings: Settings,
    app_block: str,
    tmp_path: Path,
) -> None:
    staging = Staging(GitRepo(tmp_path / "staging"), app_block, f"{namespace}-app", kubeconfig)
    first, second = RecordingRunner(), RecordingRunner()
    gate = first.hold()

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace, first.factory):
            kube_emulator.create(WORKSPACES, workspace("ws", staging.url), namespace)
            await first.until(1)
            reconciling = condition(status_of(kube_emulator, namespace, "ws"), "Reconciling")
            assert (reconciling["status"], reconciling["reason"]) == ("True", "Progressing")
            # Stop the operator while the run is held; release the run meanwhile.
            asyncio.get_running_loop().call_later(0.5, gate.set)
        (only,) = first.runs
        assert only.result is not None and not only.cancelled  # it ran to its end
        status = status_of(kube_emulator, namespace, "ws")
        assert status["lastAppliedRevision"] == staging.head  # recorded before the exit

        async with running(settings, kubeconfig, namespace, second.factory) as operator:
            await ticks(operator, namespace, "ws", 2)
            status = await until_status(kube_emulator, namespace, "ws", applied(staging.head))
        assert second.runs == []  # no second run
        assert len(status["history"]) == 1
        assert condition(status, "Reconciling")["status"] == "False"

    asyncio.run(scenario())


def test_suspend_stops_runs_and_delete_removes_what_runs_left(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    settings: Settings,
    app_block: str,
    tmp_path: Path,
) -> None:
    staging = Staging(GitRepo(tmp_path / "staging"), app_block, f"{namespace}-app", kubeconfig)
    # What the kubernetes runner writes on its Jobs and Secrets; "not-ours" lacks managed-by.
    labels = {"cratekeeper.dev/workspace": "ws", "app.kubernetes.io/managed-by": "cratekeeper"}
    job = {"metadata": {"name": "ws-run", "labels": labels}, "spec": {"template": {}}}
    kube_emulator.create("batch/v1/jobs", job, namespace)
    kube_emulator.create(
        "v1/secrets", {"metadata": {"name": "ws-kube", "labels": labels}}, namespace
    )
    kube_emulator.create("v1/secrets", {"metadata": {"name": "other"}}, namespace)
    not_ours = {"name": "not-ours", "labels": {"cratekeeper.dev/workspace": "ws"}}
    kube_emulator.create("v1/secrets", {"metadata": not_ours}, namespace)
    suspended = workspace("ws", staging.url)
    suspended["spec"]["suspend"] = True

    runner = RecordingRunner()

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace, runner.factory) as operator:
            mark = kube_emulator.mark()
            kube_emulator.create(WORKSPACES, suspended, namespace)
            await ticks(operator, namespace, "ws", 1, total=True)
            status = status_of(kube_emulator, namespace, "ws")  # no runs; suspend is visible
            assert not status.get("history") and "lastFetchedRevision" not in status
            paused = condition(status, "Suspended")
            assert (paused["status"], paused["reason"]) == ("True", "Suspended")
            assert ready(status)["message"].startswith("suspended (spec.suspend)")
            # One status write (the condition), nothing else.
            writes = [w for w in workspace_writes(kube_emulator, mark, namespace) if "/status" in w]
            assert len(writes) == 1

            await delete_workspace(kube_emulator, namespace, "ws")

    asyncio.run(scenario())
    assert runner.runs == []
    assert kube_emulator.get("batch/v1/jobs", "ws-run", namespace=namespace) is None
    assert kube_emulator.get("v1/secrets", "ws-kube", namespace=namespace) is None
    assert kube_emulator.get("v1/secrets", "other", namespace=namespace) is not None
    assert kube_emulator.get("v1/secrets", "not-ours", namespace=namespace) is not None


def test_a_deleted_workspaces_git_cache_goes_unless_another_workspace_still_uses_it(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    settings: Settings,
    app_block: str,
    tmp_path: Path,
) -> None:
    shared = Staging(GitRepo(tmp_path / "shared"), app_block, f"{namespace}-app", kubeconfig)
    own = Staging(GitRepo(tmp_path / "own"), app_block, f"{namespace}-own", kubeconfig)
    git_cache = settings.cache_dir / "git" / namespace
    runner = RecordingRunner()

    def cached() -> set[str]:
        return {p.name.split("-")[0] for p in git_cache.glob("*.git")}

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace, runner.factory) as operator:
            for name, url in (("a", shared.url), ("b", shared.url), ("c", own.url)):
                kube_emulator.create(WORKSPACES, workspace(name, url), namespace)
            for name in ("a", "b", "c"):
                await ticks(operator, namespace, name, 1, total=True)
            assert cached() == {"shared", "own"}
            await delete_workspace(kube_emulator, namespace, "a")
            assert cached() == {"shared", "own"}  # b still fetches the shared repository
            await delete_workspace(kube_emulator, namespace, "c")
            assert cached() == {"shared"}  # nobody else fetched c's own one
            await delete_workspace(kube_emulator, namespace, "b")
            assert cached() == set()

    asyncio.run(scenario())


def test_the_cache_size_gauge_follows_the_disk_without_walking_it_per_scrape(
    tmp_path: Path,
) -> None:
    """``cratekeeper_cache_bytes``: the Git mirrors' bytes on disk and the blob store's, measured
    by a refresher (once a minute in the operator), not by a scrape."""
    cache_dir = tmp_path / "cache"
    repo = GitRepo(tmp_path / "repo")
    repo.write("workspace.poly", "name: sized\n" + "x" * 50_000)
    repo.commit("first")
    fetch(f"file://{repo.path}", GitRef.branch("main"), cache_dir / "git" / "ns")
    blob = os.urandom(30_000)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    BlobCache(cache_dir / "oci").fetch(digest, len(blob), lambda out: out.write(blob))
    metrics = OperatorMetrics()

    def gauge(kind: str) -> float:
        value = metrics.registry.get_sample_value("cratekeeper_cache_bytes", {"cache": kind})
        return -1.0 if value is None else value

    async def scenario() -> None:
        refresher = asyncio.create_task(refresh_cache_sizes(metrics, cache_dir, every=0.05))
        try:
            while gauge("blobs") < 0:
                await asyncio.sleep(0.01)
            on_disk = sum(f.stat().st_size for f in (cache_dir / "git").rglob("*") if f.is_file())
            assert gauge("git") == on_disk > 0
            assert gauge("blobs") == len(blob)
            metrics.exposition()  # a scrape reads the last measurement
            shutil.rmtree(cache_dir / "git")
            while gauge("git") != 0:
                await asyncio.sleep(0.01)
        finally:
            refresher.cancel()

    asyncio.run(asyncio.wait_for(scenario(), timeout=20))


def test_an_idle_check_reads_no_secret_and_a_due_run_reads_them_again(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    settings: Settings,
    app_block: str,
    tmp_path: Path,
) -> None:
    """Issue 11 point 1: the Git credentials are held per worker; the registry (and decryption)
    Secrets are read only when a run is due. Counted as the emulated API's Secret GETs."""
    staging = Staging(GitRepo(tmp_path / "staging"), app_block, f"{namespace}-app", kubeconfig)
    secret(kube_emulator, namespace, "git", username="ci", password="s3cret")
    secret(kube_emulator, namespace, "registry", **{".dockerconfigjson": json.dumps({"auths": {}})})
    body = workspace("ws", staging.url)
    body["spec"]["source"]["secretRef"] = {"name": "git"}
    body["spec"]["registry"] = {"secretRef": {"name": "registry"}}
    runner = RecordingRunner()

    def secret_gets(since: int) -> list[str]:
        return [
            str(r.name)
            for r in kube_emulator.requests(since)
            if r.method == "GET"
            and r.resource == "v1/secrets"
            and r.namespace == namespace
            and r.name in ("git", "registry")  # the spec's; a run also reads its artifacts'
        ]

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace, runner.factory) as operator:
            mark = kube_emulator.mark()
            kube_emulator.create(WORKSPACES, body, namespace)
            await until_status(kube_emulator, namespace, "ws", applied(staging.head))
            assert sorted(set(secret_gets(mark))) == ["git", "registry"]
            idle = kube_emulator.mark()
            await ticks(operator, namespace, "ws", 3)
            assert secret_gets(idle) == []  # three checks of an unmoved ref: no Secret read
            due = kube_emulator.mark()
            head = staging.pin("1.2.0")
            await until_status(kube_emulator, namespace, "ws", applied(head))
            assert secret_gets(due) == ["registry"]  # the run's; Git's are still held

    asyncio.run(scenario())
