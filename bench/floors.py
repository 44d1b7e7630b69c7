"""The floors of a no-op check, side by side in the same run (issue 11 points 3 and 7).

One ``git ls-remote`` process (what any check must at least do), one no-op
``ansible-pull --only-if-changed`` (the tool people compare with), and one no-op
``cratekeeper reconcile`` process (the CLI's whole start-up included), all of the same
repository over ``git daemon``. Wall time and CPU (the process and its children), medians.

The ``cratekeeper`` process runs as an installed one does: with its modules' bytecode cached
(``pip install`` compiles it). ``PYTHONDONTWRITEBYTECODE`` in the caller's environment would
otherwise make every start compile the source tree's modules again; the cache goes into the
benchmark's directory, not the source tree.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from fixture import Fixture

REPEAT = 9


def measure(command: list[str], env: dict[str, str], repeat: int = REPEAT) -> tuple[float, float]:
    """Median wall and median CPU (ms) of ``command`` as a child process."""
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        walls.append((time.perf_counter() - start) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
    return statistics.median(walls), statistics.median(cpus)


def floors(fx: Fixture) -> list[list[str]]:
    url = fx.url("template.git")
    env = {**os.environ, "CRATEKEEPER_CACHE_DIR": str(fx.work / "cli-cache")}
    ls_wall, ls_cpu = measure(["git", "ls-remote", url, "refs/heads/main"], env)

    pull_dir = fx.work / "ansible-pull"
    ansible_pull = shutil.which("ansible-pull") or str(
        Path(sys.executable).with_name("ansible-pull")
    )
    pull = [
        ansible_pull,
        "-U",
        url,
        "-d",
        str(pull_dir),
        "-i",
        "localhost,",
        "--only-if-changed",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
    ]
    subprocess.run(pull, env=env, check=True, capture_output=True)  # the first pull clones
    pull_wall, pull_cpu = measure(pull, env, repeat=3)  # seconds each

    state = fx.work / "cli-state.json"
    reconcile = [
        sys.executable,
        "-m",
        "controller.cli",
        "reconcile",
        url,
        "--state",
        str(state),
        "--insecure-registry",
        fx.registry.host,
    ]
    cli_env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cli_env["PYTHONPYCACHEPREFIX"] = str(fx.work / "pycache")
    subprocess.run(reconcile, env=cli_env, check=True, capture_output=True)  # applies, compiles
    cli_wall, cli_cpu = measure(reconcile, cli_env)

    def row(what: str, wall: float, cpu: float) -> list[str]:
        return [
            what,
            f"{wall:.1f} ms wall ({wall / ls_wall:.1f}x), {cpu:.1f} ms CPU ({cpu / ls_cpu:.0f}x)",
        ]

    return [
        row("`git ls-remote` (the floor; ratios below are to it)", ls_wall, ls_cpu),
        row("`ansible-pull --only-if-changed`, no-op", pull_wall, pull_cpu),
        row("`cratekeeper reconcile`, no-op, as a process", cli_wall, cli_cpu),
    ]
