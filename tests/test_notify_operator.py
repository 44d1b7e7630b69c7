"""Commit statuses and alerts end to end: Kopf against the emulated API, real Git, the real
registry, and a real local HTTP server standing in for GitHub and Slack. The runs are the
recording Runner double's (the operator's protocol boundary): these tests are about what the
operator tells people, not about Ansible."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from controller.settings import Settings
from tests.support.gitrepo import GitRepo
from tests.support.http_recorder import HttpRecorder
from tests.support.kube_emulator import WORKSPACES, KubeEmulator
from tests.support.operator import (
    Staging,
    app_block,
    applied,
    failed_with,
    namespace,
    notification_failures,
    running,
    secret,
    settings,
    until_status,
    workspace,
)
from tests.support.recording_runner import Outcome, RecordingRunner

__all__ = ["app_block", "namespace", "settings"]  # fixtures of tests/support/operator.py

FORGE_TOKEN = "ghp_n0tify-s3cret"
SLACK_PATH = "/services/T0001/B0001/sl4ck-s3cret"
REPOSITORY = "acme/acme-staging-1"


def notifying(url: str, api: str, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    body = workspace("ws", url)
    body["spec"]["notify"] = {
        "commitStatus": {
            "secretRef": {"name": "forge-token"},
            "provider": "github",
            "apiURL": api,
            "repository": REPOSITORY,
        },
        "alerts": alerts,
    }
    return body


def test_a_failing_run_sets_a_failure_status_on_the_commit_and_alerts_slack_once(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    settings: Settings,
    app_block: str,
    tmp_path: Path,
    http_recorder: HttpRecorder,
) -> None:
    staging = Staging(GitRepo(tmp_path / "ws"), app_block, f"{namespace}-app", kubeconfig)
    sha = staging.head
    secret(kube_emulator, namespace, "forge-token", token=FORGE_TOKEN)
    secret(kube_emulator, namespace, "slack", address=f"{http_recorder.url}{SLACK_PATH}")
    slack = [{"type": "slack", "secretRef": {"name": "slack"}}]
    runner = RecordingRunner(Outcome("failed", failed_task="Deployment"))
    statuses = f"/repos/{REPOSITORY}/statuses/{sha}"

    async def scenario() -> None:
        async with running(
            settings, kubeconfig, namespace, runner.factory, retry_max=0.5
        ) as operator:
            kube_emulator.create(WORKSPACES, notifying(staging.url, http_recorder.url, slack),
                                 namespace)  # fmt: skip
            await until_status(kube_emulator, namespace, "ws", failed_with("RunFailed"))
            await runner.until(3, finished=True)  # the first attempt and two retries
            await asyncio.to_thread(http_recorder.wait_for, statuses, 6)
            (alert,) = await asyncio.to_thread(http_recorder.wait_for, SLACK_PATH)
            assert "run failed" in alert.json()["text"]
            assert "Reason: RunFailed" in json.dumps(alert.json())

            runner.script(Outcome())  # the next retry succeeds
            await until_status(kube_emulator, namespace, "ws", applied(sha))
            await asyncio.to_thread(http_recorder.wait_for, SLACK_PATH, 2)
            assert notification_failures(operator, namespace) == 0

    asyncio.run(scenario())
    sent = http_recorder.to(statuses)
    first, second = sent[0], sent[1]
    assert (first.json()["state"], second.json()["state"]) == ("pending", "failure")
    assert sent[-1].json()["state"] == "success"
    assert {r.json()["context"] for r in sent} == {"cratekeeper/ws"}
    assert "app: (new) → 1.1.0" in second.json()["description"]
    assert first.headers["authorization"] == f"Bearer {FORGE_TOKEN}"
    # Retries set the commit status each time, but Slack heard of the failure once.
    slack_texts = [r.json()["text"] for r in http_recorder.to(SLACK_PATH)]
    assert len(slack_texts) == 2 and "applied" in slack_texts[1]
    # Nothing secret in what the operator wrote to the cluster.
    events = kube_emulator.list_objects("v1/events", namespace=namespace)
    written = json.dumps([kube_emulator.get(WORKSPACES, "ws", namespace=namespace), *events])
    assert FORGE_TOKEN not in written and "sl4ck-s3cret" not in written


def test_a_forge_that_is_down_never_blocks_or_fails_the_run(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    settings: Settings,
    app_block: str,
    tmp_path: Path,
    http_recorder: HttpRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    staging = Staging(GitRepo(tmp_path / "ws"), app_block, f"{namespace}-app", kubeconfig)
    secret(kube_emulator, namespace, "forge-token", token=FORGE_TOKEN)
    http_recorder.answer(503)  # down: every answer is 503, every request retried
    runner = RecordingRunner()

    async def scenario() -> None:
        async with running(
            settings, kubeconfig, namespace, runner.factory, retry_max=0.5
        ) as operator:
            kube_emulator.create(WORKSPACES, notifying(staging.url, http_recorder.url, []),
                                 namespace)  # fmt: skip
            await until_status(kube_emulator, namespace, "ws", applied(staging.head))
            assert runner.pins("ws")  # it ran while the forge kept answering 503
            for _ in range(200):
                if (
                    notification_failures(operator, namespace) >= 2
                ):  # pending and success, each given up
                    break
                await asyncio.sleep(0.1)
            assert notification_failures(operator, namespace) == 2

    asyncio.run(scenario())
    assert "HTTP 503" in caplog.text and FORGE_TOKEN not in caplog.text
