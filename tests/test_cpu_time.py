"""``--cpu-durations`` ranks tests by the CPU they cost, child processes included."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest_plugins = ["pytester"]

TESTS = """
import subprocess, sys

def test_idle():
    pass

def test_busy_child():
    subprocess.run([sys.executable, "-c", "sum(range(3_000_000))"], check=True)
"""


def test_the_busiest_test_comes_first_with_its_child_processes_counted(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(test_tiny=TESTS)
    result = pytester.runpytest_inprocess("-p", "tests.support.cpu_time", "--cpu-durations=1")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        ["*CPU seconds*top 1*", "*s  test_tiny.py::test_busy_child", "*s  total over 2 tests"]
    )
    assert "test_idle" not in result.stdout.str()
