"""In CI a skip is a failure: a pytest plugin (listed in the root conftest's ``pytest_plugins``).

A test that skips because a tool is missing or a server did not start proves nothing, and a
green run that hid nine skipped docker tests is how this plugin came about (issue 14). With
``CI=true`` in the environment, every skipped test (and every skipped module) fails the run --
exit status 1 and a section naming each one with its reason -- except tests marked ``e2e``: they
need a real cluster (``KUBECONFIG``) that CI does not have, as DESIGN §7 documents. Outside CI
skips are only listed, as ``-ra`` does. ``xfail`` is an expectation, not a skip: not counted.

Under pytest-xdist the workers relay their reports to the controller, which decides.
"""

from __future__ import annotations

import os

import pytest

ALLOWED_MARKER = "e2e"


def in_ci() -> bool:
    """CI systems (GitHub Actions, GitLab, ours) set ``CI=true``."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SkipsFailInCi(), "cratekeeper-ci-skips")


class SkipsFailInCi:
    """Collects unexpected skips; in CI, reports them and turns a passing run into a failure."""

    def __init__(self) -> None:
        self.skipped: list[tuple[str, str]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        expected = hasattr(report, "wasxfail") or ALLOWED_MARKER in report.keywords
        if report.skipped and not expected:
            self.skipped.append((report.nodeid, _reason(report.longrepr)))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.skipped:  # a module-level skip or importorskip: every test in it is gone
            self.skipped.append((report.nodeid, _reason(report.longrepr)))

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.skipped or not in_ci():
            return
        terminalreporter.section("skips fail the run in CI (CI=true)", red=True, bold=True)
        for nodeid, reason in self.skipped:
            terminalreporter.line(f"SKIPPED IN CI {nodeid} - {reason}", red=True)
        terminalreporter.line(
            f"{len(self.skipped)} skipped; only tests marked '{ALLOWED_MARKER}' may skip in CI. "
            "Install what the reason names (scripts/setup does) or fix the fixture.",
            red=True,
        )

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(session.config, "workerinput"):  # an xdist worker: the controller decides
            return
        passing = (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
        if self.skipped and in_ci() and session.exitstatus in passing:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _reason(longrepr: object) -> str:
    """The reason as pytest shows it: ``longrepr`` of a skip is ``(file, line, "Skipped: …")``."""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        file, line, message = longrepr
        return f"{str(message).removeprefix('Skipped: ')} ({file}:{int(line) + 1})"
    return str(longrepr)
