"""The operator's parts on their own: webhook signatures, status patches, backoff, Secret files,
metrics, and the worker's loop on a real repository and pipeline, with the recording runner
and an API double (the Kubernetes API is the boundary; nothing of ours is replaced)."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import stat
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from controller.api.spec import WorkspaceSpec
from controller.api.status import WorkspaceStatus
from controller.errors import (
    KubeError,
    SecretInvalidError,
    SecretNotFoundError,
)
from controller.kube import Kube, Secret, Workspace, load_cluster
from controller.kube.values import workspace_from_json
from controller.operator.config import OperatorConfig
from controller.operator.metrics import OperatorMetrics
from controller.operator.secrets import secret_files
from controller.operator.shared import Shared
from controller.operator.state import WEBHOOK_SECRET_ANNOTATION, OperatorState
from controller.operator.stored import failed_status, merge_patch
from controller.operator.webhook import verify, webhook_app
from controller.operator.worker import WorkspaceWorker
from controller.secrets import AgeKeys
from controller.settings import Settings
from tests.support.gitrepo import GitRepo
from tests.support.operator import app_block
from tests.support.recording_runner import Outcome, RecordingRunner

__all__ = ["app_block"]  # a fixture of tests/support/operator.py

SECRET = b"s3cret"
BODY = b'{"ref": "refs/heads/main"}'


def hexmac(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def test_github_gitea_and_gitlab_signatures_are_verified() -> None:
    assert verify({"X-Hub-Signature-256": "sha256=" + hexmac(SECRET, BODY)}, BODY, SECRET)
    assert verify({"X-Gitea-Signature": hexmac(SECRET, BODY)}, BODY, SECRET)
    assert verify({"X-Gitlab-Token": "s3cret"}, BODY, SECRET)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Hub-Signature-256": "sha256=" + hexmac(b"other", BODY)},
        {"X-Hub-Signature-256": "sha1=" + hexmac(SECRET, BODY)},
        {"X-Hub-Signature-256": hexmac(SECRET, BODY)},
        {"X-Gitea-Signature": hexmac(SECRET, BODY + b" ")},
        {"X-Gitlab-Token": "s3cret "},
        {"X-Gitlab-Token": ""},
    ],
)
def test_anything_else_is_refused(headers: dict[str, str]) -> None:
    assert not verify(headers, BODY, SECRET)


def test_an_empty_secret_never_verifies() -> None:
    assert not verify({"X-Gitlab-Token": ""}, BODY, b"")


def test_the_status_patch_is_empty_when_nothing_changed_and_removes_foreign_keys() -> None:
    old = {"lastAppliedRevision": "a" * 40, "blocks": [{"name": "app"}], "kopf": {"x": 1}}
    assert merge_patch(old, {"lastAppliedRevision": "a" * 40, "blocks": [{"name": "app"}]}) == {
        "kopf": None
    }
    assert merge_patch({"history": []}, {"history": []}) == {}
    assert merge_patch({}, {"history": [1]}) == {"history": [1]}


def test_a_failure_before_any_revision_keeps_the_applied_state() -> None:
    status = WorkspaceStatus.model_validate(
        {"lastAppliedRevision": "a" * 40, "lastFetchedRevision": "a" * 40, "history": []}
    )
    new = failed_status(status, "GitUnreachable", "cannot reach git", 3, stalled=False)
    assert new.last_applied_revision == new.last_fetched_revision == "a" * 40
    ready = new.condition("Ready")
    assert ready is not None and (ready.status, ready.reason) == ("False", "GitUnreachable")
    assert new.observed_generation == 3
    again = failed_status(new, "GitUnreachable", "cannot reach git", 3, stalled=False)
    assert merge_patch(new.dump(), again.dump()) == {}  # a repeated failure writes nothing


def test_backoff_doubles_and_is_capped() -> None:
    config = OperatorConfig(retry_base=10, retry_max=60)
    assert [config.backoff(n) for n in range(1, 6)] == [10, 20, 40, 60, 60]


class Secrets:
    def __init__(self, data: dict[str, dict[str, bytes]]) -> None:
        self.data = data

    async def get_secret(self, namespace: str, name: str) -> Secret | None:
        found = self.data.get(f"{namespace}/{name}")
        return None if found is None else Secret(name, namespace, "uid", {}, (), found)


def spec(**refs: str) -> WorkspaceSpec:
    return WorkspaceSpec.model_validate(
        {
            "source": {"url": "https://git.example/ws.git", "secretRef": {"name": refs["git"]}},
            "registry": {"secretRef": {"name": refs["registry"]}},
            "decryption": {"secretRef": {"name": refs["age"]}},
        }
    )


def test_secrets_become_private_files_for_the_run_only() -> None:
    reader = Secrets(
        {
            "ns/git": {"username": b"bot", "password": b"t0ken", "../evil": b"x"},
            "ns/reg": {".dockerconfigjson": b'{"auths": {}}'},
            "ns/age": {"identity.agekey": b"AGE-SECRET-KEY-1EXAMPLE\n", "passphrase": b"pw\n"},
        }
    )
    seen: list[Path] = []

    async def scenario() -> None:
        ws = spec(git="git", registry="reg", age="age")
        async with secret_files(reader, "ns", ws, AgeKeys(("AGE-SECRET-KEY-1BASE",))) as files:
            assert files.git_auth is not None and files.docker_config is not None
            assert files.git_auth.password_file is not None
            seen.extend([files.git_auth.password_file, files.docker_config])
            for path in seen:
                assert stat.S_IMODE(path.stat().st_mode) == 0o600
                assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700
            assert files.git_auth.password_file.read_bytes() == b"t0ken"
            assert files.keys.identities == ("AGE-SECRET-KEY-1BASE", "AGE-SECRET-KEY-1EXAMPLE")
            assert files.keys.passphrase == "pw"
            assert not list(seen[0].parent.parent.rglob("evil"))
            assert "t0ken" not in repr(files)

    asyncio.run(scenario())
    assert seen and not any(p.exists() for p in seen)  # removed after the run
    assert not seen[0].parent.parent.exists()


def test_a_missing_secret_names_the_field_not_the_contents() -> None:
    async def scenario() -> None:
        ws = spec(git="git", registry="nope", age="age")
        reader = Secrets({"ns/git": {"password": b"t0ken"}})
        async with secret_files(reader, "ns", ws, AgeKeys()):
            pass  # pragma: no cover

    with pytest.raises(SecretNotFoundError) as caught:
        asyncio.run(scenario())
    assert "ns/nope" in str(caught.value) and "spec.registry.secretRef" in str(caught.value)
    assert "t0ken" not in str(caught.value)
    assert caught.value.reason == "SecretNotFound"


def test_metrics_are_exposed_from_their_own_registry() -> None:
    metrics = OperatorMetrics()
    metrics.runs.labels("ns", "ws", "Succeeded").inc()
    metrics.reconcile_duration.labels("ns", "ws").observe(1.5)
    metrics.last_applied.labels("ns", "ws").set(datetime.now(UTC).timestamp())
    metrics.fetch_errors.labels("ns", "ws", "GitUnreachable").inc()
    metrics.pull_errors.labels("ns", "ws", "RegistryUnreachable").inc()
    text = metrics.exposition().decode()
    assert 'cratekeeper_runs_total{name="ws",namespace="ns",result="Succeeded"} 1.0' in text
    assert "cratekeeper_reconcile_duration_seconds_bucket" in text
    assert (
        'cratekeeper_fetch_errors_total{name="ws",namespace="ns",reason="GitUnreachable"}' in text
    )
    assert "cratekeeper_pull_errors_total" in text
    assert "cratekeeper_last_successful_apply_timestamp_seconds" in text
    assert "python_gc" not in text  # not the global registry
    metrics.runs.labels("ns", "other", "Failed").inc()
    metrics.forget("ns", "ws")
    text = metrics.exposition().decode()
    assert 'name="ws"' not in text  # every series of the deleted Workspace is gone
    assert 'cratekeeper_runs_total{name="other",namespace="ns",result="Failed"} 1.0' in text


def test_a_passphrase_that_is_not_utf8_names_the_secret_not_the_value() -> None:
    async def scenario() -> None:
        ws = WorkspaceSpec.model_validate(
            {
                "source": {"url": "https://git.example/ws.git"},
                "decryption": {"secretRef": {"name": "age"}},
            }
        )
        reader = Secrets({"ns/age": {"passphrase": b"\xffs3cr3t\xfe"}})
        async with secret_files(reader, "ns", ws, AgeKeys()):
            pass  # pragma: no cover

    with pytest.raises(SecretInvalidError) as caught:
        asyncio.run(scenario())
    message = str(caught.value)
    assert "ns/age" in message and "passphrase" in message and "s3cr3t" not in message
    assert caught.value.reason == "SecretInvalid"


# --- the worker's loop, with the fetch and the pipeline replaced -----------------------------


class FakeApi:
    """The status subresource as the API server keeps it; chosen patch calls fail (HTTP 500)."""

    def __init__(self, fail: set[int] | None = None) -> None:
        self.status: dict[str, Any] = {}
        self.version = 10
        self.calls = 0
        self.fail = fail or set()

    async def get_secret(self, namespace: str, name: str) -> Secret | None:
        return None

    async def patch_workspace_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> Workspace | None:
        self.calls += 1
        if self.calls in self.fail:
            raise KubeError(f"the status of Workspace {namespace}/{name}: HTTP 500", status=500)
        for key, value in status.items():
            if value is None:
                self.status.pop(key, None)
            else:
                self.status[key] = copy.deepcopy(value)
        self.version += 1
        meta = {"name": name, "namespace": namespace, "resourceVersion": str(self.version)}
        return workspace_from_json({"metadata": meta, "status": copy.deepcopy(self.status)})


KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
"""


