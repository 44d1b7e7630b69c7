"""Kopf's own bookkeeping keeps credentials out (issue 10 point 13): a password in
``spec.source.url`` is refused by the spec's rules, but Kopf sees the object first; its
diff-base annotation and its DEBUG log must not copy the spec."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

import pytest

from controller.settings import Settings
from tests.support.kube_emulator import WORKSPACES, KubeEmulator
from tests.support.operator import failed_with, patched, running, until_status, workspace
from tests.support.recording_runner import RecordingRunner

PASSWORD = "s3cr3t-in-url"
TOKEN = "ghp-token-as-user"


def annotations_of(emulator: KubeEmulator, namespace: str, name: str) -> dict[str, str]:
    body = emulator.get(WORKSPACES, name, namespace=namespace) or {}
    return dict(body.get("metadata", {}).get("annotations") or {})


def diffbase(emulator: KubeEmulator, namespace: str, name: str) -> str:
    """Kopf's diff base of the Workspace (empty until Kopf stored one)."""
    return annotations_of(emulator, namespace, name).get(
        "cratekeeper.dev/last-handled-configuration", ""
    )


def test_spec_urls_with_credentials_stay_out_of_kopfs_annotations_and_debug_log(
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    namespace = f"kopf-{uuid.uuid4().hex[:8]}"
    kube_emulator.create("v1/namespaces", {"metadata": {"name": namespace}})
    settings = Settings(cache_dir=tmp_path / "cache")
    caplog.set_level(logging.DEBUG)
    refused = workspace("refused", f"https://bot:{PASSWORD}@git.invalid/acme/ws.git")
    # A token as the user name passes the spec's rule; the fetch then fails (no such host).
    token = workspace("token", f"https://{TOKEN}@git.invalid/acme/ws.git", interval="1h")

    async def scenario() -> None:
        async with running(settings, kubeconfig, namespace, RecordingRunner().factory):
            kube_emulator.create(WORKSPACES, refused, namespace)
            kube_emulator.create(WORKSPACES, token, namespace)
            await until_status(
                kube_emulator, namespace, "refused", failed_with("InvalidSpec"), timeout=20
            )
            await until_status(
                kube_emulator,
                namespace,
                "token",
                lambda s: bool(s.get("conditions")),
                timeout=30,
            )
            before = diffbase(kube_emulator, namespace, "token")
            spec_change = {"spec": {"source": {"interval": "2h"}}}  # an update, with a diff
            assert await patched(kubeconfig, namespace, "token", spec_change)
            await kube_emulator.until(
                lambda: diffbase(kube_emulator, namespace, "token") != before, timeout=20
            )  # Kopf handled the update

    asyncio.run(scenario())
    for name in ("refused", "token"):
        annotations = annotations_of(kube_emulator, namespace, name)
        assert diffbase(kube_emulator, namespace, name).startswith('{"sha256":'), annotations
        assert PASSWORD not in repr(annotations) and TOKEN not in repr(annotations)
    kopf_lines = [r.getMessage() for r in caplog.records if r.name.startswith("kopf")]
    assert any("is in progress" in line for line in kopf_lines)  # Kopf did log at DEBUG
    leaked = [line for line in kopf_lines if PASSWORD in line or TOKEN in line]
    assert leaked == []
