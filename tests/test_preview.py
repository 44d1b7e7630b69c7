"""``plan --preview``: the changed blocks in check mode against the workspace's cluster, with
their CHANGELOG.poly entries; real Git, the real registry, real ansible-playbook + kubernetes.core
against the emulated cluster."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from controller.changelog import between, parse_changelog
from controller.cli import main
from controller.refs import BlockRef
from controller.registry import RegistryClient, RegistryOptions, push_block
from tests.support.actions import EXAMPLES, SEED_NAME
from tests.support.gitrepo import GitRepo
from tests.support.kube_emulator import KubeEmulator
from tests.support.oci_registry import Registry
from tests.support.operator import Staging
from tests.test_drift_check_mode import needs_ansible

CHANGELOG = """\
- version: 1.2.0
  date: 2026-11-30
  type: feature
  message: Port 8080 is named
  changes:
    - the Service keeps its port
- version: 1.1.0
  date: 2026-11-01
  message: First release on kubernetes.core
- version: 1.0.0
  message: Before anything
"""


@pytest.fixture(scope="module")
def noted_block(oci_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """app-deploy 1.1.0 and 1.2.0 shipping a CHANGELOG.poly."""
    name = f"{oci_registry.host}/acme/apps/app-deploy-preview"
    client = RegistryClient(RegistryOptions(insecure_registries=(oci_registry.host,)))
    for version in ("1.1.0", "1.2.0"):
        block = tmp_path_factory.mktemp("preview") / version
        shutil.copytree(EXAMPLES / "blocks" / "app-deploy", block)
        poly = block / "block.poly"
        poly.write_text(
            poly.read_text()
            .replace(SEED_NAME, name)
            .replace("version: 1.2.0", f"version: {version}")
        )
        (block / "CHANGELOG.poly").write_text(CHANGELOG)
        push_block(block, BlockRef.parse(f"{name}:{version}"), client=client)
    return name


@needs_ansible
def test_a_preview_prints_each_changed_blocks_check_mode_diff_and_changelog(
    capsys: pytest.CaptureFixture[str],
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    oci_registry: Registry,
    noted_block: str,
    tmp_path: Path,
) -> None:
    target = f"preview-{tmp_path.name[-8:].lower().strip('_-')}"
    staging = Staging(GitRepo(tmp_path / "staging"), noted_block, target, kubeconfig)
    base = staging.head
    state = tmp_path / "state.json"
    repo = str(staging.repo.path)
    insecure = ["--insecure-registry", oci_registry.host]
    assert main(["reconcile", repo, "--ref", base, "--state", str(state), *insecure]) == 0
    capsys.readouterr()
    staging.pin("1.2.0")
    argv = ["plan", repo, "--base", base, "--preview", "--exit-code", *insecure]

    code = main([*argv, "--output", "json"])
    out = capsys.readouterr().out
    assert code == 2, out
    (preview,) = json.loads(out)["preview"]
    assert (preview["block"], preview["state"]) == ("app", "Drifted")
    assert preview["tasks"] == ["Deployment", "Service"]  # the version label moves too
    assert [e["version"] for e in preview["changelog"]] == ["1.2.0"]
    assert any("ghcr.io/acme/myapp:1.2.0" in line for line in preview["diff"]), "\n".join(
        preview["diff"]
    )
    # Check mode applies nothing.
    deployment = kube_emulator.get("apps/v1/deployments", "acme-app", namespace=target)
    assert deployment is not None
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/acme/myapp:1.1.0"

    assert main(argv) == 2
    text = capsys.readouterr().out
    assert "== app (1.1.0 -> 1.2.0): would change: task 'Deployment'" in text
    assert "1.2.0 (2026-11-30, feature): Port 8080 is named" in text
    assert "First release" not in text


def test_changelog_entries_between_two_versions_newest_first() -> None:
    entries = parse_changelog(CHANGELOG)
    assert [e.version for e in between(entries, "1.0.0", "1.2.0")] == ["1.2.0", "1.1.0"]
    assert [e.version for e in between(entries, "1.2.0", "1.1.0")] == ["1.2.0"]  # taken back
    assert between(entries, "1.2.0", "1.2.0") == []
    assert between(entries, "main", "1.2.0") == []  # not a version: cannot be placed
    (newest,) = between(entries, "1.1.0", "1.2.0")
    assert newest.lines() == [
        "1.2.0 (2026-11-30, feature): Port 8080 is named",
        "  - the Service keeps its port",
    ]


def test_a_changelog_that_is_not_a_list_of_versions_gives_no_entries() -> None:
    assert parse_changelog("just: [text") == []
    assert parse_changelog("- no version here\n- {message: x}\n") == []
    assert [e.version for e in parse_changelog("changelog:\n  - {version: 2, summary: s}\n")] == [
        "2"
    ]