class Loop:
    """A worker on a real Git repository, registry and pipeline; its runs are the recording
    double's, its API the :class:`FakeApi`. Nothing of ours is replaced."""

    def __init__(
        self, tmp_path: Path, api: FakeApi, block: str, *, cache_dir: Path | None = None
    ) -> None:
        self.api = api
        self.block = block
        self.repo = GitRepo(tmp_path / "ws")
        self.repo.write("artifacts/secrets/kubeconfig.yml", KUBECONFIG)
        self.head = self.commit("1")
        self.runner = RecordingRunner()
        self.events: list[tuple[str, str, str]] = []
        self.logs: list[str] = []
        self.body: dict[str, Any] = {
            "metadata": {"generation": 1, "resourceVersion": "1", "annotations": {}},
            "spec": {"source": {"url": f"file://{self.repo.path}", "interval": "1h"}},
        }
        self.shared = Shared(
            settings=Settings(
                cache_dir=cache_dir or tmp_path / "cache",
                insecure_registries=[block.split("/", 1)[0]],
                allow_local_sources=True,
                work_dir=tmp_path / "work",
            ),
            config=OperatorConfig(retry_base=100, retry_max=1000),
            api=api,
            metrics=OperatorMetrics(),
            runner_factory=self.runner.factory,
        )
        self.worker = WorkspaceWorker(
            "ns",
            "ws",
            self.shared,
            lambda: copy.deepcopy(self.body),
            lambda *event: self.events.append(event),
            self.logs.append,
        )

    def commit(self, label: str) -> str:
        """A commit whose one block has a new config (so it runs again)."""
        self.repo.write(
            "workspace.poly",
            f"name: ws\nblocks:\n  - name: app\n    from: {self.block}:1.1.0\n"
            f"    config: {{namespace: ns, label: '{label}'}}\n",
        )
        self.head = self.repo.commit(f"label {label}")
        return self.head

    @property
    def runs(self) -> int:
        return len(self.runner.runs)


