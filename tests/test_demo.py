"""The README's first command: the demo tells the whole story and cleans up after itself,
also when Ctrl-C or SIGTERM stops it (a real process, real signals)."""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO

import pytest
import yaml

from controller.sandbox.demo import run_demo

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    shutil.which("docker-registry") is None and not Path("/usr/bin/docker-registry").exists(),
    reason="docker-registry is not installed (scripts/setup installs it)",
)


def test_the_demo_promotes_and_rolls_back_production() -> None:
    lines: list[str] = []
    run_demo(say=lines.append)
    text = "\n".join(lines)
    assert "EMULATED" in text  # it says plainly that the clusters are emulated
    steps = text.split("$ kubectl get workspaces")
    assert len(steps) == 4
    first, promoted, rolled_back = steps[1:]
    assert "acme-staging-1 (emulated) runs ghcr.io/acme/myapp:1.2.0" in first
    assert "acme-production-1 (emulated) runs ghcr.io/acme/myapp:1.1.0" in first
    assert "acme-production-1 (emulated) runs ghcr.io/acme/myapp:1.2.0" in promoted
    assert "app 1.2.0 → 1.1.0 (rollback)" in promoted.split("3. Rollback")[1]
    assert "acme-production-1 (emulated) runs ghcr.io/acme/myapp:1.1.0" in rolled_back
    header = first.splitlines()[1].split()
    assert header == ["NAME", "READY", "SUSPENDED", "REVISION", "BLOCKS", "STATUS", "AGE"]
    assert lines[-1].startswith("Done in")


def _lines(stream: IO[str], into: queue.Queue[str | None]) -> None:
    for line in stream:
        into.put(line.rstrip("\n"))
    into.put(None)


class DemoProcess:
    """``cratekeeper demo`` as a real process whose temporary files land under ``tmp``."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.tmp = tmp
        env = {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "demo", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self.stdout: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(
            target=_lines, args=(self.process.stdout, self._queue), daemon=True
        ).start()

    def wait_for(self, text: str, timeout: float = 240.0) -> str:
        """The first line (from now on) that contains ``text``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=1.0)
            except queue.Empty:
                continue
            if line is None:
                break
            self.stdout.append(line)
            if text in line:
                return line
        self.process.kill()
        raise AssertionError(f"no line with {text!r}; output so far:\n" + "\n".join(self.stdout))

    def finish(self, timeout: float = 120.0) -> tuple[int, str, str]:
        """Exit code, all stdout and all stderr."""
        assert self.process.stderr is not None
        code = self.process.wait(timeout=timeout)
        while (line := self._queue.get(timeout=10)) is not None:
            self.stdout.append(line)
        return code, "\n".join(self.stdout), self.process.stderr.read()

    def leftovers(self) -> list[str]:
        """Files and processes of the demo's that still exist."""
        found = [str(p) for p in self.tmp.glob("cratekeeper-*")]
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            with contextlib.suppress(OSError):
                if str(self.tmp) in cmdline.read_bytes().decode(errors="replace"):
                    found.append(f"process {cmdline.parent.name}")
        return found


def _refuses(host_port: str) -> bool:
    host, port = host_port.rsplit(":", 1)
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) != 0


def test_demo_keep_stops_on_ctrl_c_cleans_up_and_a_second_ctrl_c_is_harmless(
    tmp_path: Path,
) -> None:
    demo = DemoProcess(tmp_path, "--keep")
    registry = demo.wait_for("Starting: OCI registry at").split(" at ")[1].split()[0]
    kubeconfig = demo.wait_for("kubectl --kubeconfig").split("--kubeconfig ")[1].split()[0]
    management = yaml.safe_load(Path(kubeconfig).read_text())["clusters"][0]["cluster"]["server"]
    metrics = demo.wait_for("  metrics: http://").split("metrics: ")[1].strip()
    demo.wait_for("Press Ctrl-C to stop and clean up.")
    # A playground: the CLI finds the Workspaces in the kubeconfig context's namespace.
    env = {**os.environ, "KUBECONFIG": kubeconfig, "PYTHONPATH": str(ROOT)}
    listed = subprocess.run(
        [sys.executable, "-m", "controller.cli", "get", "workspaces"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()[1:]]
    assert names == ["acme-production-1", "acme-staging-1"]
    with urllib.request.urlopen(metrics, timeout=10) as response:
        assert b"cratekeeper_runs_total" in response.read()
    demo.process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    demo.process.send_signal(signal.SIGINT)  # impatient: a second Ctrl-C
    code, stdout, stderr = demo.finish()
    assert code == 0, stderr
    assert "Traceback" not in stdout + stderr
    assert "SIGINT: stopping and cleaning up." in stderr
    assert stdout.splitlines()[-1].startswith("Stopped in")
    assert demo.leftovers() == []
    assert _refuses(registry) and _refuses(management.removeprefix("http://"))


def test_demo_stops_on_sigterm_mid_story_and_cleans_up(tmp_path: Path) -> None:
    demo = DemoProcess(tmp_path)
    demo.wait_for("1. Two workspaces")
    demo.process.send_signal(signal.SIGTERM)
    code, stdout, stderr = demo.finish()
    assert code == 130, stderr  # the story was not told to its end
    assert "Traceback" not in stdout + stderr
    assert "SIGTERM: stopping and cleaning up." in stderr
    assert stdout.splitlines()[-1].startswith("Stopped in")
    assert demo.leftovers() == []
