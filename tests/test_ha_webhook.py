"""A push that reaches the wrong replica (a standby, another shard) is checked there and passed
on through the API; the instance that serves the Workspace reconciles at once (Kopf on the
emulated API, real Git and registry; runs are the recording double's)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from controller.api.spec import PUSHED_AT
from controller.operator.shards import SHARD_KEY
from controller.operator.state import WEBHOOK_SECRET_ANNOTATION
from controller.settings import Settings
from tests.support.gitrepo import GitRepo
from tests.support.kube_emulator import WORKSPACES, KubeEmulator
from tests.support.operator import (
    Staging,
    app_block,
    applied,
    github_signature,
    http,
    namespace,
    running,
    secret,
    settings,
    until_status,
    workspace,
)
from tests.support.recording_runner import RecordingRunner

__all__ = ["app_block", "namespace", "settings"]  # fixtures of tests/support/operator.py


def test_a_push_to_another_shard_is_passed_on_and_reconciled_by_the_workspaces_own(
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
    body["metadata"]["labels"] = {SHARD_KEY: "shard1"}
    shard1 = settings.model_copy(
        update={"label_selector": f"{SHARD_KEY} in (shard1)", "shard": "shard1"}
    )
    main = settings.model_copy(update={"label_selector": f"!{SHARD_KEY}"})
    runner = RecordingRunner()

    def annotations() -> dict[str, str]:
        found = kube_emulator.get(WORKSPACES, "ws", namespace=namespace) or {}
        return dict(found.get("metadata", {}).get("annotations") or {})

    async def scenario() -> None:
        stop = asyncio.Event()  # two replicas in one event loop: they stop together
        async with (
            running(shard1, kubeconfig, namespace, runner.factory, stop=stop),
            running(main, kubeconfig, namespace, runner.factory, stop=stop) as other,
        ):
            kube_emulator.create(WORKSPACES, body, namespace)
            await until_status(kube_emulator, namespace, "ws", applied(staging.head))
            assert "ws" not in {name for _, name in other.state.workers}
            url = f"http://127.0.0.1:{other.bound['webhook']}/hook/{namespace}/ws"
            push = json.dumps({"ref": "refs/heads/main"}).encode()

            async def post(key: bytes) -> int:
                headers = {"X-Hub-Signature-256": github_signature(key, push)}
                return (await http("POST", url, data=push, headers=headers))[0]

            bumped = staging.pin("1.2.0")
            assert await post(b"wrong") == 404
            assert PUSHED_AT not in annotations()  # an unsigned push writes nothing
            assert await post(token) == 202
            # The interval is an hour: only the passed-on push makes shard1 look now.
            await until_status(kube_emulator, namespace, "ws", applied(bumped), timeout=30)
            assert PUSHED_AT in annotations()

    asyncio.run(scenario())
