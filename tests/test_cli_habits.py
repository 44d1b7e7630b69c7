"""CLI habits (issue 12 point 7): machine-readable output, exit codes CI can act on, help on
every flag, an example on every command, quiet exits into a closed pipe, paths from where the
command runs."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from controller.cli import build_parser, main
from controller.cli.workspaces import reconcile_parser
from tests.support.gitrepo import GitRepo

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
APP = "registry.acme-corp.com/acme/apps/app-deploy"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def parsers() -> list[argparse.ArgumentParser]:
    """Every command's parser (nested ones included) and ``reconcile workspace``'s."""
    found, todo = [], [build_parser(), reconcile_parser()]
    while todo:
        parser = todo.pop()
        found.append(parser)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())
    return found


def test_every_flag_has_help_and_every_command_an_example() -> None:
    undocumented, no_example = [], []
    for parser in parsers():
        commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not commands and "example" not in (parser.epilog or ""):
            no_example.append(parser.prog)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
                continue
            if not action.help:
                undocumented.append(
                    f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
                )
    assert not undocumented, f"flags without help: {undocumented}"
    assert not no_example, f"commands without an example: {no_example}"


def test_blocks_push_offers_the_force_it_names() -> None:
    args = build_parser().parse_args(["blocks", "push", "dir", f"{APP}:1.0.0", "--force"])
    assert args.force is True


@pytest.fixture
def production(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "acme-production-1")
    shutil.copytree(EXAMPLES / "acme-production-1", repo.path, dirs_exist_ok=True)
    repo.commit("acme-production-1: app-deploy 1.1.0")
    return repo


def test_plan_exit_code_is_0_for_nothing_2_for_something_1_for_an_error(
    capsys: pytest.CaptureFixture[str], production: GitRepo
) -> None:
    path = str(production.path)
    assert run(capsys, "plan", path, "--base", "HEAD", "--exit-code")[0] == 0
    poly = production.path / "workspace.poly"
    poly.write_text(poly.read_text().replace(f"{APP}:1.1.0", f"{APP}:1.2.0"))
    production.commit("app-deploy 1.2.0")
    assert run(capsys, "plan", path, "--base", "HEAD~1", "--exit-code")[0] == 2
    assert run(capsys, "plan", path, "--base", "HEAD~1")[0] == 0  # without the flag: 0
    assert run(capsys, "plan", path, "--base", "no-such-rev", "--exit-code")[0] == 1
    assert run(capsys, "plan", path, "--bsae", "HEAD", "--exit-code")[0] == 1  # a usage error


def test_promotions_json_says_which_side_is_ahead(capsys: pytest.CaptureFixture[str]) -> None:
    staging, production = EXAMPLES / "acme-staging-1", EXAMPLES / "acme-production-1"
    code, out, _ = run(capsys, "promotions", str(staging), str(production), "--output", "json")
    assert code == 0
    assert json.loads(out)[APP] == {
        "versions": {"acme-staging-1": "1.2.0", "acme-production-1": "1.1.0"},
        "inSync": False,
        "ahead": ["acme-staging-1"],
    }


def test_validate_json_names_files_relative_to_where_it_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "workspace.poly").write_text(
        f"name: ws\nblocks:\n  - name: app\n    from: {APP}:latest\n"
    )
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "validate", "ws", "--output", "json")
    doc = json.loads(out)
    assert (code, doc["valid"]) == (1, False)
    assert doc["problems"][0]["file"] == os.path.join("ws", "workspace.poly")
    assert doc["problems"][0]["line"] == 4
    code, out, _ = run(capsys, "validate", "ws")
    assert out.startswith(os.path.join("ws", "workspace.poly") + ":4: ")


def test_output_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    history = [
        {
            "revision": f"{i:040x}",
            "result": "Succeeded",
            "started": "2024-05-01T10:00:00Z",
            "finished": "2024-05-01T10:00:00Z",
            "subject": "x" * 200,
        }
        for i in range(2000)
    ]
    state.write_text(json.dumps({"history": history}))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "controller.cli", "status", "--state", str(state)]
    command += ["--history", "2000"]
    proc = subprocess.run(
        f"{' '.join(command)} | head -1", shell=True, env=env, capture_output=True, text=True
    )
    assert proc.stdout.startswith("READY")
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("argv", [["get", "--help"], ["reconcile", "workspace", "--help"]])
def test_help_of_a_workspace_command_imports_no_kubernetes_client(argv: list[str]) -> None:
    code = (
        "import sys\nfrom controller.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write('HEAVY=' + ','.join(sorted({m.split('.')[0] for m in sys.modules} "
        "& {'kubernetes', 'kopf', 'kmock'})))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert "usage: cratekeeper" in proc.stdout
    assert proc.stderr.strip().endswith("HEAVY="), proc.stderr
