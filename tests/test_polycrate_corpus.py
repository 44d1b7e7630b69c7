"""Real Polycrate files (tests/data/polycrate, sources in SOURCES.md): the verdict on each.

A set is accepted, or rejected with the message a Polycrate user needs to fix it. The public
sets carry no kubeconfig (it is a secret); the kubeconfig rule is checked by the CLI test at
the end, on a copy with one added.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from controller.cli import main
from controller.tree import DirectoryTree
from controller.validate import validate_tree

CORPUS = Path(__file__).parent / "data" / "polycrate"
KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n"

ACCEPTED = [
    "ayedo-blog-polyhub",
    "docs-getting-started-hello",
    "docs-getting-started-python",
    "docs-reference-events",
    "docs-reference-workflows",
    "vscode-test-workspace",
]
REJECTED: dict[str, list[str]] = {
    "ayedo-docs-actions": ["block.poly:2: document: required key 'name' is missing"],
    "ayedo-docs-konfiguration": ["workspace.poly:2: document: required key 'name' is missing"],
    "ayedo-docs-recipes": [
        "workspace.poly:8: blocks[0] ('ayedo/k8s/cluster'): has no from:",
        "(e.g. cargo.ayedo.cloud/ayedo/k8s/cluster:VERSION)",
        "workspace.poly:10: blocks[1] ('ayedo/k8s/monitoring'): has no from:",
    ],
    "docs-reference-custom-block": [
        "blocks/custom-block/block.poly:6: actions: actions is a mapping (the format of "
        "Polycrate before 0.8); write a list",
    ],
    "docs-reference-dependencies": [
        "workspace.poly:4: blocks[0].from: 'ayedo/k8s/harbor' names no block of this workspace",
        "must be pinned as REGISTRY/PATH:VERSION, e.g. cargo.ayedo.cloud/ayedo/k8s/harbor:VERSION",
    ],
    "docs-reference-traefik": [
        "workspace.poly:5: blocks[0].inventory.from: 'inventory-block' is not a block of this "
        "workspace (traefik)",
    ],
    "polycrate-dotworkspace": [
        "blocks/default-true/block.poly: block name 'default-false' is also used by "
        "blocks/default-false/block.poly",
        "workspace.poly:11: blocks[1].from: 'default-true' names no block",
        "blocks/default-true/block.poly names itself 'default-false'",
    ],
    "vscode-examples-block": [
        "block.poly:161: from: 'registry.polycrate.com/blocks/k8s-base:latest' uses ':latest'",
        "block.poly:167: inventory.path: refused",
        "block.poly:171: kubeconfig.from: refused: one workspace = one cluster",
        "action 'restore': script line 1: {{ .Prompt.Input }}: 'Prompt' is not in the snapshot",
    ],
    "vscode-examples-workspace": [
        "workspace.poly:102: workflows[0].steps[2] ('verify-deployment'): required key 'block'",
        "workspace.poly:104: workflows[0].steps[2].script: refused: a workflow step runs an "
        "action of a block",
    ],
    "vscode-test-errors": [
        "workspace.poly:6: blocks[0] ('block1'): has no from:",
        "workspace.poly:16: blocks[2].from: 'registry.example.com/blocks/base' has no tag",
        "workspace.poly:21: blocks[3].from: 'registry.example.com/blocks/base:latest' uses "
        "':latest', which is not a pin",
    ],
    "vscode-test-from": [
        "workspace.poly:8: blocks[0].from: 'otherblock/otherblock' names no block",
        "e.g. cargo.ayedo.cloud/otherblock/otherblock:VERSION",
    ],
}


def verdict(name: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) of a corpus set, without the kubeconfig rule (no set has one)."""
    problems = validate_tree(DirectoryTree(CORPUS / name))
    kube = [p for p in problems if p.file == "artifacts/secrets"]
    if (CORPUS / name / "workspace.poly").is_file():
        assert [p.message[:14] for p in kube] == ["no kubeconfig:"]
    rest = [p for p in problems if p.file != "artifacts/secrets"]
    return (
        [str(p) for p in rest if p.severity == "error"],
        [str(p) for p in rest if p.severity == "warning"],
    )


def test_every_corpus_set_has_a_verdict_and_a_source() -> None:
    sets = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())
    assert sets == sorted([*ACCEPTED, *REJECTED])
    assert len(sets) >= 15
    sources = (CORPUS / "SOURCES.md").read_text()
    for name in sets:
        assert f"`{name}/" in sources, f"{name} has no entry in SOURCES.md"


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted_sets_validate(name: str) -> None:
    errors, _ = verdict(name)
    assert errors == []


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_rejected_sets_say_what_to_fix(name: str) -> None:
    errors, _ = verdict(name)
    text = "\n".join(errors)
    for expected in REJECTED[name]:
        assert expected in text


def test_harmless_polycrate_metadata_is_a_warning_never_an_error() -> None:
    errors, warnings = verdict("vscode-test-workspace")
    assert errors == []
    assert any("display_name: ignored" in w for w in warnings)


def test_cratekeeper_validate_accepts_the_polycrate_getting_started_workspace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(CORPUS / "docs-getting-started-python", ws)
    (ws / "artifacts" / "secrets").mkdir(parents=True)
    (ws / "artifacts" / "secrets" / "kubeconfig.yml").write_text(KUBECONFIG)
    assert main(["validate", str(ws)]) == 0
    assert "valid" in capsys.readouterr().out


def test_cratekeeper_validate_prints_each_problem_of_a_rejected_set(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["validate", str(CORPUS / "vscode-test-from")]) == 1
    out = capsys.readouterr().out
    assert out.count("names no block of this workspace") == 3
