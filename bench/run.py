"""cratekeeper benchmarks: what one reconcile costs when there is little or nothing to do.

Run ``.venv/bin/python bench/run.py`` from the repository root; it prints a Markdown table
(copy it into bench/README.md with the date and machine). Measured, never asserted: these
numbers live here, not in the tests.

1. parse + plan of a workspace.poly with N blocks (wall time, peak memory by tracemalloc);
2. the Git check of an unmoved branch (``fetch`` with a warm cache): wall time and the git
   subprocesses it starts, against a first fetch;
3. ``cratekeeper plan`` between two commits of the example (a process start included).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import yaml

from controller.plan import AppliedBlock, config_hash, plan
from controller.source import GitRef, fetch, gitcmd
from controller.workspace import parse_workspace

ROOT = Path(__file__).resolve().parents[1]
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median and minimum wall time of ``fn`` in milliseconds."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), min(samples)


def workspace_text(blocks: int, version: str = "1.2.0") -> str:
    return yaml.safe_dump(
        {
            "name": "acme-production-1",
            "organization": "acme",
            "blocks": [
                {
                    "name": f"app-{i}",
                    "from": f"registry.acme-corp.com/acme/apps/app-{i}:{version}",
                    "config": {"namespace": f"app-{i}", "replicas": 2, "env": {"A": "b"}},
                }
                for i in range(blocks)
            ],
        }
    )


def bench_parse_plan(rows: list[list[str]]) -> None:
    for blocks in (10, 100, 1000):
        text = workspace_text(blocks)
        applied = [
            AppliedBlock(
                b.name, str(b.from_).replace("1.2.0", "1.1.0"), None, config_hash(b.config)
            )
            for b in parse_workspace(text).blocks
        ]

        def once(text: str = text, applied: list[AppliedBlock] = applied) -> None:
            plan(parse_workspace(text), applied)

        median, best = timed(once, repeat=7 if blocks < 1000 else 3)
        tracemalloc.start()
        once()
        peak = tracemalloc.get_traced_memory()[1] / 1024
        tracemalloc.stop()
        rows.append(
            [
                f"parse + plan, {blocks} blocks (all bumped)",
                f"{median:.1f}",
                f"{best:.1f}",
                f"{peak:.0f} KiB peak",
            ]
        )


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, check=True, capture_output=True)


def bench_git_check(rows: list[list[str]], work: Path) -> None:
    upstream = work / "upstream"
    shutil.copytree(ROOT / "examples" / "acme-production-1", upstream)
    git(upstream, "init", "-q", "-b", "main")
    git(upstream, "add", "-A")
    git(upstream, "commit", "-q", "-m", "initial")
    url = f"file://{upstream}"
    calls: list[str] = []
    real_run = gitcmd.run

    def counting(args: list[str], *rest: object, **kw: object) -> object:
        calls.append(args[0] if args else "?")
        return real_run(args, *rest, **kw)  # type: ignore[arg-type]

    gitcmd.run = counting  # type: ignore[assignment]
    try:
        cold_cache = work / "cold"
        start = time.perf_counter()
        first = fetch(url, GitRef.branch("main"), cold_cache)
        cold = (time.perf_counter() - start) * 1000
        cold_calls = len(calls)
        calls.clear()
        median, best = timed(
            lambda: fetch(url, GitRef.branch("main"), cold_cache, previous=first.sha), repeat=9
        )
        per_check = len(calls) // 9
        network = sorted({c for c in calls if c in ("ls-remote", "fetch")})
    finally:
        gitcmd.run = real_run  # type: ignore[assignment]
    rows.append(
        [
            "first fetch of a branch (cold cache)",
            f"{cold:.1f}",
            f"{cold:.1f}",
            f"{cold_calls} git processes",
        ]
    )
    rows.append(
        [
            "check of an unmoved branch (warm cache)",
            f"{median:.1f}",
            f"{best:.1f}",
            f"{per_check} git process{'es' * (per_check != 1)}; network: {', '.join(network)}",
        ]
    )


def bench_cli_plan(rows: list[list[str]], work: Path) -> None:
    repo = work / "plan"
    shutil.copytree(ROOT / "examples" / "acme-production-1", repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "1.1.0")
    poly = repo / "workspace.poly"
    poly.write_text(poly.read_text().replace(":1.1.0", ":1.2.0"))
    git(repo, "commit", "-q", "-am", "1.2.0")
    command = [sys.executable, "-m", "controller.cli", "plan", str(repo), "--base", "HEAD~1"]
    median, best = timed(lambda: subprocess.run(command, check=True, capture_output=True), repeat=5)
    rows.append(["`cratekeeper plan` (process start included)", f"{median:.1f}", f"{best:.1f}", ""])


def main() -> None:
    rows: list[list[str]] = []
    bench_parse_plan(rows)
    with tempfile.TemporaryDirectory(prefix="cratekeeper-bench-") as tmp:
        bench_git_check(rows, Path(tmp))
        bench_cli_plan(rows, Path(tmp))
    print("| what | median ms | best ms | notes |")
    print("| --- | ---: | ---: | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
