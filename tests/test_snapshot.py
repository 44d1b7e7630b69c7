"""The snapshot an action sees has the shape of Polycrate's (a real transaction log), and script
lines render against it the way Polycrate's Go templates do — or are refused before a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.workspace import read_workspace
from controller.workspace.snapshot import BlockView, SnapshotInput, build_snapshot
from controller.workspace.templates import TemplateError, render_line, template_problem
from tests.test_workspace import Files

CORPUS = Path(__file__).parent / "data" / "polycrate"
LOG = yaml.safe_load((CORPUS / "transaction-log-db103689.yml").read_text())["snapshot"]
CAMELCASE = (CORPUS / "polycrate-dotworkspace/blocks/camelcase/block.poly").read_text()


def camelcase_snapshot() -> dict[str, Any]:
    """The snapshot of `polycrate run camelcase install` in the log's workspace (its
    camelcase instance and block.poly, from the corpus)."""
    ws_text = (CORPUS / "polycrate-dotworkspace/workspace.poly").read_text()
    only = "name: poly-workspace\norganization: polycrate\nblocks:\n" + ws_text.split("\n\n")[-1]
    ws = read_workspace(Files({"workspace.poly": only, "blocks/camelcase/block.poly": CAMELCASE}))
    (block,) = ws.blocks
    view = BlockView(block, block.config, block.workdir, block.actions)
    data = SnapshotInput(
        name=ws.name,
        organization=ws.organization,
        config=ws.file.config,
        blocks=(view,),
        block="camelcase",
        action=block.actions[0],
        inventory=None,
    )
    return build_snapshot(
        data,
        root="/workspace",
        kubeconfig="/run/kubeconfig",
        snapshot_file="/run/snapshot.yml",
        with_env=True,
    )


def keys(value: object) -> set[str]:
    assert isinstance(value, dict)
    return set(value)


def test_the_snapshot_has_the_sections_polycrates_transaction_log_shows() -> None:
    ours = camelcase_snapshot()
    assert {"workspace", "action", "block", "env"} <= keys(ours)
    assert keys(LOG["workspace"]) - keys(ours["workspace"]) == {"events"}
    assert keys(LOG["workspace"]["config"]) == keys(ours["workspace"]["config"])
    assert ours["workspace"]["config"] == LOG["workspace"]["config"]  # Polycrate's defaults
    assert keys(LOG["block"]) - keys(ours["block"]) == {"checksum"}
    for part in ("workdir", "inventory", "kubeconfig", "artifacts"):
        assert keys(ours["block"][part]) == {"path", "localpath", "containerpath"}
    assert keys(LOG["action"]) == keys(ours["action"])


def test_the_snapshot_names_the_running_block_and_action_as_polycrate_does() -> None:
    ours = camelcase_snapshot()
    assert ours["action"] == LOG["action"]
    assert ours["block"]["actions"] == LOG["block"]["actions"]
    assert ours["block"]["workdir"]["path"] == LOG["block"]["workdir"]["path"]
    assert ours["block"]["artifacts"]["path"] == LOG["block"]["artifacts"]["path"]
    assert ours["block"]["version"] == LOG["block"]["version"]
    assert ours["workspace"]["path"] == "/workspace"
    assert ours["env"]["POLYCRATE_WORKSPACE"] == "/workspace"  # the path, not the name
    assert ours["env"]["POLYCRATE_BLOCK_WORKDIR"] == "/workspace/blocks/camelcase"
    labels = ours["block"]["labels"]
    assert labels["blocks.polycrate.io/name"] == "camelcase"
    assert labels["workspaces.polycrate.io/name"] == "poly-workspace"


def test_an_explicit_false_in_the_workspace_wins_unlike_mergo() -> None:
    config = camelcase_snapshot()["block"]["config"]
    assert LOG["block"]["config"]["fooBar"] is True  # Polycrate dropped the workspace's false
    assert config["fooBar"] is False
    assert config["camelCase"] == "willBeIgnored"
    assert config["string"] == ""


SNAPSHOT = {
    "workspace": {"name": "acme-production-1", "config": {"globals": {"domain": "acme.com"}}},
    "block": {"name": "app", "config": {"namespace": "acme-app", "ports": [80, 443], "on": True}},
    "action": {"name": "deploy"},
}


@pytest.mark.parametrize(
    ("line", "rendered"),
    [
        ("kubectl -n {{ .block.config.namespace }} get pods", "kubectl -n acme-app get pods"),
        ("echo {{ .Block.Name }} in {{ .Workspace.Name }}", "echo app in acme-production-1"),
        ("host app.{{ .Workspace.Config.Globals.domain }}", "host app.acme.com"),
        ("{{ .Block.Config.Namespace }}", None),
        ('{{ index .block.config "namespace" }}:{{ index .block.config.ports 1 }}', "acme-app:443"),
        ("a   {{- .action.name -}}   b", "adeployb"),
        ("flag={{ .block.config.on }}", "flag=true"),
        ("no templates here: $HOME", "no templates here: $HOME"),
    ],
)
def test_script_lines_render_like_go_templates(line: str, rendered: str | None) -> None:
    if rendered is None:  # a map key is looked up exactly, as in Go: 'Namespace' is not there
        with pytest.raises(TemplateError, match="'Namespace' is not in the snapshot"):
            render_line(line, SNAPSHOT)
        return
    assert render_line(line, SNAPSHOT) == rendered


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("{{ .block.config.missing }}", "'missing' is not in the snapshot"),
        ("{{ .block.config }}", "renders a dict"),
        ("{{ if .block.config.on }}x{{ end }}", "template syntax cratekeeper does not render"),
        ("{{ .block.name | upper }}", "template syntax cratekeeper does not render"),
        ("{{ .block.name", "an unclosed '{{'"),
    ],
)
def test_lines_that_cannot_be_rendered_are_refused_with_the_reason(line: str, why: str) -> None:
    with pytest.raises(TemplateError, match=why):
        render_line(line, SNAPSHOT)


def test_validate_finds_syntax_and_unknown_roots_without_a_snapshot() -> None:
    assert template_problem(["echo {{ .block.config.anything }}", "echo ok"]) is None
    assert template_problem(["ok", "{{ .Prompt.Input }}"]) == (
        2,
        "{{ .Prompt.Input }}: 'Prompt' is not in the snapshot at '.Prompt.Input'",
    )
