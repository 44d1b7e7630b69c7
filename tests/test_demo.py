"""The README's first command: the demo tells the whole story and cleans up after itself."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from controller.sandbox.demo import run_demo

pytestmark = pytest.mark.skipif(
    shutil.which("docker-registry") is None and not Path("/usr/bin/docker-registry").exists(),
    reason="docker-registry is not installed (scripts/setup installs it)",
)


def test_the_demo_promotes_and_rolls_back_production() -> None:
    lines: list[str] = []
    run_demo(say=lines.append)
    text = "\n".join(lines)
    assert "EMULATED" in text  # it says plainly that the clusters are emulated
    steps = text.split("$ kubectl get workspaces")
    assert len(steps) == 4
    first, promoted, rolled_back = steps[1:]
    assert "acme-staging-1 (emulated) runs ghcr.io/acme/myapp:1.2.0" in first
    assert "acme-production-1 (emulated) runs ghcr.io/acme/myapp:1.1.0" in first
    assert "acme-production-1 (emulated) runs ghcr.io/acme/myapp:1.2.0" in promoted
    assert "app 1.2.0 → 1.1.0 (rollback)" in promoted.split("3. Rollback")[1]
    assert "acme-production-1 (emulated) runs ghcr.io/acme/myapp:1.1.0" in rolled_back
    header = first.splitlines()[1].split()
    assert header == ["NAME", "READY", "REVISION", "BLOCKS", "STATUS", "AGE"]
    assert lines[-1].startswith("Done in")
