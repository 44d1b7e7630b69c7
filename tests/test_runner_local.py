"""The local runner: real ansible-playbook with kubernetes.core against the emulated cluster."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import pytest

from controller.errors import RunError
from controller.runners.local import LocalRunner
from tests.support.actions import (
    EXAMPLES,
    HEADER,
    REF,
    a_block,
    check_contract,
    contract_request,
    contract_workspace,
    request,
    workspace_with_block,
)
from tests.support.kube_emulator import KubeEmulator

pytestmark = pytest.mark.skipif(
    shutil.which("ansible-playbook") is None
    and not (Path(sys.executable).parent / "ansible-playbook").exists(),
    reason="ansible-playbook is not installed (scripts/setup installs it)",
)


def test_the_example_deploy_creates_the_pinned_deployment(
    tmp_path: Path, kube_emulator: KubeEmulator, kubeconfig: Path
) -> None:
    root = workspace_with_block(tmp_path, EXAMPLES / "blocks" / "app-deploy")
    lines: list[str] = []
    result = asyncio.run(
        LocalRunner().run(request(root, kubeconfig, "acme-app-acme-staging-1"), lines.append)
    )
    assert result.status == "succeeded", "\n".join(result.log_tail)
    assert result.counts.failed == 0 and result.counts.changed >= 3
    deployment = kube_emulator.get(
        "apps/v1/deployments", "acme-app", namespace="acme-app-acme-staging-1"
    )
    assert deployment is not None
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/acme/myapp:1.2.0"
    assert kube_emulator.get("v1/services", "acme-app", namespace="acme-app-acme-staging-1")
    assert lines and any("Deployment" in line for line in lines)  # progress streamed

    again = asyncio.run(LocalRunner().run(request(root, kubeconfig, "acme-app-acme-staging-1")))
    assert (again.status, again.counts.changed) == ("succeeded", 0)


def test_the_action_sees_only_the_workspace_kubeconfig_and_the_extra_vars(
    tmp_path: Path, kubeconfig: Path
) -> None:
    block = a_block(
        tmp_path,
        HEADER
        + """\
    - ansible.builtin.assert:
        that:
          - lookup('env', 'KUBECONFIG') == lookup('env', 'K8S_AUTH_KUBECONFIG')
          - lookup('file', lookup('env', 'KUBECONFIG')) is search('kind. Config')
          - lookup('env', 'HOME') is not search('^/root')
          - block.name == 'app' and block.version == '1.2.0' and block.config.namespace == 'ns1'
          - workspace.name == 'acme-staging-1' and workspace.organization == 'acme'
          - lookup('env', 'POLYCRATE_ACTION') == 'deploy'
""",
    )
    root = workspace_with_block(tmp_path, block)
    result = asyncio.run(LocalRunner().run(request(root, kubeconfig, "ns1", playbook="play.yml")))
    assert result.status == "succeeded", "\n".join(result.log_tail)


def test_a_failing_playbook_is_a_failed_result_naming_the_task(
    tmp_path: Path, kubeconfig: Path
) -> None:
    block = a_block(
        tmp_path, HEADER + "    - name: Break on purpose\n      ansible.builtin.fail: {msg: boom}\n"
    )
    root = workspace_with_block(tmp_path, block)
    result = asyncio.run(LocalRunner().run(request(root, kubeconfig, "ns", playbook="play.yml")))
    assert result.status == "failed"
    assert result.failed_task == "Break on purpose"
    assert result.counts.failed == 1
    assert result.exit_code == 2
    assert any("boom" in line for line in result.log_tail)


def test_a_run_past_its_timeout_is_stopped_and_reported(tmp_path: Path, kubeconfig: Path) -> None:
    block = a_block(tmp_path, HEADER + "    - ansible.builtin.pause: {seconds: 120}\n")
    root = workspace_with_block(tmp_path, block)
    result = asyncio.run(
        LocalRunner().run(request(root, kubeconfig, "ns", playbook="play.yml", timeout=3.0))
    )
    assert result.status == "timedOut"
    assert "timeout" in result.log_tail[-1]


def test_kubeconfig_credentials_are_redacted_from_the_log(tmp_path: Path, kubeconfig: Path) -> None:
    block = a_block(
        tmp_path,
        HEADER + "    - ansible.builtin.debug:\n"
        "        msg: \"{{ lookup('file', lookup('env', 'KUBECONFIG')) }}\"\n",
    )
    root = workspace_with_block(tmp_path, block)
    secret = "s3cr3t-t0ken-value"
    config = kubeconfig.read_text().replace("token: ", f"token: {secret}-", 1)
    assert secret in config
    kc = tmp_path / "kc"
    kc.write_text(config)
    result = asyncio.run(LocalRunner().run(request(root, kc, "ns", playbook="play.yml")))
    assert result.status == "succeeded"
    text = "\n".join(result.log_tail)
    assert "kind: Config" in text or "Config" in text
    assert secret not in text


def test_an_output_line_longer_than_any_buffer_is_cut_not_fatal(
    tmp_path: Path, kubeconfig: Path
) -> None:
    block = a_block(
        tmp_path,
        HEADER + "    - ansible.builtin.debug: {msg: \"{{ 'x' * 200000 }}\"}\n",
    )
    root = workspace_with_block(tmp_path, block)
    result = asyncio.run(LocalRunner().run(request(root, kubeconfig, "ns", playbook="play.yml")))
    assert result.status == "succeeded"
    longest = max(result.log_tail, key=len)
    assert longest.endswith("(line cut by cratekeeper)")
    assert len(longest) < 20_000


def test_the_action_gets_polycrates_runtime_contract(
    tmp_path: Path, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRATEKEEPER_TEST_LEAK", "the controller's own environment")
    root = contract_workspace(tmp_path)
    result = asyncio.run(LocalRunner().run(contract_request(root, kubeconfig)))
    assert result.status == "succeeded", "\n".join(result.log_tail)
    seen = json.loads((root / "artifacts/blocks/app/seen.json").read_text())
    check_contract(seen, str(root))


def test_ansible_scratch_stays_in_the_runs_private_home(
    tmp_path: Path, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10 point 11: AnsiballZ files (module arguments) never land in ~/.ansible/tmp."""
    home = tmp_path / "user-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    block = a_block(tmp_path, HEADER + "    - ansible.builtin.command: 'true'\n")
    root = workspace_with_block(tmp_path, block)
    result = asyncio.run(LocalRunner().run(request(root, kubeconfig, "ns", playbook="play.yml")))
    assert result.status == "succeeded", "\n".join(result.log_tail)
    assert list(home.iterdir()) == []


