"""The recording Runner double the operator scenarios use: it records, scripts, holds, redacts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from controller.runners.base import ActionRequest, Runner
from tests.support.actions import request
from tests.support.recording_runner import Outcome, RecordingRunner

KUBECONFIG = b"""\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: kube-t0ken-secret}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
"""


@pytest.fixture
def deploy(tmp_path: Path) -> ActionRequest:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_bytes(KUBECONFIG)
    return request(tmp_path, kubeconfig, "acme-app")


def test_each_run_is_recorded_per_workspace_and_succeeds_by_default(
    deploy: ActionRequest,
) -> None:
    runner = RecordingRunner()
    staging: Runner = runner.factory("acme", "acme-staging-1", object())
    result = asyncio.run(staging.run(deploy))
    assert result.succeeded and result.counts.changed == 1
    (only,) = runner.runs
    assert (only.namespace, only.name, only.request, only.result) == (
        "acme",
        "acme-staging-1",
        deploy,
        result,
    )
    assert runner.pins("acme-staging-1") == [("app", str(deploy.ref), "deploy")]
    assert runner.pins("acme-production-1") == []


def test_a_scripted_failure_names_its_task_and_its_log_is_redacted(deploy: ActionRequest) -> None:
    runner = RecordingRunner(
        Outcome("failed", failed_task="Deployment", log=("token kube-t0ken-secret refused",))
    )
    lines: list[str] = []
    result = asyncio.run(runner.run(deploy, lines.append))
    assert (result.status, result.failed_task, result.counts.failed) == ("failed", "Deployment", 1)
    assert lines == list(result.log_tail) == ["token *** refused"]


def test_held_runs_wait_for_the_test_and_a_cancelled_one_is_marked(deploy: ActionRequest) -> None:
    runner = RecordingRunner()

    async def scenario() -> None:
        gate = runner.hold()
        first = asyncio.create_task(runner.run(deploy))
        await runner.until(1)
        await asyncio.sleep(0.1)
        assert not first.done()  # held
        gate.set()
        assert (await first).succeeded
        runner.script(lambda req: Outcome(delay=30.0))
        second = asyncio.create_task(runner.run(deploy))
        await runner.until(2)
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        await runner.until(2, finished=True)

    asyncio.run(scenario())
    assert [r.cancelled for r in runner.runs] == [False, True]
    assert runner.max_concurrent == 1


def test_an_async_script_may_act_before_the_run_ends(deploy: ActionRequest) -> None:
    seen: list[str] = []

    async def script(req: ActionRequest) -> Outcome:
        seen.append(req.revision)
        return Outcome(changed=0)

    runner = RecordingRunner(script)
    result = asyncio.run(runner.run(deploy))
    assert seen == [deploy.revision] and result.counts.changed == 0
