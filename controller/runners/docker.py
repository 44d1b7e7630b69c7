"""The ``docker`` runner: the execution image run through the Docker Engine API (DESIGN §5).

For controllers that run outside a cluster. The action sees what it sees under the other
runners (:mod:`controller.runners.contract`), at fixed container paths (:data:`PATHS`): the
workspace at :data:`WORKSPACE_DIR` (the block's workdir inside it is the working directory;
writable, as under Polycrate, so a block's artifacts reach the next block), the kubeconfig, the
snapshot and the script as read-only single-file mounts of 0600 memory-backed files from
:func:`controller.secrets.kubeconfig_file`, cratekeeper's Ansible plugins, and a private run
directory (``HOME`` with Ansible's scratch, the callback's events file).
The container runs as a non-root user on a read-only root filesystem with every capability
dropped and ``no-new-privileges``; only ``/tmp`` is writable, as a tmpfs.

The engine must see this process's files at the same paths (bind mounts): run it on the same
host, not behind a remote ``DOCKER_HOST`` nor with the controller inside another container
unless ``/dev/shm`` and the temp directory are shared. See ``docs/docker-runner.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

import docker
import docker.errors
from docker.types import LogConfig, Mount

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
    CALLBACK_DIR,
    VARS_DIR,
    action_env,
    command,
    script_text,
    snapshot_text,
    workdir,
)
from controller.runners.docker_setup import (
    LABEL,
    container_ids,
    engine_client,
    env_path,
    explain,
    wait_for_earlier,
)
from controller.runners.events import read_events
from controller.runners.output import LineSplitter, LogTail
from controller.secrets import kubeconfig_file

WORKSPACE_DIR = "/workspace"
RUN_DIR = "/cratekeeper/run"
KUBECONFIG_PATH = "/cratekeeper/secrets/kubeconfig"
SNAPSHOT_PATH = "/cratekeeper/secrets/snapshot.yml"
SCRIPT_PATH = "/cratekeeper/secrets/script.sh"
PLUGINS_PATH = "/cratekeeper/plugins"
PATHS = RunPaths(root=WORKSPACE_DIR, kubeconfig=KUBECONFIG_PATH, snapshot=SNAPSHOT_PATH)
"""Where the action finds the workspace, the kubeconfig and the snapshot in the container."""
TMPFS_SIZE = "256m"
STOP_GRACE = 60.0
"""Seconds to wait for a killed container's removal before giving up on it."""

PullPolicy = Literal["missing", "always", "never"]
_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]+")


