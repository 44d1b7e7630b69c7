"""What the scale benchmark runs against: real servers on 127.0.0.1, made once per run.

- a local OCI registry (Debian's docker-registry) holding two trivial blocks: ``noop`` (one
  ``meta: noop`` task) and ``slow`` (sleeps ``HOLD`` seconds, to hold a run slot);
- ``git daemon`` serving one bare repository per Workspace (``git://127.0.0.1:PORT/ws-N``);
- the emulated Kubernetes API (in this process's thread, so its CPU is not the operator's),
  holding the Workspaces and serving as every workspace's target cluster;
- a ``git`` wrapper on the operator's PATH that logs every git process it starts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from controller.api.crd import render
from controller.refs import BlockRef
from controller.registry import RegistryClient, RegistryOptions, push_block
from controller.sandbox.kube import KubeEmulator
from controller.sandbox.registry import Registry, free_port, start_registry, stop_registry

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}
PLAY = """\
- hosts: localhost
  connection: local
  gather_facts: false
  vars: {{ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"}}
  tasks:
{task}
"""
HOLD = 90.0  # seconds a ``slow`` run holds its run slot: longer than the busy-slot samples take
TASKS = {
    "noop": "    - ansible.builtin.meta: noop\n",
    "slow": f"    - ansible.builtin.command: sleep {HOLD:.0f}\n      changed_when: false\n",
}


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


@dataclass
class Fixture:
    """The servers and the template workspace; ``close()`` stops and removes everything."""

    work: Path
    registry: Registry
    api: KubeEmulator
    daemon: subprocess.Popen[bytes]
    git_port: int
    git_log: Path
    wrapper_dir: Path
    kubeconfig: Path
    template_sha: str = ""

    @classmethod
    def start(cls, work: Path) -> Fixture:
        registry = start_registry(work / "registry")
        client = RegistryClient(RegistryOptions(insecure_registries=(registry.host,)))
        for name, task in TASKS.items():
            block = work / "blocks" / name
            block.mkdir(parents=True)
            (block / "block.poly").write_text(
                f"name: {registry.host}/bench/{name}\nversion: 1.0.0\nkind: generic\n"
                "config: {round: 0}\nactions:\n  - name: deploy\n    playbook: play.yml\n"
            )
            (block / "play.yml").write_text(PLAY.format(task=task))
            push_block(block, BlockRef.parse(f"{registry.host}/bench/{name}:1.0.0"), client=client)
        api = KubeEmulator(crds=[render()], request_log=500_000).start()
        kubeconfig = api.write_kubeconfig(work / "management.kubeconfig")
        (work / "git").mkdir()
        port = free_port()
        daemon = subprocess.Popen(
            [
                "git",
                "daemon",
                "--reuseaddr",
                "--export-all",
                f"--base-path={work / 'git'}",
                "--listen=127.0.0.1",
                f"--port={port}",
                str(work / "git"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wrapper_dir, git_log = work / "bin", work / "git-processes.log"
        wrapper_dir.mkdir()
        real_git = shutil.which("git")
        (wrapper_dir / "git").write_text(
            f'#!/bin/bash\nprintf "%s %s\\n" "$EPOCHREALTIME" "$*" >> {git_log}\n'
            f'exec {real_git} "$@"\n'
        )
        (wrapper_dir / "git").chmod(0o755)
        git_log.touch()
        fixture = cls(work, registry, api, daemon, port, git_log, wrapper_dir, kubeconfig)
        try:
            fixture._template()
            fixture._wait_for_daemon()
        except BaseException:
            fixture.close()
            raise
        git_log.write_text("")
        return fixture

    def close(self) -> None:
        self.daemon.terminate()
        self.daemon.wait(timeout=10)
        self.api.stop()
        stop_registry(self.registry)

    def block(self, name: str) -> str:
        return f"{self.registry.host}/bench/{name}:1.0.0"

    def url(self, repo: str) -> str:
        return f"git://127.0.0.1:{self.git_port}/{repo}"

    def _template(self) -> None:
        """One workspace (one ``noop`` block) as a bare repository, copied per Workspace."""
        tree = self.work / "template-tree"
        (tree / "artifacts" / "secrets").mkdir(parents=True)
        shutil.copy(self.kubeconfig, tree / "artifacts" / "secrets" / "kubeconfig.yml")
        (tree / "workspace.poly").write_text(self.workspace_poly("noop", 0))
        (tree / "local.yml").write_text(PLAY.format(task=TASKS["noop"]))  # for ansible-pull
        git(tree, "init", "-q", "-b", "main")
        git(tree, "add", "-A")
        git(tree, "commit", "-q", "-m", "bench workspace")
        git(self.work, "clone", "-q", "--bare", str(tree), str(self.work / "git" / "template.git"))
        self.template_sha = git(tree, "rev-parse", "HEAD")

    def workspace_poly(self, block: str, round_: int) -> str:
        return (
            "name: bench\norganization: bench\nblocks:\n"
            f"  - name: app\n    from: {self.block(block)}\n    config: {{round: {round_}}}\n"
        )

    def repos(self, prefix: str, n: int) -> list[str]:
        """``n`` bare repositories holding the template workspace; their names."""
        names = [f"{prefix}-{i}" for i in range(n)]
        for name in names:
            shutil.copytree(self.work / "git" / "template.git", self.work / "git" / name)
        return names

    def push(self, repo: str, block: str, round_: int) -> str:
        """A new commit on ``repo``'s main (its block and config round); the commit."""
        tree = self.work / "trees" / repo
        if not tree.exists():
            git(self.work, "clone", "-q", str(self.work / "git" / repo), str(tree))
        (tree / "workspace.poly").write_text(self.workspace_poly(block, round_))
        git(tree, "commit", "-q", "-am", f"{block} round {round_}")
        git(tree, "push", "-q", "origin", "HEAD:main")
        return git(tree, "rev-parse", "HEAD")

    def git_calls(self) -> list[tuple[float, str]]:
        """Every git process the operator started so far: (time, subcommand and its args)."""
        calls = []
        for line in self.git_log.read_text().splitlines():
            when, _, args = line.partition(" ")
            calls.append((float(when.replace(",", ".")), subcommand(args)))
        return calls

    def _wait_for_daemon(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = subprocess.run(
                ["git", "ls-remote", self.url("template.git")], capture_output=True, check=False
            )
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("git daemon did not start")


def subcommand(args: str) -> str:
    """``ls-remote URL ...`` out of ``--git-dir D -c k=v ls-remote URL ...``."""
    words = args.split()
    while words and words[0].startswith("-"):
        option = words.pop(0)
        if option in ("--git-dir", "-C", "-c", "--work-tree") and words:
            words.pop(0)
    return " ".join(words)
