"""`cratekeeper reconcile` end to end: real Git, real registry, real Ansible, emulated cluster."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyrage
import pytest

from controller.cli import main
from tests.support.actions import SEED_NAME, push_app_deploy
from tests.support.docker_engine import DockerEngine
from tests.support.gitrepo import GitRepo
from tests.support.kube_emulator import KubeEmulator
from tests.support.oci_registry import Registry

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NAMESPACE = "acme-app-acme-production-1"


@pytest.fixture(scope="module")
def block_name(oci_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """app-deploy 1.1.0, 1.2.0 and a broken 1.3.0, pushed to the test registry."""
    return push_app_deploy(
        oci_registry.host,
        "app-deploy-e2e",
        ("1.1.0", "1.2.0", "1.3.0"),
        tmp_path_factory.mktemp("blocks"),
        broken=("1.3.0",),
    )


@pytest.fixture
def production(tmp_path: Path, block_name: str, kubeconfig: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "acme-production-1")
    shutil.copytree(EXAMPLES / "acme-production-1", repo.path, dirs_exist_ok=True)
    ws = repo.path / "workspace.poly"
    ws.write_text(ws.read_text().replace(SEED_NAME, block_name))
    shutil.copy(kubeconfig, repo.path / "artifacts/secrets/kubeconfig.yml")
    repo.commit("acme-production-1 on app-deploy 1.1.0")
    return repo


def pin(repo: GitRepo, version: str) -> str:
    ws = repo.path / "workspace.poly"
    text = ws.read_text()
    old = text.split("app-deploy-e2e:")[1].split()[0]
    ws.write_text(text.replace(f"app-deploy-e2e:{old}", f"app-deploy-e2e:{version}"))
    return repo.commit(f"app-deploy {old} -> {version}")


def reconcile(repo: GitRepo, registry: Registry, state: Path) -> tuple[int, dict[str, Any]]:
    code = main(
        ["reconcile", str(repo.path), "--state", str(state), "--insecure-registry", registry.host]
    )
    return code, json.loads(state.read_text())


def image(emulator: KubeEmulator) -> str:
    deployment = emulator.get("apps/v1/deployments", "acme-app", namespace=NAMESPACE)
    assert deployment is not None
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


def test_first_apply_noop_bump_and_revert(
    production: GitRepo,
    oci_registry: Registry,
    kube_emulator: KubeEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state_file = tmp_path / "state.json"

    code, state = reconcile(production, oci_registry, state_file)
    assert code == 0, capsys.readouterr()
    assert image(kube_emulator) == "ghcr.io/acme/myapp:1.1.0"
    assert state["lastAppliedRevision"] == production.head()
    (block,) = state["blocks"]
    assert (block["name"], block["version"], block["phase"]) == ("app", "1.1.0", "Applied")
    assert block["digest"].startswith("sha256:")
    assert state["history"][0]["changes"][0]["reason"] == "new"

    mark = kube_emulator.mark()
    code, again = reconcile(production, oci_registry, state_file)
    assert code == 0
    assert again["history"] == state["history"]  # nothing ran
    assert not kube_emulator.writes(since=mark)
    assert "already applied: nothing to do" in capsys.readouterr().out

    bumped = pin(production, "1.2.0")
    code, state = reconcile(production, oci_registry, state_file)
    assert code == 0
    assert image(kube_emulator) == "ghcr.io/acme/myapp:1.2.0"
    change = state["history"][0]["changes"][0]
    assert (change["from"].rsplit(":", 1)[1], change["to"].rsplit(":", 1)[1]) == ("1.1.0", "1.2.0")
    assert change["rollback"] is False
    assert state["lastAppliedRevision"] == bumped
    out = capsys.readouterr().out
    assert "running app deploy" in out and "succeeded in" in out  # progress as it happens

    production.revert()
    code, state = reconcile(production, oci_registry, state_file)
    assert code == 0
    assert image(kube_emulator) == "ghcr.io/acme/myapp:1.1.0"
    change = state["history"][0]["changes"][0]
    assert (change["reason"], change["rollback"]) == ("version", True)
    assert state["blocks"][0]["version"] == "1.1.0"


def test_a_failed_run_keeps_the_last_good_state(
    production: GitRepo,
    oci_registry: Registry,
    kube_emulator: KubeEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state_file = tmp_path / "state.json"
    assert reconcile(production, oci_registry, state_file)[0] == 0
    good = production.head()

    pin(production, "1.3.0")
    code, state = reconcile(production, oci_registry, state_file)
    assert code == 1
    assert "was not applied" in capsys.readouterr().err
    assert state["lastAppliedRevision"] == good
    assert state["lastAttemptedRevision"] == production.head()
    (block,) = state["blocks"]
    assert (block["version"], block["phase"]) == ("1.1.0", "Failed")
    entry = state["history"][0]
    assert entry["result"] == "Failed"
    assert "at task 'Refuse to deploy'" in entry["message"]
    assert image(kube_emulator) == "ghcr.io/acme/myapp:1.1.0"


def test_an_invalid_commit_is_recorded_and_runs_nothing(
    production: GitRepo,
    oci_registry: Registry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state_file = tmp_path / "state.json"
    assert reconcile(production, oci_registry, state_file)[0] == 0
    good = production.head()
    pin(production, "latest")
    code, state = reconcile(production, oci_registry, state_file)
    assert code == 1
    err = capsys.readouterr().err
    assert "InvalidWorkspace" in err and "workspace.poly:7" in err
    assert state["lastAppliedRevision"] == good
    assert state["history"][0]["result"] == "Invalid"
    assert state["blocks"][0]["version"] == "1.1.0"


def test_an_unreachable_registry_runs_nothing(
    production: GitRepo, oci_registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state_file = tmp_path / "state.json"
    ws = production.path / "workspace.poly"
    ws.write_text(ws.read_text().replace(oci_registry.host, "127.0.0.1:9"))
    production.commit("point at a closed port")
    code = main(
        [
            "reconcile",
            str(production.path),
            "--state",
            str(state_file),
            "--insecure-registry",
            "127.0.0.1:9",
        ]
    )
    assert code == 1
    assert "RegistryUnreachable" in capsys.readouterr().err
    state = json.loads(state_file.read_text())
    assert "lastAppliedRevision" not in state and state["blocks"] == []


def test_a_removed_block_runs_its_uninstall_with_its_last_config(
    production: GitRepo, oci_registry: Registry, kube_emulator: KubeEmulator, tmp_path: Path
) -> None:
    state_file = tmp_path / "state.json"
    assert reconcile(production, oci_registry, state_file)[0] == 0
    assert kube_emulator.get("v1/namespaces", NAMESPACE) is not None
    ws = production.path / "workspace.poly"
    ws.write_text(ws.read_text().split("blocks:")[0] + "blocks: []\n")
    production.commit("Remove the app from production")
    code, state = reconcile(production, oci_registry, state_file)
    assert code == 0
    assert state["blocks"] == []
    assert state["lastAppliedRevision"] == production.head()
    assert kube_emulator.get("v1/namespaces", NAMESPACE) is None


def test_an_undecryptable_kubeconfig_runs_nothing(
    production: GitRepo,
    oci_registry: Registry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    secrets = production.path / "artifacts/secrets"
    plaintext = (secrets / "kubeconfig.yml").read_bytes()
    recipient = pyrage.x25519.Identity.generate().to_public()
    (secrets / "kubeconfig.yml.age").write_bytes(pyrage.encrypt(plaintext, [recipient]))
    (secrets / "kubeconfig.yml").unlink()
    production.commit("Encrypt the kubeconfig to another key")
    monkeypatch.setenv("CRATEKEEPER_AGE_IDENTITY", str(pyrage.x25519.Identity.generate()))
    code, state = reconcile(production, oci_registry, tmp_path / "state.json")
    assert code == 1
    err = capsys.readouterr().err
    assert (
        "DecryptionFailed" in err and "cannot decrypt artifacts/secrets/kubeconfig.yml.age" in err
    )
    assert "token" not in err
    assert state["blocks"] == [] and state["history"][0]["result"] == "Failed"


def test_blocks_push_and_pull_from_the_command_line(
    oci_registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"{oci_registry.host}/acme/apps/cli-block"
    block = tmp_path / "block"
    shutil.copytree(EXAMPLES / "blocks" / "app-deploy", block)
    poly = block / "block.poly"
    poly.write_text(poly.read_text().replace(SEED_NAME, name))
    flags = ["--insecure-registry", oci_registry.host]
    assert main(["blocks", "push", str(block), f"{name}:1.2.0", *flags]) == 0
    assert f"pushed {name}:1.2.0@sha256:" in capsys.readouterr().out
    assert main(["blocks", "pull", f"{name}:1.2.0", str(tmp_path / "ws"), *flags]) == 0
    pulled = tmp_path / "ws" / "blocks" / oci_registry.host / "acme/apps/cli-block"
    assert (pulled / "deploy.yml").read_text() == (block / "deploy.yml").read_text()
    assert main(["blocks", "pull", f"{name}:9.9.9", str(tmp_path / "ws"), *flags]) == 1
    assert "error:" in capsys.readouterr().err


def test_two_reconciles_never_share_a_state_file(
    production: GitRepo, oci_registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import fcntl

    state_file = tmp_path / "state.json"
    with (tmp_path / "state.json.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        code = main(["reconcile", str(production.path), "--state", str(state_file)])
    assert code == 1
    assert "another cratekeeper reconcile is using" in capsys.readouterr().err
    assert not state_file.exists()


def test_a_registry_mirror_serves_the_seed_names_unchanged(
    oci_registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The seed's `registry.acme-corp.com/...` pins, served by a local mirror (as the demo does)."""
    mirror = ["--registry-mirror", f"registry.acme-corp.com={oci_registry.host}"]
    flags = [*mirror, "--insecure-registry", oci_registry.host]
    block = EXAMPLES / "blocks" / "app-deploy"
    assert main(["blocks", "push", str(block), f"{SEED_NAME}:1.2.0", *flags]) == 0
    assert main(["blocks", "pull", f"{SEED_NAME}:1.2.0", str(tmp_path), *flags]) == 0
    assert (tmp_path / "blocks" / SEED_NAME / "block.poly").is_file()
    assert (
        main(["blocks", "pull", f"{SEED_NAME}:1.2.0", str(tmp_path), "--registry-mirror", "x"]) == 1
    )
    assert "is not registry=host[:port]" in capsys.readouterr().err


