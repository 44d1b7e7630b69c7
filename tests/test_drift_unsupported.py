"""What check mode cannot judge is reported as such, never as drift: a script action (never run
in a check) and a task that fails in check mode; real ansible-playbook, local blocks in Git."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from controller.api.status import BlockStatus, WorkspaceStatus
from controller.drift import check_drift, drifted_condition
from controller.pipeline import PipelineContext
from controller.registry import RegistryClient, RegistryOptions
from controller.runners.local import LocalRunner
from controller.secrets import AgeKeys
from controller.source import local_revision
from tests.support.gitrepo import GitRepo
from tests.test_drift_check_mode import needs_ansible

WORKSPACE = """\
name: acme-staging-1
organization: acme
blocks:
  - name: tool
  - name: picky
"""
SCRIPT_BLOCK = """\
name: tool
version: 1.0.0
kind: generic
actions:
  - name: deploy
    script:
      - touch {marker}
"""
PICKY_BLOCK = """\
name: picky
version: 1.0.0
kind: generic
actions:
  - name: deploy
    playbook: deploy.yml
"""
PICKY_PLAY = """\
- hosts: localhost
  connection: local
  gather_facts: false
  vars: {ansible_python_interpreter: "{{ ansible_playbook_python }}"}
  tasks:
    - name: Needs a real run
      ansible.builtin.fail: {msg: cannot be checked}
      when: ansible_check_mode
"""


@needs_ansible
def test_a_script_and_a_check_mode_failure_are_reported_not_taken_for_drift(
    tmp_path: Path, kubeconfig: Path
) -> None:
    marker = tmp_path / "the-script-ran"
    repo = GitRepo(tmp_path / "ws")
    repo.write("workspace.poly", WORKSPACE)
    repo.write("blocks/tool/block.poly", SCRIPT_BLOCK.format(marker=marker))
    repo.write("blocks/picky/block.poly", PICKY_BLOCK)
    repo.write("blocks/picky/deploy.yml", PICKY_PLAY)
    (repo.path / "artifacts/secrets").mkdir(parents=True)
    shutil.copy(kubeconfig, repo.path / "artifacts/secrets/kubeconfig.yml")
    sha = repo.commit("two local blocks")
    revision = local_revision(repo.path, sha, "")
    status = WorkspaceStatus(
        last_applied_revision=sha,
        blocks=[
            BlockStatus(name=name, from_="local", version="1.0.0", config_hash="h")
            for name in ("tool", "picky")
        ],
    )
    ctx = PipelineContext(
        runner=LocalRunner(), registry=RegistryClient(RegistryOptions()), keys=AgeKeys()
    )

    report = asyncio.run(check_drift(revision, status, ctx))

    states = {b.block: (b.state, b.why) for b in report.blocks}
    assert states["tool"] == (
        "CheckModeUnsupported",
        "action 'deploy' is a script: scripts have no check mode",
    )
    assert states["picky"] == (
        "CheckModeUnsupported",
        "task 'Needs a real run' fails in check mode (failed)",
    )
    assert not marker.exists()  # a script is never run in a check
    state, reason, message = drifted_condition(report)
    assert (state, reason) == ("Unknown", "CheckModeUnsupported")
    assert "block tool" in message and "block picky" in message
