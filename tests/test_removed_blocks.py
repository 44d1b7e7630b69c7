"""`cratekeeper reconcile` when blocks leave the workspace: a removed local or inline block runs
its `uninstall` from the last applied commit (its files, config and secrets.poly config as they
were), once; one without `uninstall` is reported; a failing one is retried; when that commit is
gone from Git the status says the uninstall could not run. Real Git, bash, the local runner.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main
from tests.support.gitrepo import GitRepo

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:9"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
users: [{name: u, user: {token: not-a-real-token}}]
"""

MONITORING = """\
name: monitoring
config:
  who: block.poly
actions:
  - name: deploy
    script:
      - echo "deploy monitoring {{ .block.config.who }}" >> "{{ .block.config.marker }}"
  - name: uninstall
    script:
      - test "$(pwd)" = "$POLYCRATE_BLOCK_WORKDIR"
      - test "{{ .block.config.token }}" = "s3cr3t-token"
      - 'grep -q "name: cleanup" "$POLYCRATE_WORKSPACE_SNAPSHOT_YAML"'
      - test -f "{{ .block.config.allow }}"
      - what="uninstall monitoring {{ .block.config.who }} $(cat dashboards.txt)"
      - echo "$what" >> "{{ .block.config.marker }}"
"""

LOGGING = """\
name: logging
actions:
  - name: deploy
    script:
      - "true"
"""


def workspace(marker: Path, allow: Path, who: str) -> str:
    return f"""\
name: removals
organization: acme
blocks:
  - name: monitoring
    config:
      who: {who}
      marker: {marker}
      allow: {allow}
  - name: logging
  - name: cleanup
    config:
      marker: {marker}
    actions:
      - name: deploy
        script:
          - "true"
      - name: uninstall
        script:
          - echo "uninstall cleanup" >> "{{{{ .block.config.marker }}}}"
"""


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "removals")
    marker, allow = tmp_path / "marker.txt", tmp_path / "allow"
    allow.touch()
    repo.write("workspace.poly", workspace(marker, allow, "v1"))
    repo.write("blocks/monitoring/block.poly", MONITORING)
    repo.write("blocks/monitoring/dashboards.txt", "with its dashboards\n")
    repo.write("blocks/logging/block.poly", LOGGING)
    repo.write_yaml(
        "secrets.poly", {"blocks": [{"name": "monitoring", "config": {"token": "s3cr3t-token"}}]}
    )
    repo.write("artifacts/secrets/kubeconfig.yml", KUBECONFIG)
    repo.commit("monitoring, logging and cleanup")
    return repo


def reconcile(repo: GitRepo, state: Path) -> tuple[int, dict[str, Any]]:
    code = main(["reconcile", str(repo.path), "--state", str(state)])
    return code, json.loads(state.read_text()) if state.exists() else {}


def remove_all(repo: GitRepo) -> str:
    """Delete the three blocks: the folders, their entries, their secrets."""
    text = (repo.path / "workspace.poly").read_text()
    repo.write("workspace.poly", text.split("blocks:")[0] + "blocks: []\n")
    shutil.rmtree(repo.path / "blocks")
    (repo.path / "secrets.poly").unlink()
    return repo.commit("Remove monitoring, logging and cleanup")


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_removed_local_and_inline_blocks_run_their_uninstall_once_as_last_applied(
    repo: GitRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state, marker = tmp_path / "state.json", tmp_path / "marker.txt"
    assert reconcile(repo, state)[0] == 0, capsys.readouterr()
    repo.write("workspace.poly", workspace(marker, tmp_path / "allow", "v2"))
    repo.commit("monitoring v2")
    assert reconcile(repo, state)[0] == 0, capsys.readouterr()
    assert lines(marker) == ["deploy monitoring v1", "deploy monitoring v2"]
    capsys.readouterr()

    head = remove_all(repo)
    code, status = reconcile(repo, state)
    err = "".join(capsys.readouterr())
    assert code == 0, err
    assert lines(marker)[2:] == ["uninstall monitoring v2 with its dashboards", "uninstall cleanup"]
    assert "logging was removed; it has no uninstall action" in err
    assert "monitoring was removed: running its uninstall as applied at" in err
    assert "s3cr3t" not in err and "s3cr3t" not in state.read_text()
    assert status["blocks"] == [] and status["lastAppliedRevision"] == head

    assert reconcile(repo, state)[0] == 0
    assert len(lines(marker)) == 4  # applied: nothing runs again


def test_a_failing_uninstall_keeps_the_block_and_runs_again_on_the_retry(
    repo: GitRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state, marker = tmp_path / "state.json", tmp_path / "marker.txt"
    applied = repo.head()
    assert reconcile(repo, state)[0] == 0, capsys.readouterr()
    (tmp_path / "allow").unlink()
    remove_all(repo)
    code, status = reconcile(repo, state)
    assert code != 0
    assert status["lastAppliedRevision"] == applied
    assert [b["name"] for b in status["blocks"]] == ["monitoring"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "UninstallFailed")
    assert "monitoring uninstall failed" in status["history"][0]["message"]
    assert lines(marker)[1:] == ["uninstall cleanup"]  # the others' uninstalls ran

    (tmp_path / "allow").touch()
    code, status = reconcile(repo, state)
    assert code == 0, capsys.readouterr()
    assert status["blocks"] == [] and status["lastAppliedRevision"] == repo.head()
    assert lines(marker)[1:] == ["uninstall cleanup", "uninstall monitoring v1 with its dashboards"]


def test_an_uninstall_whose_commit_is_gone_from_git_is_reported_as_not_run(
    repo: GitRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state, marker = tmp_path / "state.json", tmp_path / "marker.txt"
    applied = repo.head()
    assert reconcile(repo, state)[0] == 0, capsys.readouterr()
    repo.git("checkout", "-q", "--orphan", "rewritten")
    head = remove_all(repo)
    repo.git("branch", "-D", "main")
    repo.git("reflog", "expire", "--expire=now", "--all")
    repo.git("gc", "-q", "--prune=now")
    with pytest.raises(subprocess.CalledProcessError):  # the commit is gone
        repo.git("cat-file", "-e", f"{applied}^{{commit}}")
    capsys.readouterr()

    code, status = reconcile(repo, state)
    err = "".join(capsys.readouterr())
    assert code == 0, err
    assert lines(marker) == ["deploy monitoring v1"]  # nothing could run
    gone = f"commit {applied[:12]}, which applied it, is no longer in the Git history"
    for name in ("monitoring", "logging", "cleanup"):
        assert f"{name} was removed, but its uninstall could not run: {gone}" in err
    assert "polycrate run monitoring uninstall" in err
    assert status["blocks"] == [] and status["lastAppliedRevision"] == head
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and "monitoring was removed, but" in ready["message"]
    assert "cleanup was removed, but" in status["history"][0]["message"]