def test_a_script_action_runs_its_lines_in_order_from_the_workdir(
    tmp_path: Path, kubeconfig: Path
) -> None:
    block = a_block(tmp_path, HEADER + "    - ansible.builtin.debug: {msg: '{{ block.name }}'}\n")
    root = workspace_with_block(tmp_path, block)
    out = "$POLYCRATE_WORKSPACE/artifacts/blocks/app/script.txt"
    lines = [
        f'echo "block=$POLYCRATE_BLOCK action=$POLYCRATE_ACTION cwd=$(pwd)" > "{out}"',
        # Polycrate's vars plugin gives a script's own ansible-playbook the snapshot too.
        "ansible-playbook play.yml",
        f'echo "done" >> "{out}"',
    ]
    result = asyncio.run(LocalRunner().run(request(root, kubeconfig, "ns", script=lines)))
    assert result.status == "succeeded", "\n".join(result.log_tail)
    written = (root / "artifacts/blocks/app/script.txt").read_text().splitlines()
    assert written == [f"block=app action=deploy cwd={root}/blocks/{REF.name}", "done"]
    assert any('"msg": "app"' in line for line in result.log_tail)  # block.name from the plugin
    assert result.counts.ok == 1


def test_a_failing_script_line_stops_the_script_and_fails_the_run(
    tmp_path: Path, kubeconfig: Path
) -> None:
    root = workspace_with_block(tmp_path, a_block(tmp_path, HEADER))
    lines = ["echo before", "false", "touch after"]
    result = asyncio.run(LocalRunner().run(request(root, kubeconfig, "ns", script=lines)))
    assert (result.status, result.exit_code) == ("failed", 1)
    assert not (root / "blocks" / REF.name / "after").exists()
    assert "before" in result.log_tail


def test_a_playbook_whose_plays_match_no_host_fails_and_says_so(
    tmp_path: Path, kubeconfig: Path
) -> None:
    """Issue 9 point 4: no inventory, ``hosts: all``: exit code 0, yet nothing ran."""
    block = a_block(tmp_path, "- hosts: all\n  tasks:\n    - ansible.builtin.ping: {}\n")
    root = workspace_with_block(tmp_path, block)
    result = asyncio.run(LocalRunner().run(request(root, kubeconfig, "ns", playbook="play.yml")))
    assert (result.status, result.exit_code) == ("failed", 0)
    assert result.failure_reason is not None and "matched no host" in result.failure_reason
    assert result.log_tail[-1] == f"cratekeeper: {result.failure_reason}"


def test_the_same_playbook_runs_once_the_inventory_has_the_host(
    tmp_path: Path, kubeconfig: Path
) -> None:
    block = a_block(
        tmp_path,
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.ping: {}\n",
    )
    root = workspace_with_block(tmp_path, block)
    (root / "hosts.yml").write_text(
        "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
        "      ansible_python_interpreter: '{{ ansible_playbook_python }}'\n"
    )
    req = request(root, kubeconfig, "ns", playbook="play.yml", inventory="hosts.yml")
    result = asyncio.run(LocalRunner().run(req))
    assert result.status == "succeeded", "\n".join(result.log_tail)
    assert result.failure_reason is None and result.counts.ok == 1


def test_extraenv_cannot_replace_the_workspace_kubeconfig(tmp_path: Path, kubeconfig: Path) -> None:
    root = workspace_with_block(tmp_path, a_block(tmp_path, HEADER))
    req = request(root, kubeconfig, "ns", playbook="play.yml", extraenv={"KUBECONFIG": "/x"})
    with pytest.raises(RunError, match="extraenv may not set KUBECONFIG"):
        asyncio.run(LocalRunner().run(req))


def test_group_vars_beside_the_inventory_still_load_next_to_the_snapshot_plugin(
    tmp_path: Path, kubeconfig: Path
) -> None:
    """Polycrate enables polycrate_vars alone (no group_vars); cratekeeper keeps both."""
    play = (
        "- hosts: web\n  connection: local\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.assert: {that: [colour == 'blue', block.name == 'app']}\n"
    )
    root = workspace_with_block(tmp_path, a_block(tmp_path, play))
    (root / "inventory.yml").write_text(
        "all:\n  children:\n    web:\n      hosts:\n        localhost:\n"
        "          ansible_python_interpreter: '{{ ansible_playbook_python }}'\n"
    )
    (root / "group_vars").mkdir()
    (root / "group_vars" / "web.yml").write_text("colour: blue\n")
    result = asyncio.run(LocalRunner().run(request(root, kubeconfig, "ns", playbook="play.yml")))
    assert result.status == "succeeded", "\n".join(result.log_tail)