def test_reconcile_can_run_the_action_in_a_docker_container(
    production: GitRepo,
    oci_registry: Registry,
    kube_emulator: KubeEmulator,
    docker_engine: DockerEngine,
    execution_image: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", docker_engine.base_url)
    state_file = tmp_path / "state.json"
    code = main(
        [
            "reconcile",
            str(production.path),
            "--state",
            str(state_file),
            "--insecure-registry",
            oci_registry.host,
            "--runner",
            "docker",
            "--image",
            execution_image,
            "--docker-network",
            "host",
        ]
    )
    assert code == 0
    assert image(kube_emulator) == "ghcr.io/acme/myapp:1.1.0"
    (entry,) = json.loads(state_file.read_text())["history"]
    assert entry["jobNames"][0].startswith("cratekeeper-acme-production-1")


def test_a_runner_that_cannot_start_is_a_failed_run_not_a_crash(
    production: GitRepo,
    oci_registry: Registry,
    docker_engine: DockerEngine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", docker_engine.base_url)
    state_file = tmp_path / "state.json"
    code = main(
        [
            "reconcile",
            str(production.path),
            "--state",
            str(state_file),
            "--insecure-registry",
            oci_registry.host,
            "--runner",
            "docker",
            "--image",
            "127.0.0.1:9/no/such-image:0",
        ]
    )
    assert code == 1
    state = json.loads(state_file.read_text())
    assert state["blocks"] == [] and "lastAppliedRevision" not in state
    assert state["history"][0]["result"] == "Failed"
    assert "image" in state["history"][0]["message"]


def test_switching_the_source_to_an_unrelated_branch_applies_it(
    production: GitRepo,
    oci_registry: Registry,
    kube_emulator: KubeEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRATEKEEPER_CACHE_DIR", str(tmp_path / "cache"))
    state_file = tmp_path / "state.json"

    def reconcile_ref(ref: str) -> int:
        return main(
            [
                "reconcile",
                f"file://{production.path}",
                "--ref",
                ref,
                "--state",
                str(state_file),
                "--insecure-registry",
                oci_registry.host,
            ]
        )

    assert reconcile_ref("main") == 0, capsys.readouterr()
    assert json.loads(state_file.read_text())["lastAppliedRef"] == "branch:main"

    production.git("checkout", "-q", "--orphan", "other")  # no history shared with main
    other = pin(production, "1.2.0")
    assert reconcile_ref("other") == 0, capsys.readouterr()
    state = json.loads(state_file.read_text())
    assert (state["lastAppliedRevision"], state["lastAppliedRef"]) == (other, "branch:other")
    assert image(kube_emulator) == "ghcr.io/acme/myapp:1.2.0"

    # On the same branch, rewritten history is still refused.
    production.git("checkout", "-q", "--orphan", "rewritten")
    production.commit("Rewritten history")
    production.git("branch", "-f", "other", "rewritten")
    assert reconcile_ref("other") == 1
    assert "the history was rewritten" in capsys.readouterr().err
    assert json.loads(state_file.read_text())["lastAppliedRevision"] == other


def test_an_unexpected_failure_is_a_recorded_internal_error_not_a_crash(
    production: GitRepo,
    oci_registry: Registry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    monkeypatch.setenv("CRATEKEEPER_WORK_DIR", str(tmp_path / "a-file" / "work"))
    code, state = reconcile(production, oci_registry, tmp_path / "state.json")
    assert code == 1
    assert "InternalError" in capsys.readouterr().err
    assert "lastAppliedRevision" not in state
    assert state["history"][0]["result"] == "Failed"
    assert "unexpected NotADirectoryError" in state["history"][0]["message"]


@pytest.mark.parametrize("where", ["missing-dir/state.json", "."])
def test_an_unusable_state_path_is_a_clear_error(
    production: GitRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    code = main(["reconcile", str(production.path), "--state", str(tmp_path / where)])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_status_shows_where_a_reconciled_workspace_stands(
    production: GitRepo, oci_registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state_file = tmp_path / "state.json"
    assert reconcile(production, oci_registry, state_file)[0] == 0
    pin(production, "1.2.0")
    assert reconcile(production, oci_registry, state_file)[0] == 0
    capsys.readouterr()
    assert main(["status", "--state", str(state_file)]) == 0
    summary, blocks, history = capsys.readouterr().out.split("\n\n")
    assert summary.splitlines()[1].split()[:3] == ["True", production.head()[:12], "1/1"]
    assert blocks.splitlines()[1].split()[:3] == ["app", "1.2.0", "Applied"]
    newest = history.splitlines()[1]
    assert "Succeeded" in newest and "app 1.1.0 -> 1.2.0" in newest
    assert main(["status", "--state", str(tmp_path / "none.json")]) == 1
    assert "no state file" in capsys.readouterr().err
