"""What a runner is given and what it gives back: the request, the contract, the result.

A runner runs one action of one block instance (:class:`ActionRequest`) and follows it to its
end (:class:`RunResult`). Every runner gives the action Polycrate's runtime contract (DESIGN §2,
built by :mod:`controller.runners.contract`): the block's workdir as working directory, the
snapshot as extra-vars and as ``POLYCRATE_WORKSPACE_SNAPSHOT_YAML``, Polycrate's environment,
the decrypted workspace kubeconfig and nothing of the controller's own environment. What the
snapshot holds and how script lines render is the model's business: the pipeline passes a
:class:`RunContract` that the runner asks once it knows where things are (:class:`RunPaths`),
because those paths differ per runner (a temp directory locally, ``/workspace`` in a container).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal, Protocol

import yaml

from controller.errors import CratekeeperError
from controller.refs import BlockRef

if TYPE_CHECKING:
    from controller.runners.events import Events
    from controller.runners.output import LogTail

RunStatus = Literal["succeeded", "failed", "timedOut"]
REDACTED = "***"


@dataclass(frozen=True)
class RunPaths:
    """Where things are, as the action sees them (each runner fills it for its own layout)."""

    root: str
    """The workspace root (local: the exported temp directory; containers: ``/workspace``)."""
    kubeconfig: str
    """The decrypted workspace kubeconfig file."""
    snapshot: str
    """The snapshot YAML file (``POLYCRATE_WORKSPACE_SNAPSHOT_YAML``, ``-e @``)."""

    def under_root(self, relative: str) -> str:
        """``relative`` (a path inside the workspace) as the action sees it."""
        return str(PurePosixPath(self.root) / relative) if relative else self.root


class RunContract(Protocol):
    """The model's half of the runtime contract (built by the pipeline from the resolved
    workspace): what the action sees, given where the runner put things."""

    def snapshot(self, paths: RunPaths) -> Mapping[str, Any]:
        """Polycrate's ``WorkspaceSnapshot``: the extra-vars and the snapshot file's content."""
        ...

    def script(self, paths: RunPaths) -> tuple[str, ...]:
        """The rendered lines of a script action (``()`` for a playbook action)."""
        ...


class StaticContract:
    """A :class:`RunContract` of fixed values that ignore the paths (tests, simple callers)."""

    def __init__(self, snapshot: Mapping[str, Any] | None = None, script: Iterable[str] = ()):
        self._snapshot = dict(snapshot or {})
        self._script = tuple(script)

    def snapshot(self, paths: RunPaths) -> Mapping[str, Any]:
        return self._snapshot

    def script(self, paths: RunPaths) -> tuple[str, ...]:
        return self._script

    def __repr__(self) -> str:
        return "StaticContract(...)"  # the snapshot may hold decrypted secrets


@dataclass(frozen=True)
class ActionRequest:
    """Everything a runner needs to run one action of one block instance.

    Paths are relative to the workspace root with ``/`` separators: the runner decides where
    the root is for the action (:class:`RunPaths`).
    """

    workspace: str
    organization: str
    revision: str
    block: str
    """The instance name (Polycrate allows ``/`` in it)."""
    ref: BlockRef | None
    """The registry pin (the kubernetes runner pulls it by digest); ``None`` for a local or
    inline block, which lives in the workspace repository itself."""
    action: str
    playbook: str | None
    """The playbook, relative to the block's workdir; exactly one of this and ``has_script``."""
    has_script: bool
    """A script action: its lines come from :meth:`RunContract.script`."""
    config: Mapping[str, Any]
    """The block's merged config (defaults < parents < instance < secrets.poly)."""
    workspace_dir: Path
    """The exported workspace on the controller's disk."""
    workdir: str
    """The block's workdir relative to the workspace root (``blocks/<name>``)."""
    contract: RunContract = field(repr=False)
    kubeconfig: bytes = field(repr=False)
    inventory: str | None = None
    """The inventory file relative to the workspace root (``ANSIBLE_INVENTORY``); ``None``:
    the workspace's ``inventory.yml`` when the export has one."""
    extraenv: Mapping[str, str] = field(default_factory=dict)
    """The block's ``extraenv`` (Polycrate passes it to the action as is)."""
    artifacts: str = ""
    """The block's artifacts directory relative to the root; empty: ``artifacts/blocks/<block>``."""
    timeout: float = 1800.0
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Values of the block's secret config (secrets.poly): redacted from the log like the
    kubeconfig's credentials."""
    check: bool = False
    """Ansible check mode (``--check --diff``): report what would change, change nothing
    (drift detection, previews). Only a playbook action has such a mode."""
    digest: str | None = None
    """A registry block's manifest digest as the pipeline pulled it, when ``ref`` pins none
    (a tag): the kubernetes runner's pod pulls exactly that."""

    def __post_init__(self) -> None:
        if (self.playbook is None) == (not self.has_script):
            raise ValueError(
                f"block {self.block!r} action {self.action!r}: exactly one of a playbook or a "
                "script is required"
            )
        if self.check and self.has_script:  # a script has no dry run: it would really run
            raise ValueError(
                f"block {self.block!r} action {self.action!r}: a script action has no check mode"
            )

    @property
    def artifacts_dir(self) -> str:
        """The block's artifacts directory relative to the workspace root."""
        return self.artifacts or f"artifacts/blocks/{self.block}"

    @property
    def inventory_file(self) -> str | None:
        """The inventory relative to the root: the request's, else ``inventory.yml`` if the
        workspace has one (Polycrate's workspace inventory), else none."""
        if self.inventory:
            return self.inventory
        return "inventory.yml" if (self.workspace_dir / "inventory.yml").is_file() else None

    @property
    def pin(self) -> str:
        """The block reference for labels and messages: the registry pin, else ``local``."""
        return str(self.ref) if self.ref is not None else "local"


