"""Check mode in the runners: real ansible-playbook + kubernetes.core against the emulator."""

from __future__ import annotations

import asyncio
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import kubernetes
import pytest

from controller.runners.events import parse_events
from controller.runners.local import LocalRunner
from tests.support.actions import EXAMPLES, request, workspace_with_block
from tests.support.kube_emulator import KubeEmulator

needs_ansible = pytest.mark.skipif(
    shutil.which("ansible-playbook") is None
    and not (Path(sys.executable).parent / "ansible-playbook").exists(),
    reason="ansible-playbook is not installed (scripts/setup installs it)",
)


def scale_by_hand(kubeconfig: Path, namespace: str, replicas: int) -> None:
    """What a person does with kubectl scale: the cluster leaves what Git says."""
    client = kubernetes.config.new_client_from_config(str(kubeconfig))
    with client:
        kubernetes.client.AppsV1Api(client).patch_namespaced_deployment(
            "acme-app", namespace, {"spec": {"replicas": replicas}}
        )


@needs_ansible
def test_check_mode_names_the_task_a_hand_change_drifted_and_changes_nothing(
    tmp_path: Path, kube_emulator: KubeEmulator, kubeconfig: Path
) -> None:
    namespace = "drift-check-mode-1"
    root = workspace_with_block(tmp_path, EXAMPLES / "blocks" / "app-deploy")
    applied = asyncio.run(LocalRunner().run(request(root, kubeconfig, namespace)))
    assert applied.succeeded, "\n".join(applied.log_tail)

    in_sync = asyncio.run(LocalRunner().run(request(root, kubeconfig, namespace, check=True)))
    assert (in_sync.status, in_sync.changed_tasks) == ("succeeded", ())

    scale_by_hand(kubeconfig, namespace, 5)
    lines: list[str] = []
    drifted = asyncio.run(
        LocalRunner().run(request(root, kubeconfig, namespace, check=True), lines.append)
    )
    assert drifted.succeeded, "\n".join(drifted.log_tail)
    assert drifted.changed_tasks == ("Deployment",)
    assert any("replicas" in line for line in lines)  # --diff shows what would change
    deployment = kube_emulator.get("apps/v1/deployments", "acme-app", namespace=namespace)
    assert deployment is not None and deployment["spec"]["replicas"] == 5  # nothing changed


def test_a_script_action_has_no_check_mode(tmp_path: Path, kubeconfig: Path) -> None:
    with pytest.raises(ValueError, match="no check mode"):
        request(tmp_path, kubeconfig, "ns", script=["echo hi"], check=True)


def test_check_mode_adds_check_and_diff_to_the_playbook_command(
    tmp_path: Path, kubeconfig: Path
) -> None:
    from controller.runners.base import RunPaths
    from controller.runners.contract import command

    paths = RunPaths(root="/w", kubeconfig="/k", snapshot="/s")
    plain = request(tmp_path, kubeconfig, "ns")
    assert command(replace(plain, check=True), paths, ansible_playbook="ap", script="x") == [
        "ap",
        "--check",
        "--diff",
        "-e",
        "@/s",
        "deploy.yml",
    ]
    assert "--check" not in command(plain, paths, ansible_playbook="ap", script="x")


def test_changed_tasks_are_named_once_in_order_from_the_events() -> None:
    text = "\n".join(
        [
            '{"event": "task", "status": "ok", "task": "Namespace", "host": "h", "changed": false}',
            '{"event": "task", "status": "ok", "task": "Deployment", "host": "a", "changed": true}',
            '{"event": "task", "status": "ok", "task": "Deployment", "host": "b", "changed": true}',
            '{"event": "task", "status": "ok", "task": "Service", "host": "a", "changed": true}',
        ]
    )
    assert parse_events(text).changed_tasks == ("Deployment", "Service")
