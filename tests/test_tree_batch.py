"""A commit's files read at once (``GitTree.read_many``): the kubeconfig rule scans every YAML
and JSON file of a workspace for a second kubeconfig, in one ``git cat-file --batch`` process
rather than one process per file (each new commit's check, before its plan)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.errors import KubeconfigError
from controller.secrets import KUBECONFIG, AgeKeys, find_kubeconfig, read_kubeconfig
from controller.source import GitTree
from controller.tree import read_files
from tests.support.gitrepo import GitRepo
from tests.test_secrets import PLAINTEXT, tree_with
from tests.test_source_cost import git_processes
from tests.test_source_push import commands

__all__ = ["git_processes"]  # a fixture of tests/test_source_cost.py

FILES = {
    "workspace.poly": "name: ws\n",
    "inventory.yml": "all: {hosts: {a: {}}}\n",
    "group_vars/all.yaml": "x: 1\n",
    "data/values.json": '{"replicas": 2}\n',
    "README.md": "hello\n",
    "blocks/app/block.poly": "name: app\n",
}


def commit(tmp_path: Path, files: dict[str, str]) -> GitTree:
    repo = GitRepo(tmp_path / "repo")
    for rel, text in files.items():
        repo.write(rel, text)
    sha = repo.commit("files")
    return GitTree(repo.path / ".git", sha)


def test_many_files_are_read_in_one_git_process_with_the_same_bytes(
    tmp_path: Path, git_processes: Path
) -> None:
    tree = commit(tmp_path, {**FILES, "empty.yml": "", "big.yml": "x" * 5000})
    names = [*FILES, "empty.yml", "big.yml", "missing.yml"]
    git_processes.write_text("")

    many = tree.read_many(names, max_size=4096)

    assert commands(git_processes) == ["ls-tree", "cat-file"]
    assert many == {name: text.encode() for name, text in {**FILES, "empty.yml": ""}.items()}
    assert read_files(tree, ["README.md", "nope"]) == {"README.md": b"hello\n"}
    assert tree.read_many([]) == {}


def test_the_kubeconfig_rule_scans_a_commit_in_one_git_process(
    tmp_path: Path, git_processes: Path
) -> None:
    tree = commit(tmp_path, {**FILES, KUBECONFIG: PLAINTEXT.decode()})
    git_processes.write_text("")
    assert read_kubeconfig(tree, AgeKeys()) == PLAINTEXT
    # the index, one batch for the scan, the kubeconfig itself
    assert commands(git_processes) == ["ls-tree", "cat-file", "cat-file"]


@pytest.mark.parametrize("other", ["clusters/extra.yaml", "kubeconfig", "data/cluster.json"])
def test_another_kubeconfig_in_a_commit_is_found_by_name_or_content(
    tmp_path: Path, other: str
) -> None:
    tree = commit(tmp_path, {**FILES, KUBECONFIG: PLAINTEXT.decode(), other: PLAINTEXT.decode()})
    with pytest.raises(KubeconfigError, match=f"another kubeconfig-like file: {other}"):
        find_kubeconfig(tree)


def test_a_directory_reads_the_same_through_the_fallback(tmp_path: Path) -> None:
    tree = tree_with(tmp_path, {"a.yml": b"1\n", "b.yml": b"22\n"})
    assert read_files(tree, ["a.yml", "b.yml", "c.yml"], max_size=2) == {"a.yml": b"1\n"}
