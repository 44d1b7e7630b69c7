"""The cratekeeper command: validate a folder, plan between two revisions of a real Git repo."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main
from tests.support.gitrepo import GitRepo

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
APP = "registry.acme-corp.com/acme/apps/app-deploy"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def plan_json(capsys: pytest.CaptureFixture[str], repo: GitRepo, base: str) -> dict[str, Any]:
    code, out, err = run(capsys, "plan", str(repo.path), "--base", base, "--output", "json")
    assert (code, err) == (0, "")
    doc: dict[str, Any] = json.loads(out)
    return doc


@pytest.fixture
def production(tmp_path: Path) -> GitRepo:
    """acme-production-1 as a Git repository with one commit (app on 1.1.0)."""
    repo = GitRepo(tmp_path / "acme-production-1")
    shutil.copytree(EXAMPLES / "acme-production-1", repo.path, dirs_exist_ok=True)
    repo.commit("acme-production-1: app-deploy 1.1.0")
    return repo


def bump(repo: GitRepo, old: str, new: str) -> str:
    path = repo.path / "workspace.poly"
    path.write_text(path.read_text().replace(f"{APP}:{old}", f"{APP}:{new}"))
    return repo.commit(f"Promote app-deploy {old} -> {new}")


# --- validate -------------------------------------------------------------------------------


@pytest.mark.parametrize("example", ["acme-staging-1", "acme-production-1", "blocks/app-deploy"])
def test_the_examples_are_valid(capsys: pytest.CaptureFixture[str], example: str) -> None:
    code, out, _ = run(capsys, "validate", str(EXAMPLES / example))
    assert code == 0
    assert "valid (0 warning(s))" in out


def test_validate_prints_every_problem_and_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # files are named from where the command runs
    (tmp_path / "workspace.poly").write_text(
        f"name: ws\nblocks:\n  - name: a\n    from: {APP}:latest\n  - name: b\n    from: {APP}\n"
    )
    code, out, err = run(capsys, "validate", str(tmp_path))
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("workspace.poly:4: blocks[0].from:")
    assert lines[1].startswith("workspace.poly:6: blocks[1].from:")
    assert lines[2].startswith("artifacts/secrets: no kubeconfig")
    assert "3 error(s)" in err


def test_validate_checks_playbooks_of_a_block(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    shutil.copytree(EXAMPLES / "blocks" / "app-deploy", tmp_path / "b")
    (tmp_path / "b" / "rollback.yml").unlink()
    code, out, _ = run(capsys, "validate", str(tmp_path / "b"))
    assert code == 1
    assert "action 'rollback': playbook 'rollback.yml' does not exist" in out


def test_validate_of_a_missing_folder_is_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(capsys, "validate", str(tmp_path / "nope"))
    assert (code, out) == (2, "")
    assert "is not a directory" in err


# --- plan -----------------------------------------------------------------------------------


def test_plan_of_the_seed_promotion_bumps_production_to_1_2_0(
    capsys: pytest.CaptureFixture[str], production: GitRepo
) -> None:
    base = production.head()
    head = bump(production, "1.1.0", "1.2.0")
    assert plan_json(capsys, production, base) == {
        "workspace": "acme-production-1",
        "base": base,
        "head": head,
        "runs": [
            {
                "block": "app",
                "action": "deploy",
                "from": f"{APP}:1.1.0",
                "to": f"{APP}:1.2.0",
                "reason": "version",
                "rollback": False,
            }
        ],
        "removed": [],
    }


def test_plan_of_a_revert_is_a_rollback(
    capsys: pytest.CaptureFixture[str], production: GitRepo
) -> None:
    bump(production, "1.1.0", "1.2.0")
    promoted = production.head()
    production.revert()
    (run_,) = plan_json(capsys, production, promoted)["runs"]
    assert (run_["from"], run_["to"], run_["rollback"]) == (f"{APP}:1.2.0", f"{APP}:1.1.0", True)


def test_plan_of_a_config_change(capsys: pytest.CaptureFixture[str], production: GitRepo) -> None:
    base = production.head()
    path = production.path / "workspace.poly"
    path.write_text(path.read_text().replace("replicas: 2", "replicas: 3"))
    production.commit("Scale the app to 3 replicas")
    (run_,) = plan_json(capsys, production, base)["runs"]
    assert (run_["reason"], run_["from"], run_["to"]) == ("config", f"{APP}:1.1.0", f"{APP}:1.1.0")


def test_plan_of_an_added_and_a_removed_block(
    capsys: pytest.CaptureFixture[str], production: GitRepo
) -> None:
    path = production.path / "workspace.poly"
    original = path.read_text()
    path.write_text(
        original + "  - name: monitoring\n    from: registry.acme-corp.com/acme/mon:0.3.0\n"
    )
    with_monitoring = production.commit("Add monitoring")
    path.write_text(original)
    production.commit("Remove monitoring")
    doc = plan_json(capsys, production, with_monitoring)
    assert (doc["runs"], doc["removed"]) == ([], ["monitoring"])
    doc = plan_json(capsys, production, "HEAD~2")
    assert doc["runs"] == []
    doc = plan_json(capsys, production, "HEAD~1")
    assert doc["removed"] == ["monitoring"]


def test_plan_from_the_first_commit_runs_everything_as_new(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    repo = GitRepo(tmp_path / "r")
    repo.write("README.md", "empty\n")
    base = repo.commit("Initial commit")
    shutil.copytree(EXAMPLES / "acme-staging-1", repo.path, dirs_exist_ok=True)
    repo.commit("Add the workspace")
    (run_,) = plan_json(capsys, repo, base)["runs"]
    assert (run_["reason"], run_["from"]) == ("new", None)


def test_plan_text_output_is_a_table(
    capsys: pytest.CaptureFixture[str], production: GitRepo
) -> None:
    base = production.head()
    bump(production, "1.1.0", "1.2.0")
    code, out, _ = run(capsys, "plan", str(production.path), "--base", base)
    assert code == 0
    header, table_head, row = out.splitlines()
    assert header.startswith("workspace acme-production-1: ")
    assert table_head.split() == ["BLOCK", "ACTION", "FROM", "TO", "REASON", "ROLLBACK"]
    assert row.split() == ["app", "deploy", f"{APP}:1.1.0", f"{APP}:1.2.0", "version", "no"]


def test_plan_with_nothing_changed_says_so(
    capsys: pytest.CaptureFixture[str], production: GitRepo
) -> None:
    code, out, _ = run(capsys, "plan", str(production.path), "--base", "HEAD")
    assert code == 0
    assert "nothing to run" in out


def test_plan_of_an_invalid_head_fails_on_stderr_only(
    capsys: pytest.CaptureFixture[str], production: GitRepo
) -> None:
    base = production.head()
    bump(production, "1.1.0", "latest")
    code, out, err = run(capsys, "plan", str(production.path), "--base", base, "--output", "json")
    assert (code, out) == (1, "")
    assert "workspace.poly:7: at HEAD" in err and "':latest'" in err


def test_plan_of_an_unknown_revision_fails_clearly(
    capsys: pytest.CaptureFixture[str], production: GitRepo
) -> None:
    code, out, err = run(capsys, "plan", str(production.path), "--base", "no-such-branch")
    assert (code, out) == (1, "")
    assert "'no-such-branch' does not name a commit" in err


def test_plan_in_a_sub_path_of_the_repository(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    repo = GitRepo(tmp_path / "fleet")
    shutil.copytree(EXAMPLES / "acme-production-1", repo.path / "clusters" / "prod")
    base = repo.commit("Add production")
    path = repo.path / "clusters" / "prod" / "workspace.poly"
    path.write_text(path.read_text().replace(":1.1.0", ":1.2.0"))
    repo.commit("Promote")
    code, out, _ = run(
        capsys,
        "plan",
        str(repo.path),
        "--base",
        base,
        "--path",
        "clusters/prod",
        "--output",
        "json",
    )
    assert code == 0
    assert json.loads(out)["runs"][0]["to"] == f"{APP}:1.2.0"


# --- promotions -----------------------------------------------------------------------------


def test_promotions_show_each_block_across_workspaces(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "promotions", str(EXAMPLES / "acme-staging-1"), str(EXAMPLES / "acme-production-1")
    )
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["BLOCK", "acme-staging-1", "acme-production-1", "IN", "SYNC"]
    assert row.split() == [APP, "1.2.0", "1.1.0", "no"]


def test_promotions_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "promotions",
        str(EXAMPLES / "acme-staging-1"),
        str(EXAMPLES / "acme-staging-1"),
        "--output",
        "json",
    )
    assert code == 0
    assert json.loads(out) == {
        APP: {"versions": {"acme-staging-1": "1.2.0"}, "inSync": True, "ahead": []}
    }
