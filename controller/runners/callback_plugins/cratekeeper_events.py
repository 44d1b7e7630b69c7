"""Ansible callback: one JSON line per task result and the final stats, for cratekeeper.

Loaded through ``ANSIBLE_CALLBACK_PLUGINS`` next to the normal screen output, it writes to the
file named by ``CRATEKEEPER_EVENTS_FILE``: results are read from structured events, never
scraped from the human log. The stats line also counts the plays and those whose ``hosts``
matched no host, so a playbook that did nothing is not taken for a success. Only names and
counts are written, never module arguments or results, so nothing secret reaches the file.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: cratekeeper_events
    type: notification
    short_description: JSON lines of task outcomes and play stats for cratekeeper
    description: Writes task outcomes and final stats to $CRATEKEEPER_EVENTS_FILE.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "cratekeeper_events"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._path = os.environ.get("CRATEKEEPER_EVENTS_FILE")
        self._plays = 0
        self._hostless = 0  # plays whose hosts pattern matched nothing

    def _emit(self, event: dict[str, Any]) -> None:
        if not self._path:
            return
        with open(self._path, "a", encoding="utf-8") as handle:  # noqa: PTH123
            handle.write(json.dumps(event) + "\n")

    def _task(self, result: Any, status: str) -> None:
        changed = bool(result._result.get("changed", False))
        self._emit(
            {
                "event": "task",
                "status": status,
                "task": result._task.get_name(),
                "host": result._host.get_name(),
                "changed": changed,
            }
        )

    def v2_runner_on_ok(self, result: Any) -> None:
        self._task(result, "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._task(result, "ignored" if ignore_errors else "failed")

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._task(result, "skipped")

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._task(result, "unreachable")

    def v2_playbook_on_play_start(self, play: Any) -> None:
        self._plays += 1

    def v2_playbook_on_no_hosts_matched(self) -> None:
        self._hostless += 1

    def v2_playbook_on_stats(self, stats: Any) -> None:
        totals = {"ok": 0, "changed": 0, "failed": 0, "skipped": 0, "unreachable": 0}
        for host in stats.processed:
            summary = stats.summarize(host)
            for key in ("ok", "changed", "skipped", "unreachable"):
                totals[key] += summary.get(key, 0)
            totals["failed"] += summary.get("failures", 0)
        # plays/hostless let cratekeeper tell a playbook that matched no host from a success.
        self._emit({"event": "stats", **totals, "plays": self._plays, "hostless": self._hostless})
