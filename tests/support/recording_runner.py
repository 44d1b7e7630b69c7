"""A :class:`~controller.runners.base.Runner` double that records every action it is asked to run.

Operator scenarios that are about the operator -- what runs, in which order, how often, what the
status says, what survives a restart -- need not pay a real ``ansible-playbook`` per run (issue 14
point 4, STYLE.md habit 12). This double sits behind the Runner protocol, the operator's one
boundary to the runners, and nothing of ours is monkeypatched. Real ``ansible-playbook`` stays
in the runner tests, one operator scenario and the demo test.

Each run is recorded (:class:`Recorded`: who asked, the request, when, how it ended) and ends as
the test scripts it: by default it succeeds with one changed task (a check-mode run finds drift
when its outcome names ``changed_tasks``). A script is an
:class:`Outcome` or a function of the request returning one (it may be ``async``, and may act on
the world, e.g. write to the emulated cluster, as the real playbook would). Runs can be held
until the test releases them, to observe the operator while a run is in flight::

    runner = RecordingRunner()
    Operator(settings, ..., runner_factory=runner.factory)
    await runner.until(2)                       # two runs started
    assert runner.pins() == [("app", "registry/acme/app:1.1.0", "deploy"), ...]
    runner.script(lambda request: Outcome("failed", failed_task="Deployment"))
    gate = runner.hold()                        # later runs wait ...
    gate.set()                                  # ... until released

The log lines of an outcome go through the same redaction and ``on_output`` path as a real
runner's (:class:`controller.runners.output.LogTail`), so secret handling stays observable.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from controller.runners.base import (
    ActionRequest,
    OutputHandler,
    Runner,
    RunResult,
    RunStatus,
    TaskCounts,
    redactions,
)
from controller.runners.output import LogTail

POLL = 0.02  # seconds between looks at a held gate or at the recorded runs


@dataclass(frozen=True)
class Outcome:
    """How a recorded run ends."""

    status: RunStatus = "succeeded"
    changed: int = 1
    failed_task: str | None = None
    log: tuple[str, ...] = ()
    delay: float = 0.0
    """Seconds the run takes (simulated, cancellable)."""
    changed_tasks: tuple[str, ...] = ()
    """The tasks that reported a change (in check mode: would change, i.e. drift)."""

    def counts(self) -> TaskCounts:
        failed = 0 if self.status == "succeeded" else 1
        return TaskCounts(ok=self.changed + 1, changed=self.changed, failed=failed)


Script = Outcome | Callable[[ActionRequest], Outcome | Awaitable[Outcome]]


@dataclass
class Recorded:
    """One run the double was asked for."""

    namespace: str | None
    name: str | None
    request: ActionRequest
    started: datetime
    result: RunResult | None = None
    cancelled: bool = False

    @property
    def finished(self) -> bool:
        return self.result is not None or self.cancelled


@dataclass
class RecordingRunner:
    """Records each run and ends it as scripted; one instance serves every Workspace."""

    outcome: Script = field(default_factory=Outcome)
    runs: list[Recorded] = field(default_factory=list)
    max_concurrent: int = 0
    """The most runs that were in flight at once (a revision's blocks run one at a time)."""
    _gate: threading.Event = field(default_factory=threading.Event, repr=False)
    _active: int = 0

    def __post_init__(self) -> None:
        self._gate.set()

    # -- wiring -----------------------------------------------------------------------------

    def factory(self, namespace: str, name: str, spec: object) -> Runner:
        """A ``RunnerFactory`` for the operator: the Workspace's runs are recorded as its own."""
        return _ForWorkspace(self, namespace, name)

    def script(self, outcome: Script) -> None:
        """How the next runs end."""
        self.outcome = outcome

    def hold(self) -> threading.Event:
        """Make runs wait (after being recorded) until the returned event is set."""
        self._gate.clear()
        return self._gate

    # -- the Runner protocol ----------------------------------------------------------------

    async def run(
        self, request: ActionRequest, on_output: OutputHandler | None = None
    ) -> RunResult:
        return await self._run(None, None, request, on_output)

    async def _run(
        self,
        namespace: str | None,
        name: str | None,
        request: ActionRequest,
        on_output: OutputHandler | None,
    ) -> RunResult:
        record = Recorded(namespace, name, request, started=datetime.now(UTC))
        self.runs.append(record)
        self._active += 1
        self.max_concurrent = max(self.max_concurrent, self._active)
        try:
            while not self._gate.is_set():
                await asyncio.sleep(POLL)
            outcome = self.outcome
            if callable(outcome):
                decided = outcome(request)
                outcome = await decided if inspect.isawaitable(decided) else decided
            if outcome.delay:
                await asyncio.sleep(outcome.delay)
            tail = LogTail(redactions(request), on_output)
            for line in outcome.log:
                tail.add(line)
            record.result = RunResult(
                status=outcome.status,
                counts=outcome.counts(),
                log_tail=tail.lines,
                started=record.started,
                finished=datetime.now(UTC),
                exit_code=0 if outcome.status == "succeeded" else 2,
                failed_task=outcome.failed_task,
                changed_tasks=outcome.changed_tasks,
            )
            return record.result
        except asyncio.CancelledError:
            record.cancelled = True
            raise
        finally:
            self._active -= 1

    # -- what the test looks at -------------------------------------------------------------

    def pins(self, name: str | None = None) -> list[tuple[str, str, str]]:
        """``(block, pin, action)`` of each run (of Workspace ``name`` only, if given)."""
        return [
            (r.request.block, r.request.pin, r.request.action)
            for r in self.runs
            if name is None or r.name == name
        ]

    async def until(self, count: int, *, finished: bool = False, timeout: float = 30.0) -> None:
        """Wait (bounded) until ``count`` runs have started (``finished``: have ended)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._count(finished) < count:
            if loop.time() > deadline:
                raise AssertionError(
                    f"expected {count} {'finished' if finished else 'started'} runs within "
                    f"{timeout:g}s; recorded: {self.pins()}"
                )
            await asyncio.sleep(POLL)

    def _count(self, finished: bool) -> int:
        return sum(1 for r in self.runs if r.finished or not finished)


@dataclass
class _ForWorkspace:
    """The double as one Workspace's runner: records who asked."""

    recorder: RecordingRunner
    namespace: str
    name: str

    async def run(
        self, request: ActionRequest, on_output: OutputHandler | None = None
    ) -> RunResult:
        return await self.recorder._run(self.namespace, self.name, request, on_output)
