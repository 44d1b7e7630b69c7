"""Under pytest-xdist the measured slowest tests start first, so they do not form the tail."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.slow_first import LIST, priority, read_list, unknown


def test_the_listed_tests_go_first_in_the_listed_order_and_the_others_keep_theirs() -> None:
    collected = ["a.py::one", "a.py::slow", "b.py::two", "b.py::slowest", "c.py::three"]
    slowest = ["b.py::slowest", "a.py::slow", "gone.py::renamed"]
    assert sorted(collected, key=priority(slowest)) == [
        "b.py::slowest",
        "a.py::slow",
        "a.py::one",
        "b.py::two",
        "c.py::three",
    ]


def test_a_listed_name_matching_no_test_of_a_collected_file_is_stale() -> None:
    collected = ["a.py::one", "b.py::two[x]"]
    slowest = ["a.py::one", "a.py::renamed", "b.py::two[y]", "other.py::not_collected"]
    assert unknown(collected, slowest) == ["a.py::renamed", "b.py::two[y]"]


def test_the_checked_in_list_names_distinct_tests_with_comments_left_out(tmp_path: Path) -> None:
    listed = tmp_path / "slowest.txt"
    listed.write_text("# measured\ntests/a.py::slow  # 12 s\n\ntests/b.py::slower[x]\n")
    assert read_list(listed) == ["tests/a.py::slow", "tests/b.py::slower[x]"]
    slowest = read_list(LIST)
    assert len(slowest) == len(set(slowest)) >= 10
    assert all(re.fullmatch(r"tests/[\w/]+\.py::\w+(\[.+\])?", nodeid) for nodeid in slowest)