class DockerRunner:
    """Runs each action in a fresh container of ``image``, removed when the run ends."""

    def __init__(
        self,
        image: str,
        *,
        client: Any = None,
        base_url: str | None = None,
        network_mode: str = "bridge",
        user: str | None = None,
        pull: PullPolicy = "missing",
        run_root: Path | None = None,
    ) -> None:
        """``client`` (a ``docker.DockerClient``) or ``base_url`` (``unix:///run/docker.sock``);
        neither: the environment's engine (``DOCKER_HOST``). ``network_mode`` is Docker's
        (``bridge``, ``host``, a network name): the container must reach the cluster's API.
        ``user`` is numeric ``UID[:GID]``, never 0; unset, the controller's own ids, or
        :data:`~controller.runners.docker_setup.NONROOT_USER` when the controller is root.
        ``run_root``: where the per-run directories are made (default: the system temp dir);
        the engine must see it at the same path."""
        self.image = image
        self.network_mode = network_mode
        self.pull = pull
        self.run_root = run_root
        self._client = client if client is not None else engine_client(base_url)
        self._uid, self._gid = container_ids(user)
        self._paths: dict[str, str] = {}

    @property
    def user(self) -> str:
        """The container's ``UID:GID``."""
        return f"{self._uid}:{self._gid}"

    async def run(
        self, request: ActionRequest, on_output: OutputHandler | None = None
    ) -> RunResult:
        path = await asyncio.to_thread(self._image_path)
        tail = LogTail(redactions(request), on_output)
        for note in await asyncio.to_thread(wait_for_earlier, self._client, request):
            tail.add(note)
        started = datetime.now(UTC)
        name = container_name(request)
        env = action_env(
            request,
            PATHS,
            home=f"{RUN_DIR}/home",
            events_file=f"{RUN_DIR}/events.jsonl",
            path=path,
            plugins=PLUGINS_PATH,
            in_container=True,
            script=SCRIPT_PATH if request.has_script else None,
        )
        snapshot = snapshot_text(request, PATHS, env).encode()
        script = (script_text(request, PATHS) or "").encode()
        with (
            tempfile.TemporaryDirectory(prefix="cratekeeper-run-", dir=self.run_root) as tmp,
            kubeconfig_file(request.kubeconfig) as kubeconfig,
            kubeconfig_file(snapshot) as snapshot_file,  # memory-backed: it may hold secrets
            kubeconfig_file(script) as script_file,
        ):
            run_dir = Path(tmp)
            secrets = _Secrets(kubeconfig, snapshot_file, script_file)
            workspace = await asyncio.to_thread(self._prepare, request, run_dir, secrets)
            spec = self._spec(request, name, run_dir, secrets, env, workspace)
            exit_code, timed_out = await self._supervise(spec, tail, request.timeout)
            events = read_events(run_dir / "events.jsonl")
            if workspace != request.workspace_dir:
                await asyncio.to_thread(_bring_back_artifacts, request, workspace)
        status = process_status(exit_code, timed_out)
        return RunResult.ended(status, events, tail, started, exit_code, name)

    def _prepare(self, request: ActionRequest, run_dir: Path, secrets: _Secrets) -> Path:
        """Lay out the run directory and hand it (and the secret files) to the container user;
        the workspace directory the container mounts (read-write: the block writes its
        artifacts there, and they reach the next block as under Polycrate)."""
        home = run_dir / "home"
        home.mkdir(mode=0o700)
        (request.workspace_dir / request.artifacts_dir).mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return request.workspace_dir  # the container runs as this user: it can read it
        # Root hands the files over. The workspace may be private to root (the pipeline
        # exports it 0700), so the container gets its own copy, owned by its user.
        for owned in (run_dir, home, *secrets):
            os.chown(owned, self._uid, self._gid)
        workspace = run_dir / "workspace"
        shutil.copytree(request.workspace_dir, workspace, symlinks=True)
        for path in (workspace, *workspace.rglob("*")):
            os.chown(path, self._uid, self._gid, follow_symlinks=False)
        return workspace

    def _spec(
        self,
        request: ActionRequest,
        name: str,
        run_dir: Path,
        secrets: _Secrets,
        env: dict[str, str],
        workspace: Path,
    ) -> dict[str, Any]:
        """The ``containers.create`` arguments of one run."""
        return {
            "image": self.image,
            "command": command(
                request, PATHS, ansible_playbook="ansible-playbook", script=SCRIPT_PATH
            ),
            "name": name,
            "working_dir": workdir(request, PATHS),
            "environment": env,
            "user": self.user,
            "network_mode": self.network_mode,
            "read_only": True,
            "privileged": False,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "init": True,  # reaps the zombies of Ansible's forks
            "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={TMPFS_SIZE}"},  # noqa: S108
            "mounts": [
                Mount(WORKSPACE_DIR, str(workspace), type="bind"),
                Mount(KUBECONFIG_PATH, str(secrets.kubeconfig), type="bind", read_only=True),
                Mount(SNAPSHOT_PATH, str(secrets.snapshot), type="bind", read_only=True),
                Mount(SCRIPT_PATH, str(secrets.script), type="bind", read_only=True),
                Mount(
                    f"{PLUGINS_PATH}/callback_plugins",
                    str(CALLBACK_DIR),
                    type="bind",
                    read_only=True,
                ),
                Mount(f"{PLUGINS_PATH}/vars_plugins", str(VARS_DIR), type="bind", read_only=True),
                Mount(RUN_DIR, str(run_dir), type="bind"),
            ],
            # The logs are followed through the API, which needs a driver that can read back.
            "log_config": LogConfig(type=LogConfig.types.JSON),
            "labels": {
                LABEL: "docker",
                "cratekeeper.dev/workspace": request.workspace,
                "cratekeeper.dev/block": request.block,
                "cratekeeper.dev/action": request.action,
                "cratekeeper.dev/revision": request.revision,
            },
            "detach": True,
        }

    async def _supervise(
        self, spec: dict[str, Any], tail: LogTail, timeout: float
    ) -> tuple[int | None, bool]:
        """Follow the container to its end: ``(exit code, timed out)``.

        One worker thread owns the container from create to remove, so every path (success,
        failure, timeout, cancellation, engine error) removes it; stopping only kills it.
        """
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        stop, done = threading.Event(), threading.Event()

        def emit(line: str | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody listens
                loop.call_soon_threadsafe(lines.put_nowait, line)

        worker = asyncio.ensure_future(asyncio.to_thread(self._lifecycle, spec, emit, stop, done))

        async def drain() -> None:
            while (line := await lines.get()) is not None:
                tail.add(line)

        try:
            await asyncio.wait_for(drain(), timeout=timeout)
            return await _engine(worker), False
        except TimeoutError:
            await self._stop(spec["name"], stop, done)
            while not lines.empty():
                if (line := lines.get_nowait()) is not None:
                    tail.add(line)
            tail.add(f"cratekeeper: stopped after the {timeout:g}s timeout")
            return None, True
        except BaseException:
            await self._stop(spec["name"], stop, done)  # cancelled: never leave it running
            raise

    async def _stop(self, name: str, stop: threading.Event, done: threading.Event) -> None:
        """Kill the container and wait (bounded) until the worker has removed it."""
        stop.set()

        def kill_and_wait() -> None:
            self._kill(name)
            done.wait(STOP_GRACE)

        # Shielded: a second cancellation must not leave the container behind unkilled.
        await asyncio.shield(asyncio.to_thread(kill_and_wait))

    def _lifecycle(
        self,
        spec: dict[str, Any],
        emit: Callable[[str | None], None],
        stop: threading.Event,
        done: threading.Event,
    ) -> int:
        """Create, start, stream, wait, remove (blocking; runs in a worker thread)."""
        try:
            container = self._client.containers.create(**spec)
            try:
                if stop.is_set():
                    return -1
                container.start()
                if stop.is_set():  # a kill sent before the start missed it
                    with contextlib.suppress(docker.errors.APIError):  # already exited
                        container.kill()
                for line in log_lines(container.logs(stream=True, follow=True)):
                    emit(line)
                exit_code = int(container.wait()["StatusCode"])
                if exit_code != 0:
                    container.reload()
                    if container.attrs.get("State", {}).get("OOMKilled"):
                        emit("cratekeeper: the container ran out of memory and was killed")
                return exit_code
            finally:
                with contextlib.suppress(docker.errors.NotFound):
                    container.remove(force=True, v=True)
        finally:
            done.set()
            emit(None)

    def _kill(self, name: str) -> None:
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            self._client.api.kill(name)

    def _image_path(self) -> str:
        """``PATH`` as the image sets it (pulling the image first if the policy says so)."""
        if self.pull == "always" or self.image not in self._paths:
            self._paths[self.image] = env_path(self._ensure_image())
        return self._paths[self.image]

    def _ensure_image(self) -> Any:
        try:
            if self.pull == "always":
                return self._client.images.pull(self.image)
            try:
                return self._client.images.get(self.image)
            except docker.errors.ImageNotFound:
                if self.pull == "never":
                    raise RunError(
                        f"docker runner: image {self.image} is not present on the engine and "
                        "the pull policy is 'never'; load it (docker load) or allow pulls"
                    ) from None
                return self._client.images.pull(self.image)
        except docker.errors.DockerException as exc:
            raise RunError(
                f"docker runner: cannot get image {self.image}: {explain(exc)}; check the "
                "image reference, the engine's registry access and DOCKER_HOST"
            ) from None


class _Secrets(NamedTuple):
    """The run's 0600 memory-backed files, each mounted read-only as a single file."""

    kubeconfig: Path
    snapshot: Path
    script: Path


def _bring_back_artifacts(request: ActionRequest, copy: Path) -> None:
    """The block's artifacts from the container's copy of the workspace into the export."""
    source = copy / request.artifacts_dir
    target = request.workspace_dir / request.artifacts_dir
    if not source.is_dir():
        return
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, symlinks=True)


def container_name(request: ActionRequest) -> str:
    """A readable, unique container name: workspace, block, action, short revision, nonce."""
    parts = (request.workspace, request.block, request.action, request.revision[:8])
    slug = "-".join(_NAME_UNSAFE.sub("-", part).strip("-.") for part in parts)
    return f"cratekeeper-{slug[:100]}-{secrets.token_hex(3)}"


async def _engine(worker: asyncio.Future[int]) -> int:
    """The worker's exit code, engine errors turned into :class:`RunError`."""
    try:
        return await worker
    except docker.errors.DockerException as exc:
        raise RunError(
            f"docker runner: the engine failed the run: {explain(exc)}; check that the "
            "engine is reachable and sees this host's files (bind mounts)"
        ) from None


def log_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Whole lines from the container's log stream (see :class:`LineSplitter`)."""
    lines = LineSplitter()
    for chunk in chunks:
        yield from lines.feed(chunk)
    yield from lines.close()
