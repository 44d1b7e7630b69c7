"""`cratekeeper reconcile` of a real-shaped Polycrate workspace: local and inline blocks, script
actions and a playbook, a from: chain, inventory.from and artifacts kept between runs, prompts,
workflows — real Git, real ansible-playbook and bash through the local runner.
"""

from __future__ import annotations

import io
import json
import tarfile
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

WORKSPACE = """\
name: polycrate-ws
organization: acme
extraenv:
  - "GREETING=hello"
blocks:
  - name: inventory
  - name: app
    from: base
    inventory:
      from: inventory
    config:
      message: from the workspace
  - name: hello
    config:
      who: world
    actions:
      - name: deploy
        script:
          - out=artifacts/blocks/hello && mkdir -p $out
          - echo "$GREETING {{ .block.config.who }} in {{ .workspace.name }}" > $out/out.txt
workflows:
  - name: release
    steps:
      - {name: greet, block: hello, action: deploy}
      - {name: inventory, block: inventory, action: deploy}
      - {name: app, block: app, action: deploy}
"""

INVENTORY_BLOCK = """\
name: inventory
actions:
  - name: deploy
    script:
      - mkdir -p "{{ .block.artifacts.path }}"
      - inv="{{ .block.artifacts.path }}/inventory.yml"
      - echo 'all:' > "$inv"
      - echo '  hosts:' >> "$inv"
      - echo '    node-1:' >> "$inv"
      - 'echo "      ansible_connection: local" >> "$inv"'
      - test "$(pwd)" = "$POLYCRATE_BLOCK_WORKDIR"
"""

BASE_BLOCK = """\
name: base
version: 0.1.0
config:
  message: from block.poly
  replicas: 1
actions:
  - name: deploy
    playbook: deploy.yml
"""

BASE_PLAYBOOK = """\
- hosts: all
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Write what the block was given
      ansible.builtin.copy:
        dest: "{{ block.artifacts.path }}/result.json"
        content: "{{ {'host': inventory_hostname, 'message': block.config.message,
                      'replicas': block.config.replicas, 'workspace': workspace.name,
                      'blocks': workspace.blocks | map(attribute='name') | list} | to_json }}"
"""


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "polycrate-ws")
    repo.write("workspace.poly", WORKSPACE)
    repo.write("blocks/inventory/block.poly", INVENTORY_BLOCK)
    repo.write("blocks/base/block.poly", BASE_BLOCK)
    repo.write("blocks/base/deploy.yml", BASE_PLAYBOOK)
    repo.write("artifacts/secrets/kubeconfig.yml", KUBECONFIG)
    repo.commit("a Polycrate workspace with local and inline blocks")
    return repo


def reconcile(repo: GitRepo, state: Path, *flags: str) -> tuple[int, dict[str, Any]]:
    code = main(["reconcile", str(repo.path), "--state", str(state), *flags])
    return code, json.loads(state.read_text()) if state.exists() else {}


def kept(state: Path) -> dict[str, str]:
    """The artifacts kept next to the state file, by path under artifacts/blocks/."""
    data = (state.parent / (state.stem + ".artifacts.tar.gz")).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {
            m.name: (tar.extractfile(m) or io.BytesIO()).read().decode()
            for m in tar.getmembers()
            if m.isfile()
        }


