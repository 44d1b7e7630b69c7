"""Real Git repositories for tests: write files, commit, revert, all through the `git` binary."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

ENV = {
    "GIT_AUTHOR_NAME": "Ada Admin",
    "GIT_AUTHOR_EMAIL": "ada@acme-corp.com",
    "GIT_COMMITTER_NAME": "Ada Admin",
    "GIT_COMMITTER_EMAIL": "ada@acme-corp.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
    "PATH": "/usr/local/bin:/usr/bin:/bin",
}


class GitRepo:
    """A working repository in a temporary directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        proc = subprocess.run(
            ["git", *args], cwd=self.path, env=ENV, check=True, capture_output=True, text=True
        )
        return proc.stdout.strip()

    def write(self, relpath: str, content: str) -> Path:
        path = self.path / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        return path

    def write_yaml(self, relpath: str, data: object) -> Path:
        return self.write(relpath, yaml.safe_dump(data, sort_keys=False))

    def remove(self, relpath: str) -> None:
        self.git("rm", "-q", relpath)

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def revert(self, rev: str = "HEAD") -> str:
        self.git("revert", "--no-edit", rev)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")
