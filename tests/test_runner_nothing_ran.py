"""Issue 9 point 4 end to end: a playbook whose plays matched no host is not an applied revision.

Real Git, the real registry, real ansible-playbook through `cratekeeper reconcile`: the run
exits 0, yet the revision stays unapplied and the state says why.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from controller.cli import main
from tests.support.actions import push_playbook_block
from tests.support.gitrepo import GitRepo
from tests.support.oci_registry import Registry

HOSTS_ALL = "- hosts: all\n  tasks:\n    - ansible.builtin.ping: {}\n"


def test_a_playbook_that_matched_no_host_leaves_the_revision_unapplied_and_says_why(
    tmp_path: Path, oci_registry: Registry, kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pin = push_playbook_block(oci_registry.host, "hosts-all", HOSTS_ALL, tmp_path)
    repo = GitRepo(tmp_path / "ws")
    (repo.path / "artifacts/secrets").mkdir(parents=True)
    shutil.copy(kubeconfig, repo.path / "artifacts/secrets/kubeconfig.yml")
    (repo.path / "workspace.poly").write_text(
        f"name: acme-nohosts\norganization: acme\nblocks:\n  - {{name: web, from: '{pin}'}}\n"
    )
    commit = repo.commit("a block whose playbook targets hosts: all, with no inventory")
    state = tmp_path / "state.json"
    args = ["reconcile", str(repo.path), "--state", str(state)]
    code = main([*args, "--insecure-registry", oci_registry.host])
    assert code == 1
    saved = json.loads(state.read_text())
    assert saved.get("lastAppliedRevision") != commit
    assert saved.get("lastAttemptedRevision") == commit
    text = json.dumps(saved)
    assert "matched no host" in text
    assert "matched no host" in capsys.readouterr().err