@dataclass(frozen=True)
class TaskCounts:
    """Per-task outcome counts, from Ansible's structured stats."""

    ok: int = 0
    changed: int = 0
    failed: int = 0
    skipped: int = 0
    unreachable: int = 0


@dataclass(frozen=True)
class RunResult:
    """The outcome of one action run."""

    status: RunStatus
    counts: TaskCounts
    log_tail: tuple[str, ...]
    started: datetime
    finished: datetime
    exit_code: int | None = None
    job_name: str | None = None
    failed_task: str | None = None
    failure_reason: str | None = None
    """Why a run that exited 0 still failed (a playbook whose plays matched no host), in words
    a status message can carry as is."""
    changed_tasks: tuple[str, ...] = ()
    """The names of the tasks that reported a change (in check mode: would change), in order."""
    error: CratekeeperError | None = None
    """Why the run failed when that is not the action's doing (its reason, e.g.
    ``ArtifactsNotKept``, goes into the status instead of ``RunFailed``)."""

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @classmethod
    def ended(
        cls,
        status: RunStatus,
        events: Events,
        tail: LogTail,
        started: datetime,
        exit_code: int | None,
        job_name: str | None = None,
    ) -> RunResult:
        """The result of a run that ended now, judged with its callback ``events``: a run that
        exited 0 but whose playbooks matched no host failed (issue 9 point 4)."""
        reason = events.nothing_ran if status == "succeeded" else None
        if reason is not None:
            status = "failed"
            tail.add(f"cratekeeper: {reason}")
        return cls(
            status=status,
            counts=events.counts,
            log_tail=tail.lines,
            started=started,
            finished=datetime.now(UTC),
            exit_code=exit_code,
            job_name=job_name,
            failed_task=events.failed_task,
            failure_reason=reason,
            changed_tasks=events.changed_tasks,
        )


def process_status(exit_code: int | None, timed_out: bool) -> RunStatus:
    """A process's outcome: stopped at its deadline, exited 0, or anything else."""
    if timed_out:
        return "timedOut"
    return "succeeded" if exit_code == 0 else "failed"


OutputHandler = Callable[[str], None]


class Runner(Protocol):
    """Runs one action and follows it to the end (success, failure or timeout)."""

    async def run(
        self, request: ActionRequest, on_output: OutputHandler | None = None
    ) -> RunResult:
        """Run the action; never raises for a failing playbook (that is a result)."""
        ...


_SECRET_KEYS = re.compile(
    r"^(token|password|client-key-data|client-certificate-data|secret|client-secret|"
    r"access-token|id-token|refresh-token)$"
)


def kubeconfig_secrets(kubeconfig: bytes) -> list[str]:
    """The credential values in a kubeconfig, so they can be redacted from any log."""
    try:
        doc = yaml.safe_load(kubeconfig)
    except yaml.YAMLError:
        return []
    found: list[str] = []

    def walk(node: object, in_env: bool = False) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                secret = _SECRET_KEYS.match(str(key)) or (in_env and key == "value")
                if isinstance(value, str) and secret and len(value) >= 4:
                    found.append(value)
                else:  # exec plugins' env (e.g. AWS_SECRET_ACCESS_KEY) holds credentials too
                    walk(value, in_env or key == "env")
        elif isinstance(node, list):
            for item in node:
                walk(item, in_env)

    walk(doc)
    return found


def redactions(request: ActionRequest) -> list[str]:
    """What every runner redacts from a run's log: kubeconfig credentials and secret config."""
    return [*kubeconfig_secrets(request.kubeconfig), *request.secrets]


def redact(line: str, secrets: Iterable[str]) -> str:
    """``line`` with every secret value replaced by ``***``."""
    for secret in secrets:
        if secret:
            line = line.replace(secret, REDACTED)
    return line
