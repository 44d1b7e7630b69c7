"""The slowest tests start first under pytest-xdist: a pytest plugin (root conftest).

With ``-n 2 --dist loadgroup`` xdist hands the tests to the workers in collection order (each
test is its own unit: the ``xdist_group`` marker has no effect with pytest 9.2, see
tests/support/docker_engine.py), so a 15-second test collected last keeps one worker busy while
the other has nothing left: the suite's tail. Started first (longest first, the classic
scheduling rule), the long tests overlap each other and the short ones fill the gaps at the
end. Each xdist worker reorders its collection the same way (the controller needs identical
collections); without xdist the collection order stays.

The list, ``tests/support/slowest.txt``, is measured, not guessed: the wall seconds (setup +
call + teardown) of ``pytest -n 2 --dist loadgroup --durations=40`` on a quiet 2-core
machine. Refresh it when the slowest tests change; a name that no longer matches a test is a
warning at collection (the order is an optimisation, never a reason to fail a run).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

LIST = Path(__file__).with_name("slowest.txt")


def read_list(path: Path = LIST) -> list[str]:
    """The test ids in ``path``, slowest first: one a line; ``#`` starts a comment."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def priority(slowest: Sequence[str]) -> Callable[[str], int]:
    """A sort key for test ids: those in ``slowest`` first, in its order, then all others (a
    stable sort keeps their order)."""
    rank = {nodeid: index for index, nodeid in enumerate(slowest)}
    return lambda nodeid: rank.get(nodeid, len(rank))


def unknown(nodeids: Sequence[str], slowest: Sequence[str]) -> list[str]:
    """The names in ``slowest`` whose file was collected but that match no collected test."""
    collected = set(nodeids)
    files = {nodeid.split("::", 1)[0] for nodeid in nodeids}
    return [n for n in slowest if n not in collected and n.split("::", 1)[0] in files]


@pytest.hookimpl(tryfirst=True)  # before -k/-m deselect: a deselected test is not stale
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not hasattr(config, "workerinput"):  # not an xdist worker: keep the collection order
        return
    slowest = read_list()
    whole_files = all(Path(arg).is_dir() for arg in config.args)  # not `file.py::one_test`
    stale = unknown([item.nodeid for item in items], slowest) if whole_files else []
    if stale and config.workerinput.get("workerid") == "gw0":  # once, not once per worker
        warnings.warn(
            pytest.PytestConfigWarning(
                "tests/support/slow_first.py names tests that do not exist (renamed? "
                f"measure again and update tests/support/slowest.txt): {', '.join(stale)}"
            ),
            stacklevel=1,
        )
    key = priority(slowest)
    items.sort(key=lambda item: key(item.nodeid))
