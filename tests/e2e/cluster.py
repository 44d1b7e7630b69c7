"""kubectl against the cluster of ``KUBECONFIG``, and how the e2e tests find it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests.support.tools import ToolsUnavailable, kube_tools


@dataclass(frozen=True)
class Cluster:
    kubectl: str
    namespace: str
    release: str

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        proc = subprocess.run(
            [self.kubectl, *args], input=stdin, capture_output=True, text=True, timeout=300
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout if proc.returncode == 0 else proc.stderr

    def apply(self, manifest: dict[str, Any], *, check: bool = True) -> str:
        return self.run("apply", "-f", "-", stdin=yaml.safe_dump(manifest), check=check)

    def get(self, *args: str) -> Any:
        return json.loads(self.run("get", *args, "-o", "json"))


def _unavailable(reason: str) -> None:
    if os.environ.get("CRATEKEEPER_E2E_REQUIRED") == "1":
        pytest.fail(f"e2e required but {reason}")
    pytest.skip(reason)


def connect() -> Cluster:
    """The cluster of ``KUBECONFIG``; skips (or fails, when required) if there is none."""
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        _unavailable("KUBECONFIG is not set: e2e tests need a real cluster (docs/install.md)")
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        try:
            kubectl = str(kube_tools().kubectl)
        except ToolsUnavailable as exc:
            pytest.fail(f"no kubectl (it is in the dev extra): {exc}")
    assert kubectl
    try:
        proc = subprocess.run(
            [kubectl, "get", "--raw", "/readyz", "--request-timeout=10s"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        proc = None
    if proc is None or proc.returncode != 0:
        detail = proc.stderr.strip().splitlines()[-1:] if proc else ["timed out"]
        _unavailable(f"the cluster of KUBECONFIG={kubeconfig} is unreachable: {detail}")
    return Cluster(
        kubectl=kubectl,
        namespace=os.environ.get("CRATEKEEPER_E2E_NAMESPACE", "cratekeeper-system"),
        release=os.environ.get("CRATEKEEPER_E2E_RELEASE", "cratekeeper"),
    )
