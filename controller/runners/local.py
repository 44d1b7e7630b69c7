"""The ``local`` runner: the action as a subprocess, for development, the demo and the tests.

The action runs from the block's workdir in the controller's export of the workspace, with the
environment of :func:`controller.runners.contract.action_env`: a private ``HOME`` (Ansible's
scratch included) in a temp directory, the kubeconfig and the snapshot in 0600 memory-backed
files, all removed when the run ends. A hard kill of the controller leaves the run's process
group to the operating system: the next reconcile runs the action again (it is not recorded).
"""

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
    OutputHandler,
    RunPaths,
    RunResult,
    process_status,
    redactions,
)
from controller.runners.contract import (
    PLUGIN_DIR,
    action_env,
    command,
    script_text,
    snapshot_text,
    workdir,
)
from controller.runners.events import read_events
from controller.runners.output import LineSplitter, LogTail
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
            kubeconfig_file(b"") as snapshot,  # memory-backed, 0600: it may hold secrets
            kubeconfig_file(b"") as script,  # rendered lines may quote secret config too
        ):
            run_dir = Path(tmp)
            home = run_dir / "home"
            home.mkdir(mode=0o700)
            paths = RunPaths(
                root=str(request.workspace_dir), kubeconfig=str(kubeconfig), snapshot=str(snapshot)
            )
            text = script_text(request, paths)
            if text is not None:
                script.write_text(text)
            events = run_dir / "events.jsonl"
            env = action_env(
                request,
                paths,
                home=str(home),
                events_file=str(events),
                path=f"{Path(binary).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
                plugins=str(PLUGIN_DIR),
                in_container=False,
                script=str(script) if text is not None else None,
            )
            snapshot.write_text(snapshot_text(request, paths, env))
            cwd = Path(workdir(request, paths))
            if not cwd.is_dir():
                raise RunError(
                    f"block {request.block!r}: its workdir {request.workdir} is not in the "
                    "workspace; check the block's folder under blocks/"
                )
            (request.workspace_dir / request.artifacts_dir).mkdir(parents=True, exist_ok=True)
            proc = await asyncio.create_subprocess_exec(
                *command(request, paths, ansible_playbook=binary, script=str(script)),
                cwd=cwd,
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
