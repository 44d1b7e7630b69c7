"""The operator's knobs, taken from the process :class:`~controller.settings.Settings`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from controller.settings import Settings


@dataclass(frozen=True)
class OperatorConfig:
    """How the operator runs; every value has a production default."""

    kubeconfig: Path | None = None
    """The management cluster's kubeconfig; in-cluster service account or $KUBECONFIG if unset."""
    max_concurrent_runs: int = 4
    """Block runs in flight at once, across every Workspace (a run slot is held only while a
    block's action runs: never during a Git check, parse, plan or pull)."""
    max_concurrent_checks: int = 8
    """Git checks (ls-remote, fetch) in flight at once, across every Workspace."""
    retry_base: float = 10.0
    """Seconds before the first retry of a failed revision; doubles per failure."""
    retry_max: float = 600.0
    """The longest wait between two retries of the same failed revision."""
    shutdown_grace: float = 300.0
    """On shutdown, how long a run in flight may take to finish and record its result."""
    work_dir: Path | None = None
    """Where workspaces are exported for a run (a private temporary directory if unset)."""

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> OperatorConfig:
        """The operator fields of ``settings`` (those it has), then ``overrides``."""
        config = cls()
        found = {
            name: getattr(settings, name)
            for name in (
                "kubeconfig",
                "max_concurrent_runs",
                "max_concurrent_checks",
                "retry_base",
                "retry_max",
                "shutdown_grace",
                "work_dir",
            )
            if getattr(settings, name, None) is not None
        }
        return replace(config, **found, **overrides)  # type: ignore[arg-type]

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th consecutive failure (capped, no hot loop)."""
        return float(min(self.retry_max, self.retry_base * 2 ** max(0, attempts - 1)))
