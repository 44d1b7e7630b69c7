"""Start-up is cheap: a command imports only what it uses (issue 11 point 3).

Measured as the modules a real ``cratekeeper`` process imports (``python -X importtime``),
never as wall time; bench/README.md has the timings.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.cli import COMMANDS, MODULES

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("kopf", "kubernetes", "docker", "aiohttp", "ansible", "kmock")
"""Third-party packages no file-level command needs (the operator's and the demo's)."""
KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
users: [{name: u, user: {token: not-a-secret}}]
"""
GIT_ENV = {
    "GIT_AUTHOR_NAME": "T",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "T",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def imported_by(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> set[str]:
    """The modules a ``cratekeeper ARGS`` process imports (it must succeed)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "controller.cli", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def top_level(modules: set[str]) -> set[str]:
    return {module.split(".")[0] for module in modules}


def test_each_command_is_registered_by_the_module_the_table_names() -> None:
    for module in MODULES:
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers(dest="command")
        importlib.import_module(f"controller.cli.{module}").add_commands(sub)
        registered = set(sub.choices)
        assert registered == {c for c, m in COMMANDS.items() if m == module}, module


def test_validate_imports_no_operator_registry_or_runner_code() -> None:
    modules = imported_by("validate", str(ROOT / "examples" / "acme-staging-1"))
    assert not top_level(modules) & {*HEAVY, "requests"}
    assert not {m for m in modules if m.startswith(("controller.operator", "controller.sandbox"))}
    assert "controller.pipeline" not in modules and "controller.registry" not in modules


@pytest.mark.parametrize("command", ["status", "plan", "promotions"])
def test_help_of_a_command_imports_only_its_module(command: str) -> None:
    modules = imported_by(command, "--help")
    assert not top_level(modules) & set(HEAVY)
    others = {f"controller.cli.{m}" for m in MODULES} - {f"controller.cli.{COMMANDS[command]}"}
    assert not modules & others


def test_reconcile_with_nothing_to_do_imports_no_pydantic_settings_pipeline_or_runner(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    (repo / "artifacts" / "secrets").mkdir(parents=True)
    (repo / "artifacts" / "secrets" / "kubeconfig.yml").write_text(KUBECONFIG)
    (repo / "workspace.poly").write_text("name: acme-w\nblocks: []\n")
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "one"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)
    state = tmp_path / "state.json"
    reconcile = ("reconcile", f"file://{repo}", "--state", str(state))
    cache = {"CRATEKEEPER_CACHE_DIR": str(tmp_path / "cache")}
    first = imported_by(*reconcile, env=cache)  # applies: the full path
    applied = state.read_bytes()

    modules = imported_by(*reconcile, env=cache)

    assert {"pydantic", "controller.settings", "controller.pipeline"} <= first
    heavy = {*HEAVY, "requests", "urllib3", "yaml", "pydantic", "pydantic_core", "pyrage"}
    assert top_level(modules) & heavy == set()
    light = ("controller.cli.noop", "controller.source.lsremote")
    assert {m for m in modules if m.startswith("controller.")} - {*light} <= {
        "controller.cli",
        "controller.cli.applying",
        "controller.cli.flags",
        "controller.errors",
        "controller.source",
        "controller.source.cache",
        "controller.source.classify",
        "controller.source.gitcmd",
        "controller.source.model",
        "controller.source.remote",
    }
    assert state.read_bytes() == applied


def test_the_source_package_names_each_public_name_s_module() -> None:
    import controller.source as source

    assert sorted(source.__all__) == sorted(source._HOMES)
    for name in source.__all__:
        home = importlib.import_module(f"controller.source.{source._HOMES[name]}")
        assert getattr(source, name) is getattr(home, name)