def test_a_result_the_api_refused_is_stored_before_anything_runs_again(
    tmp_path: Path, app_block: str
) -> None:
    loop = Loop(tmp_path, FakeApi(fail={2}), app_block)  # 1: run started, 2: the result

    async def scenario() -> None:
        with pytest.raises(KubeError):
            await loop.worker.tick()
        assert loop.runs == 1 and "lastAppliedRevision" not in loop.api.status
        await loop.worker.tick()  # writes the pending result first: the revision is applied
        await loop.worker.tick()

    asyncio.run(scenario())
    assert loop.runs == 1  # never a second run of a revision recorded as applied
    assert loop.api.status["lastAppliedRevision"] == loop.head
    assert [reason for _, reason, _ in loop.events].count("RunSucceeded") == 1


def test_a_failed_run_started_write_does_not_fail_the_run(tmp_path: Path, app_block: str) -> None:
    loop = Loop(tmp_path, FakeApi(fail={1}), app_block)
    asyncio.run(loop.worker.tick())
    assert loop.runs == 1 and loop.api.status["lastAppliedRevision"] == loop.head
    assert any("started" in line and "HTTP 500" in line for line in loop.logs)


def test_a_push_does_not_cut_a_failing_revisions_backoff_short_a_new_commit_does(
    tmp_path: Path, app_block: str
) -> None:
    loop = Loop(tmp_path, FakeApi(), app_block)
    loop.runner.script(Outcome("failed", failed_task="x"))
    state = OperatorState(loop.shared, offline_kube(tmp_path))
    state.workers["ns", "ws"] = loop.worker

    async def scenario() -> None:
        await loop.worker.tick()
        assert loop.runs == 1
        assert state.trigger("ns", "ws")  # a push (to any branch): no retry before the backoff
        await loop.worker.tick()
        assert loop.runs == 1
        loop.worker.wake(force=True)  # the requested-at annotation: a person asked
        await loop.worker.tick()
        assert loop.runs == 2
        loop.commit("2")  # a new commit supersedes the pending retry at once
        assert state.trigger("ns", "ws")
        await loop.worker.tick()
        assert loop.runs == 3

    asyncio.run(scenario())