def test_local_inline_and_script_blocks_run_with_polycrates_contract(
    repo: GitRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state.json"
    code, status = reconcile(repo, state, "--workflow", "release")
    assert code == 0, capsys.readouterr()
    assert status["lastAppliedRevision"] == repo.head()
    files = kept(state)
    assert files["hello/out.txt"] == "hello world in polycrate-ws\n"
    assert "node-1" in files["inventory/inventory.yml"]
    result = json.loads(files["app/result.json"])
    assert result == {
        "host": "node-1",  # the inventory another block wrote, through inventory.from
        "message": "from the workspace",  # instance config over block.poly defaults
        "replicas": 1,
        "workspace": "polycrate-ws",
        "blocks": ["inventory", "app", "hello"],
    }
    blocks = {b["name"]: b for b in status["blocks"]}
    assert blocks["app"]["from"] == "app < base"
    assert blocks["app"]["version"] == "0.1.0"
    assert blocks["hello"]["version"] == "inline"


def test_only_the_block_whose_folder_changed_runs_again(
    repo: GitRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state.json"
    assert reconcile(repo, state, "--workflow", "release")[0] == 0
    repo.write("blocks/base/deploy.yml", BASE_PLAYBOOK.replace("Write what", "Record what"))
    repo.commit("base: rename a task")
    capsys.readouterr()
    code, status = reconcile(repo, state, "--workflow", "release")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "running app deploy" in out
    assert "running hello" not in out and "running inventory" not in out
    assert status["history"][0]["changes"][0]["reason"] == "content"


def test_a_prompted_action_is_refused_unattended_and_runs_when_allowed(
    repo: GitRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.write(
        "workspace.poly",
        WORKSPACE.replace(
            "      - name: deploy\n        script:",
            "      - name: deploy\n        prompt: {message: Really greet?}\n        script:",
        ),
    )
    repo.commit("hello asks first")
    state = tmp_path / "state.json"
    code, status = reconcile(repo, state)
    err = capsys.readouterr().err
    assert code == 1
    assert "has a prompt: it does not run unattended unless" in json.dumps(status)
    assert not (state.parent / (state.stem + ".artifacts.tar.gz")).exists()  # nothing ran
    assert "was not applied" in err
    code, _ = reconcile(repo, state, "--allow-prompted-actions")
    assert code == 0


def test_a_script_line_that_cannot_render_fails_before_anything_runs(
    repo: GitRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.write("workspace.poly", WORKSPACE.replace(".block.config.who", ".block.config.whom"))
    repo.commit("a typo in a template")
    state = tmp_path / "state.json"
    code, status = reconcile(repo, state)
    assert code == 1
    message = status["history"][0]["message"]
    assert "block 'hello' action 'deploy': script line 2" in message
    assert "'whom' is not in the snapshot" in message
    assert not (state.parent / (state.stem + ".artifacts.tar.gz")).exists()


def test_an_unknown_workflow_is_an_error_that_names_the_known_ones(
    repo: GitRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = reconcile(repo, tmp_path / "state.json", "--workflow", "nope")
    assert code == 1
    assert "no such workflow (its workflows: release)" in capsys.readouterr().err


def test_the_local_blocks_example_runs_its_workflow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    example = Path(__file__).resolve().parent.parent / "examples" / "acme-edge-1"
    repo = GitRepo(tmp_path / "acme-edge-1")
    shutil.copytree(example, repo.path, dirs_exist_ok=True)
    repo.commit("acme-edge-1")
    state = tmp_path / "state.json"
    code, status = reconcile(repo, state, "--workflow", "rollout", "-v")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "inventory of saarbruecken written for acme-edge-1" in out
    files = kept(state)
    assert files["motd-saarbruecken/edge-1.motd"] == "Welcome to Saarbruecken (acme-edge-1)\n"
    assert [b["name"] for b in status["blocks"]] == ["acme/edge-inventory", "motd-saarbruecken"]


def test_a_workflow_that_allows_failure_runs_every_step_but_applies_nothing(
    repo: GitRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = WORKSPACE.replace("  - name: release\n", "  - name: release\n    allow_failure: true\n")
    repo.write("workspace.poly", text.replace("- out=artifacts/blocks/hello", "- false"))
    repo.commit("hello fails, the workflow goes on")
    state = tmp_path / "state.json"
    code, status = reconcile(repo, state, "--workflow", "release")
    assert code == 1
    assert status.get("lastAppliedRevision") is None
    results = {c["block"]: c["result"] for c in status["history"][0]["changes"]}
    assert results == {"hello": "Failed", "inventory": "Succeeded", "app": "Succeeded"}
