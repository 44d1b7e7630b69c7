"""What the ``cratekeeper_events`` Ansible callback recorded of a run, and what it means."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from controller.runners.base import TaskCounts

_COUNT_FIELDS = tuple(TaskCounts.__dataclass_fields__)

NO_HOSTS = (
    "the playbook matched no host: none of its plays' 'hosts' patterns matched a host of the "
    "inventory (none was given, or it is empty), so nothing ran; give the block an inventory "
    "(the workspace's inventory.yml or the block's inventory.from) or target localhost"
)


@dataclass(frozen=True)
class Events:
    """The callback's structured record of a run (zeros when no playbook ran)."""

    counts: TaskCounts = field(default_factory=TaskCounts)
    failed_task: str | None = None
    playbooks: int = 0
    """Playbook runs that reached their end (a script action may run several, or none)."""
    hostless_playbooks: int = 0
    """Of those, the runs in which no play matched a host."""
    artifacts_written: int = 0
    """Files the action wrote under its artifacts folder, when the runner counts them (the
    kubernetes runner, which names them when their sealed block is lost)."""
    changed_tasks: tuple[str, ...] = ()
    """The names of the tasks that reported a change, first seen first, each once."""

    @property
    def nothing_ran(self) -> str | None:
        """Why a run that exited 0 did nothing, or ``None`` when it did something."""
        return NO_HOSTS if self.hostless_playbooks else None


def parse_events(text: str) -> Events:
    """The callback's JSON lines: counts summed over every stats line (one per playbook run),
    the first failed task's name, and the playbook runs whose plays matched no host.

    ``text`` is the whole events file (local and docker runners) or the lines the kubernetes
    runner's pod copies into its termination message. Lines that are not such events are
    skipped, not errors: the kubelet keeps a termination message from its end, so its first
    line may be cut, and the text comes from the action's own container.
    """
    totals = dict.fromkeys(_COUNT_FIELDS, 0)
    failed_task: str | None = None
    playbooks = hostless = written = 0
    changed: dict[str, None] = {}  # ordered, each name once (a task may change several hosts)
    for raw in text.splitlines():
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        if event.get("event") == "task" and event.get("status") == "failed" and not failed_task:
            failed_task = str(event.get("task"))
        if (event.get("event"), event.get("status"), event.get("changed")) == ("task", "ok", True):
            changed[str(event.get("task"))] = None
        if event.get("event") == "artifacts" and isinstance(event.get("written"), int):
            written = max(written, event["written"])
        if event.get("event") == "stats":
            try:
                counts = {k: int(event.get(k, 0)) for k in _COUNT_FIELDS}
                plays, without = int(event.get("plays", 1)), int(event.get("hostless", 0))
            except (TypeError, ValueError):
                continue
            for key, value in counts.items():
                totals[key] += value
            playbooks += 1
            hostless += 1 if without >= plays else 0
    return Events(TaskCounts(**totals), failed_task, playbooks, hostless, written, tuple(changed))


def read_events(path: Path) -> Events:
    """:func:`parse_events` of the events file; no file (no playbook ran): zeros."""
    if not path.is_file():
        return Events()
    return parse_events(path.read_text(encoding="utf-8", errors="replace"))
