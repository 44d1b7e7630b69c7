"""Fixtures that start real servers, shared by the whole suite (see tests/support/).

Also, before any test runs: helm and kubectl from the dev dependency that ships them
(tests/support/tools.py) go first on ``PATH``, so tests that look for them there find them; and
in CI (``CI=true``) any skip except an ``e2e`` test's fails the run (tests/support/ci_skips.py);
``--cpu-durations=N`` lists the tests costing the most CPU (tests/support/cpu_time.py); under
pytest-xdist the slowest tests start first (tests/support/slow_first.py).
"""

from __future__ import annotations

import os

import pytest

from tests.support.tools import ToolsUnavailable, kube_tools

pytest_plugins = [
    "tests.support.ci_skips",
    "tests.support.cpu_time",
    "tests.support.slow_first",
    "tests.support.git_servers",
    "tests.support.oci_registry",
    "tests.support.kube_emulator",
    "tests.support.kube_runner",
    "tests.support.docker_engine",
    "tests.support.http_recorder",
]


def pytest_configure(config: pytest.Config) -> None:
    try:
        tools = kube_tools()
    except ToolsUnavailable:
        return  # the tests that need them skip (and fail in CI) with the reason
    os.environ["PATH"] = f"{tools.directory}{os.pathsep}{os.environ.get('PATH', '')}"
