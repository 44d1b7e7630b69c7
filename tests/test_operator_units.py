"""The operator's pure parts: webhook signatures, status patches, backoff, Secret files, metrics."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.api.spec import WorkspaceSpec
from controller.api.status import WorkspaceStatus
from controller.operator.config import OperatorConfig
from controller.operator.metrics import OperatorMetrics
from controller.operator.secrets import SecretNotFoundError, secret_files
from controller.operator.webhook import verify
from controller.operator.worker import failed_status, merge_patch
from controller.secrets import AgeKeys

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

    async def read_secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        return self.data.get(f"{namespace}/{name}")


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
    metrics.forget("ns", "ws")
    assert "cratekeeper_last_successful_apply_timestamp_seconds{" not in (
        metrics.exposition().decode()
    )