def test_a_status_edited_by_a_person_is_adopted_a_stale_watch_is_not(
    tmp_path: Path, app_block: str
) -> None:
    loop = Loop(tmp_path, FakeApi(), app_block)

    async def scenario() -> None:
        await loop.worker.tick()
        assert loop.runs == 1
        calls = loop.api.calls
        await loop.worker.tick()  # the watch has not brought our write back yet: no-op
        assert (loop.runs, loop.api.calls) == (1, calls)
        # kubectl edit --subresource=status: a newer body without the applied revision
        loop.body["status"] = {}
        loop.body["metadata"]["resourceVersion"] = str(loop.api.version + 5)
        await loop.worker.tick()
        assert loop.runs == 2

    asyncio.run(scenario())


def test_an_unexpected_error_is_reported_without_its_message_and_the_loop_lives_on(
    tmp_path: Path, app_block: str
) -> None:
    # The cache directory cannot be made (a file is in the way): a real OSError from the
    # fetch, whose message names a path that looks like a secret.
    blocker = tmp_path / "token=s3cr3t"
    blocker.write_text("")
    loop = Loop(tmp_path, FakeApi(), app_block, cache_dir=blocker / "cache")

    async def scenario() -> None:
        task = asyncio.create_task(loop.worker.run())
        while loop.worker.ticks < 1:
            assert not task.done(), "the loop died"
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert loop.worker.ticks == 1  # backing off (retry_base 100 s), not a hot loop
        loop.worker.stop()
        await asyncio.wait_for(task, timeout=5)

    asyncio.run(scenario())
    ready = next(c for c in loop.api.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InternalError")
    everything = repr(loop.api.status) + repr(loop.events) + repr(loop.logs)
    assert "s3cr3t" not in everything and "Not a directory" not in everything
    assert any("NotADirectoryError" in line for line in loop.logs)


def offline_kube(tmp_path: Path) -> Kube:
    """An adapter for a cluster that is never called."""
    config = tmp_path / "offline.kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'http://kube.invalid'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    return Kube(load_cluster(config))


class TokenApi(Kube):
    """An adapter whose Secret reads are counted (and can fail as the API does)."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(offline_kube(tmp_path).cluster)
        self.reads = 0
        self.down = False

    async def get_secret(self, namespace: str, name: str) -> Secret | None:
        self.reads += 1
        if self.down:
            raise KubeError("cannot reach the Kubernetes API at http://kube.invalid")
        return Secret(name, namespace, "uid", {}, (), {"token": b"t0ken"})


def test_the_webhook_answers_a_bare_404_when_the_api_fails_and_caches_tokens(
    tmp_path: Path, app_block: str
) -> None:
    loop = Loop(tmp_path, FakeApi(), app_block)
    loop.body["metadata"]["annotations"][WEBHOOK_SECRET_ANNOTATION] = "hook"
    api = TokenApi(tmp_path)
    state = OperatorState(loop.shared, api)
    state.logged_in = True
    state.workers["ns", "ws"] = loop.worker

    async def scenario() -> list[int]:
        codes = []
        async with TestClient(TestServer(webhook_app(state.webhook_secret, state.trigger))) as c:
            for token, down in (
                ("t0ken", True),
                ("wrong", False),
                ("wrong", False),
                ("t0ken", True),
            ):
                api.down = down
                response = await c.post(
                    "/hook/ns/ws", data=b"{}", headers={"X-Gitlab-Token": token}
                )
                assert await response.text() == ""
                codes.append(response.status)
        return codes

    # API down: 404 (not 500); then one GET serves the next requests (cached, even when down)
    assert asyncio.run(scenario()) == [404, 404, 404, 202]
    assert api.reads == 2
