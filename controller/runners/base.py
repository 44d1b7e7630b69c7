"""The runner protocol and the action environment every runner gives a block action.

All runners give the action the same view (DESIGN §5): the working directory is the workspace
root at the resolved commit, the block lies at ``blocks/<registry-path>/``, ``KUBECONFIG`` and
``K8S_AUTH_KUBECONFIG`` name the decrypted workspace kubeconfig and nothing else is inherited
(no ``~/.kube/config`` fallback: ``HOME`` is a private empty directory), and the extra-vars
``block`` (name, version, merged config), ``workspace`` (name, organization) and ``action`` are
passed as Polycrate passes them.
"""

from __future__ import annotations

import codecs
import json
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Protocol

import yaml

from controller.refs import BlockRef

RunStatus = Literal["succeeded", "failed", "timedOut"]
LOG_TAIL_LINES = 100
CALLBACK_DIR = Path(__file__).parent / "callback_plugins"
REDACTED = "***"


@dataclass(frozen=True)
class ActionRequest:
    """Everything a runner needs to run one action of one block instance."""

    workspace: str
    organization: str
    revision: str
    block: str
    ref: BlockRef
    action: str
    playbook: str
    config: Mapping[str, Any]
    workspace_dir: Path
    kubeconfig: bytes = field(repr=False)
    timeout: float = 1800.0
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Values of the block's secret config (secrets.poly): redacted from the log like the
    kubeconfig's credentials."""

    @property
    def block_dir(self) -> str:
        """The block's folder relative to the workspace root, as Polycrate lays it out."""
        return f"blocks/{self.ref.name}"

    @property
    def playbook_path(self) -> str:
        """The playbook relative to the workspace root."""
        return str(PurePosixPath(self.block_dir) / self.playbook)


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

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @classmethod
    def ended(
        cls,
        status: RunStatus,
        events: tuple[TaskCounts, str | None],
        tail: LogTail,
        started: datetime,
        exit_code: int | None,
        job_name: str | None = None,
    ) -> RunResult:
        """The result of a run that ended now: ``events`` as :func:`parse_events` gives them."""
        counts, failed_task = events
        return cls(
            status=status,
            counts=counts,
            log_tail=tail.lines,
            started=started,
            finished=datetime.now(UTC),
            exit_code=exit_code,
            job_name=job_name,
            failed_task=failed_task,
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


def extra_vars(request: ActionRequest) -> dict[str, Any]:
    """The extra-vars a block action sees, as Polycrate passes them."""
    return {
        "block": {
            "name": request.block,
            "from": str(request.ref),
            "version": request.ref.version,
            "config": dict(request.config),
        },
        "workspace": {"name": request.workspace, "organization": request.organization},
        "action": {"name": request.action},
    }


def snapshot_yaml(request: ActionRequest) -> str:
    """The extra-vars file (``-e @snapshot.yml``) content."""
    return yaml.safe_dump(extra_vars(request), sort_keys=True)


def action_env(
    request: ActionRequest, *, kubeconfig: str, home: str, events_file: str, path: str
) -> dict[str, str]:
    """The complete environment of the action: nothing from the controller leaks in."""
    env = {
        "PATH": path,
        "HOME": home,
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "KUBECONFIG": kubeconfig,
        "K8S_AUTH_KUBECONFIG": kubeconfig,
        "POLYCRATE_WORKSPACE": request.workspace,
        "POLYCRATE_BLOCK": request.block,
        "POLYCRATE_ACTION": request.action,
        "ANSIBLE_HOME": f"{home}/.ansible",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
        "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACK_DIR),
        "ANSIBLE_CALLBACKS_ENABLED": "cratekeeper_events",
        "CRATEKEEPER_EVENTS_FILE": events_file,
    }
    if (request.workspace_dir / "inventory.yml").is_file():
        env["ANSIBLE_INVENTORY"] = str(request.workspace_dir / "inventory.yml")
    return env


def ansible_command(ansible_playbook: str, request: ActionRequest, snapshot: str) -> list[str]:
    """The ansible-playbook command line, run from the workspace root."""
    return [ansible_playbook, "-e", f"@{snapshot}", request.playbook_path]


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


MAX_LINE = 16 * 1024  # characters kept of one output line (a debug of a huge var is one line)


class LineSplitter:
    """Whole lines from a byte stream cut anywhere (even inside a UTF-8 sequence); a line
    longer than :data:`MAX_LINE` is cut there and the rest of it dropped, so no output can
    exhaust memory or a buffer."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._dropping = False  # inside the rest of a line that was already cut

    def feed(self, chunk: bytes) -> list[str]:
        text = self._decoder.decode(chunk)
        lines: list[str] = []
        while text:
            head, newline, text = text.partition("\n")
            if not self._dropping:
                self._pending += head
                if len(self._pending) > MAX_LINE:
                    lines.append(self._pending[:MAX_LINE] + CUT)
                    self._pending, self._dropping = "", True
                    continue
            if newline:
                if not self._dropping:
                    lines.append(self._pending)
                self._pending, self._dropping = "", False
        return lines

    def close(self) -> list[str]:
        rest = self._pending + self._decoder.decode(b"", final=True)
        self._pending, self._dropping = "", False
        return [rest[:MAX_LINE] + CUT if len(rest) > MAX_LINE else rest] if rest else []


CUT = " … (line cut by cratekeeper)"


class LogTail:
    """The last :data:`LOG_TAIL_LINES` lines of a run's output, redacted as they arrive."""

    def __init__(self, secrets: Iterable[str], on_output: OutputHandler | None = None) -> None:
        self._secrets = sorted(set(secrets), key=len, reverse=True)
        self._lines: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self._on_output = on_output

    def add(self, line: str) -> None:
        clean = redact(line.rstrip("\n"), self._secrets)
        self._lines.append(clean)
        if self._on_output is not None:
            self._on_output(clean)

    @property
    def lines(self) -> tuple[str, ...]:
        return tuple(self._lines)


_COUNT_FIELDS = tuple(TaskCounts.__dataclass_fields__)


def parse_events(text: str) -> tuple[TaskCounts, str | None]:
    """Counts from the callback's stats line, and the first failed task's name.

    ``text`` is JSON lines of the ``cratekeeper_events`` callback: the whole events file (local
    and docker runners) or the two lines the kubernetes runner's pod copies into its termination
    message. Lines that are not such events are skipped, not errors: the kubelet keeps a
    termination message from its end, so its first line may be cut, and the text comes from the
    action's own container. The last stats line wins.
    """
    counts, failed_task = TaskCounts(), None
    for raw in text.splitlines():
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        if event.get("event") == "task" and event.get("status") == "failed" and not failed_task:
            failed_task = str(event.get("task"))
        if event.get("event") == "stats":
            try:
                counts = TaskCounts(**{k: int(event.get(k, 0)) for k in _COUNT_FIELDS})
            except (TypeError, ValueError):
                continue
    return counts, failed_task


def read_events(path: Path) -> tuple[TaskCounts, str | None]:
    """:func:`parse_events` of the events file; no file (the playbook never started): zeros."""
    if not path.is_file():
        return TaskCounts(), None
    return parse_events(path.read_text(encoding="utf-8", errors="replace"))
