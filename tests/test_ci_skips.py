"""In CI (``CI=true``) a skip fails the run, naming the test and its reason; e2e tests may skip."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest_plugins = ["pytester"]

TESTS = """
import pytest

def test_passes():
    pass

def test_needs_a_tool():
    pytest.skip("frobnicate is not installed")

@pytest.mark.e2e
def test_needs_a_cluster():
    pytest.skip("KUBECONFIG is not set")

@pytest.mark.xfail(reason="known bug")
def test_known_bug():
    assert False
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # the inner runs stay light
    pytester.makeini("[pytest]\nmarkers =\n    e2e: needs a real cluster\n")
    pytester.makepyfile(test_tiny=TESTS)
    return pytester


def run(suite: pytest.Pytester, *args: str) -> pytest.RunResult:
    """pytest in this process (fast), with only this plugin of ours; xdist runs a subprocess."""
    options = ("-p", "tests.support.ci_skips", "-p", "no:cacheprovider", *args)
    if "-n" in args:
        return suite.runpytest_subprocess(*options)
    return suite.runpytest_inprocess(*options)


def test_a_skip_fails_the_run_in_ci_naming_the_test_and_its_reason(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    result = run(suite)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*SKIPPED IN CI test_tiny.py::test_needs_a_tool - frobnicate is not installed*"]
    )
    assert "test_needs_a_cluster" not in result.stdout.str().split("skips fail the run")[1]
    assert "test_known_bug" not in result.stdout.str().split("skips fail the run")[1]


def test_e2e_skips_and_xfails_alone_keep_a_ci_run_green(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    result = run(suite, "-k", "not needs_a_tool")
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1, skipped=1, xfailed=1)


def test_outside_ci_a_skip_is_listed_but_the_run_passes(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    result = run(suite, "-ra")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["SKIPPED *frobnicate is not installed"])


def test_a_skipped_module_fails_the_run_in_ci(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    suite.makepyfile(test_gone="import pytest\npytest.importorskip('no_such_module_here')\n")
    result = run(suite, "test_gone.py")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*SKIPPED IN CI test_gone.py - *no_such_module_here*"])


def test_under_xdist_the_controller_fails_the_run_for_a_worker_s_skip(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    result = run(suite, "-p", "xdist", "-n", "2")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*SKIPPED IN CI test_tiny.py::test_needs_a_tool - *"])
