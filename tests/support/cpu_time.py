"""``--cpu-durations=N``: the N tests that cost the most CPU, and the suite's total.

On a shared, busy machine wall-clock durations (``--durations``) say more about the neighbours
than about the tests; CPU seconds (this process's and its finished children's, user + system,
from ``getrusage``) are what a quiet 2-core machine will need. Each phase's CPU travels in the
report's ``user_properties`` (``("cpu", seconds)``), so under pytest-xdist the controller sums
the workers'. CPU of in-process server threads (the emulated API, the Git HTTP server) counts
toward the test that was running; servers in child processes count only when they are reaped.
"""

from __future__ import annotations

import resource
from collections import defaultdict
from collections.abc import Generator

import pytest

_PHASE = pytest.StashKey[dict[str, float]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("terminal reporting").addoption(
        "--cpu-durations",
        type=int,
        default=None,
        metavar="N",
        help="show the N tests using the most CPU (0: all) and the total CPU of the tests",
    )


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _measured(item: pytest.Item, when: str) -> Generator[None, object, object]:
    start = _cpu()
    try:
        return (yield)
    finally:
        item.stash.setdefault(_PHASE, {})[when] = _cpu() - start


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _measured(item, "setup"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _measured(item, "call"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _measured(item, "teardown"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    seconds = item.stash.get(_PHASE, {}).get(call.when)
    if seconds is not None:
        report.user_properties.append(("cpu", seconds))
    return report


class _Totals:
    def __init__(self) -> None:
        self.by_test: defaultdict[str, float] = defaultdict(float)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for key, value in report.user_properties:
            if key == "cpu" and isinstance(value, float):
                self.by_test[report.nodeid] += value

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        count = terminalreporter.config.getoption("cpu_durations")
        ranked = sorted(self.by_test.items(), key=lambda kv: kv[1], reverse=True)
        terminalreporter.section(f"CPU seconds (this process and its children), top {count}")
        for nodeid, seconds in ranked[: count or None]:
            terminalreporter.line(f"{seconds:8.2f}s  {nodeid}")
        total = sum(self.by_test.values())
        terminalreporter.line(f"{total:8.2f}s  total over {len(ranked)} tests")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("cpu_durations") is not None and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_Totals(), "cratekeeper-cpu-durations")
