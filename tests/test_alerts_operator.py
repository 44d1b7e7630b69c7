"""Alerts selected by a Workspace label selector, end to end: Kopf against the emulated API
(serving the Alert CRD), real Git, the real registry, and the real local HTTP recorder standing
in for the webhook receivers. Runs are the recording Runner double's (the operator's protocol
boundary): these tests are about whom the operator tells."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from controller.kube import Kube
from controller.notify.alerts import signature
from controller.settings import Settings
from tests.support.gitrepo import GitRepo
from tests.support.http_recorder import HttpRecorder
from tests.support.kube_emulator import ALERTS, WORKSPACE_CRD, WORKSPACES, KubeEmulator
from tests.support.operator import (
    Staging,
    app_block,
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

HMAC_KEY = "hm4c-s3cret"
PRODUCTION_PATH = "/hooks/production-s3cret"
TEAMS_PATH = "/hooks/teams-s3cret"


def labelled(name: str, url: str, **labels: str) -> dict[str, Any]:
    body = workspace(name, url)
    body["metadata"]["labels"] = labels
    return body


def alert_object(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "cratekeeper.dev/v1alpha1", "kind": "Alert",
            "metadata": {"name": name}, "spec": spec}  # fmt: skip


def test_an_alert_selecting_one_workspace_by_label_alerts_only_its_failure(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    namespace: str,
    settings: Settings,
    app_block: str,
    tmp_path: Path,
    http_recorder: HttpRecorder,
) -> None:
    prod = Staging(GitRepo(tmp_path / "prod"), app_block, f"{namespace}-prod", kubeconfig)
    dev = Staging(GitRepo(tmp_path / "dev"), app_block, f"{namespace}-dev", kubeconfig)
    secret(kube_emulator, namespace, "prod-hook",
           address=f"{http_recorder.url}{PRODUCTION_PATH}", token=HMAC_KEY)  # fmt: skip
    secret(kube_emulator, namespace, "teams-hook", address=f"{http_recorder.url}{TEAMS_PATH}")
    kube_emulator.create(ALERTS, alert_object(
        "production-failures",
        provider="generic-hmac",
        secretRef={"name": "prod-hook"},
        eventKinds=["RunFailed", "Stalled"],
        workspaceSelector={"matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["production"]}]},
    ), namespace)  # fmt: skip
    # Would select both, but is suspended: nothing goes to Teams.
    kube_emulator.create(ALERTS, alert_object(
        "everything", provider="msteams", secretRef={"name": "teams-hook"}, suspend=True
    ), namespace)  # fmt: skip
    runner = RecordingRunner(Outcome("failed", failed_task="Deployment"))

    async def scenario() -> None:
        async with running(
            settings, kubeconfig, namespace, runner.factory, retry_max=0.5
        ) as operator:
            kube_emulator.create(WORKSPACES, labelled("prod", prod.url, tier="production"),
                                 namespace)  # fmt: skip
            kube_emulator.create(WORKSPACES, labelled("dev", dev.url, tier="dev"), namespace)
            for name in ("prod", "dev"):
                await until_status(kube_emulator, namespace, name, failed_with("RunFailed"))
            await runner.until(6, finished=True)  # each: the first attempt and two retries
            await asyncio.to_thread(http_recorder.wait_for, PRODUCTION_PATH)
            await operator.notifier.idle()
            assert notification_failures(operator, namespace) == 0

    asyncio.run(scenario())
    (sent,) = http_recorder.to(PRODUCTION_PATH)  # prod's failure, once despite the retries
    body = sent.json()
    assert (body["event"], body["workspace"]) == ("RunFailed", {"namespace": namespace,
                                                                 "name": "prod"})  # fmt: skip
    assert body["revision"] == prod.head
    assert sent.headers["x-signature"] == signature(HMAC_KEY.encode(), sent.body)
    assert http_recorder.to(TEAMS_PATH) == []
    assert [r.path for r in http_recorder.requests] == [PRODUCTION_PATH]  # nothing about dev
    events = kube_emulator.list_objects("v1/events", namespace=namespace)
    written = json.dumps([*events, *(kube_emulator.get(WORKSPACES, n, namespace=namespace)
                                     for n in ("prod", "dev"))])  # fmt: skip
    assert HMAC_KEY not in written and "production-s3cret" not in written


def test_an_invalid_alert_is_counted_and_logged_and_the_others_still_send(
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
    secret(kube_emulator, namespace, "hook", address=f"{http_recorder.url}{PRODUCTION_PATH}")
    kube_emulator.create(ALERTS, alert_object(
        "a-broken", provider="slack", secretRef={"name": "hook"},
        workspaceSelector={"matchExpressions": [{"key": "tier", "operator": "In"}]},
    ), namespace)  # fmt: skip
    kube_emulator.create(ALERTS, alert_object(
        "b-applied", provider="generic", secretRef={"name": "hook"}, eventKinds=["RunSucceeded"]
    ), namespace)  # fmt: skip
    runner = RecordingRunner()

    async def scenario() -> None:
        async with running(
            settings, kubeconfig, namespace, runner.factory, retry_max=0.5
        ) as operator:
            kube_emulator.create(WORKSPACES, workspace("ws", staging.url), namespace)
            (sent,) = await asyncio.to_thread(http_recorder.wait_for, PRODUCTION_PATH)
            await operator.notifier.idle()
            assert sent.json()["event"] == "RunSucceeded"
            assert "x-signature" not in sent.headers  # generic: unsigned
            assert notification_failures(operator, namespace) == 1  # the broken Alert

    asyncio.run(scenario())
    assert f"Alert {namespace}/a-broken: spec.workspaceSelector.matchExpressions.0" in caplog.text
    assert "needs values" in caplog.text


def test_the_adapter_lists_alerts_by_name_and_none_without_the_alert_crd(
    kube_emulator: KubeEmulator, kubeconfig: Path, namespace: str, tmp_path: Path
) -> None:
    for name in ("b", "a"):
        kube_emulator.create(ALERTS, alert_object(name, provider="slack"), namespace)
    kube = Kube.from_kubeconfig(kubeconfig)
    with KubeEmulator(crds=[WORKSPACE_CRD]) as bare:
        without = Kube.from_kubeconfig(bare.write_kubeconfig(tmp_path / "bare.yml"))
        try:
            listed = asyncio.run(kube.list_alerts(namespace))
            assert [(a.name, a.namespace, a.spec["provider"]) for a in listed] == [
                ("a", namespace, "slack"),
                ("b", namespace, "slack"),
            ]
            assert asyncio.run(without.list_alerts("default")) == []
        finally:
            kube.close()
            without.close()
