"""What every worker of one operator shares: settings, the API, metrics, the runner factory,
the run and check slots, the artifact stores and the notifier."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from controller.notify import Notifier
from controller.operator.config import OperatorConfig
from controller.operator.metrics import OperatorMetrics
from controller.operator.slots import CheckSlots
from controller.operator.wiring import RunnerFactory
from controller.operator.writer import WorkspaceApi
from controller.runners.artifacts import ArtifactStore
from controller.secrets import AgeKeys
from controller.settings import Settings

ArtifactStoreFactory = Callable[[str, str], ArtifactStore]


@dataclass
class Shared:
    """What every worker of one operator shares."""

    settings: Settings
    config: OperatorConfig
    api: WorkspaceApi
    metrics: OperatorMetrics
    runner_factory: RunnerFactory
    base_keys: AgeKeys = field(default_factory=AgeKeys)
    run_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(4))
    """Held only while a block's action runs (``wiring.SlottedRunner``)."""
    check_slots: CheckSlots = field(default_factory=lambda: CheckSlots(8))
    """Held while the source is checked (ls-remote, fetch); a push's check goes first."""
    artifacts: ArtifactStoreFactory | None = None
    """``(namespace, name)`` of a Workspace → where its kept block artifacts live."""
    notifier: Notifier | None = None
    """Commit statuses and alerts (``spec.notify``), sent off the reconcile path."""
