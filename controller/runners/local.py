"""The ``local`` runner: ``ansible-playbook`` as a subprocess, for development, demo and tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from controller.errors import RunError
from controller.runners.base import (
    ActionRequest,
    LineSplitter,
    LogTail,
    OutputHandler,
    RunResult,
    action_env,
    ansible_command,
    process_status,
    read_events,
    redactions,
    snapshot_yaml,
)
from controller.secrets import kubeconfig_file


def find_ansible_playbook() -> str:
    """``ansible-playbook`` next to this Python (its virtualenv) or else on ``PATH``."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    if beside.is_file():
        return str(beside)
    found = shutil.which("ansible-playbook")
    if found is None:
        raise RunError(
            "ansible-playbook not found; install Ansible (pip install 'ansible>=12') "
            "next to cratekeeper or on PATH"
        )
    return found


class LocalRunner:
    """Runs the action in a subprocess; kills its whole process group on timeout."""

    def __init__(self, ansible_playbook: str | None = None) -> None:
        self._ansible_playbook = ansible_playbook

    async def run(
        self, request: ActionRequest, on_output: OutputHandler | None = None
    ) -> RunResult:
        binary = self._ansible_playbook or find_ansible_playbook()
        tail = LogTail(redactions(request), on_output)
        started = datetime.now(UTC)
        with (
            tempfile.TemporaryDirectory(prefix="cratekeeper-run-") as tmp,
            kubeconfig_file(request.kubeconfig) as kubeconfig,
        ):
            home = Path(tmp) / "home"
            home.mkdir(mode=0o700)
            snapshot = Path(tmp) / "snapshot.yml"
            snapshot.write_text(snapshot_yaml(request))
            snapshot.chmod(0o600)
            events = Path(tmp) / "events.jsonl"
            env = action_env(
                request,
                kubeconfig=str(kubeconfig),
                home=str(home),
                events_file=str(events),
                path=f"{Path(binary).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            )
            proc = await asyncio.create_subprocess_exec(
                *ansible_command(binary, request, str(snapshot)),
                cwd=request.workspace_dir,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
            timed_out = False
            try:
                await asyncio.wait_for(self._follow(proc, tail), timeout=request.timeout)
            except TimeoutError:
                timed_out = True
                _kill_group(proc)
                await proc.wait()
                tail.add(f"cratekeeper: stopped after the {request.timeout:g}s timeout")
            except BaseException:
                _kill_group(proc)  # cancelled: never leave a playbook running
                raise
            outcome = read_events(events)
        status = process_status(proc.returncode, timed_out)
        return RunResult.ended(status, outcome, tail, started, proc.returncode)

    @staticmethod
    async def _follow(proc: asyncio.subprocess.Process, tail: LogTail) -> None:
        assert proc.stdout is not None
        lines = LineSplitter()  # chunks, not readline(): a line may be longer than any buffer
        while chunk := await proc.stdout.read(64 * 1024):
            for line in lines.feed(chunk):
                tail.add(line)
        for line in lines.close():
            tail.add(line)
        await proc.wait()


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
