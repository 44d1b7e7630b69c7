"""Registry credentials from docker credential helpers, in the CLI (never in the operator).

A real helper program (a small shell script named ``docker-credential-<name>``) on PATH, the
real registry with htpasswd basic auth, and the real ``cratekeeper blocks push|pull`` command.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from controller.cli import main
from controller.errors import RegistryAuthError
from controller.registry import DockerConfig, RegistryClient, RegistryOptions, pull_block
from controller.registry.helpers import run_helper
from tests.support.oci_registry import PASSWORD, USER, Registry
from tests.support.registry_blocks import make_block, new_ref


def install_helper(bin_dir: Path, name: str, answers: dict[str, tuple[str, str]]) -> Path:
    """``docker-credential-<name>``: answers ``get`` for the hosts in ``answers``; logs stdin."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    log = bin_dir / f"{name}.log"
    lines = []
    for host, (user, secret) in answers.items():
        answer = json.dumps({"ServerURL": host, "Username": user, "Secret": secret})
        lines.append(f"  \"{host}\") printf '%s' '{answer}' ;;\n")
    cases = "".join(lines)
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(
        "#!/bin/sh\n"
        '[ "$1" = get ] || exit 2\n'
        "read -r host\n"
        f'echo "$host" >> "{log}"\n'
        'case "$host" in\n'
        f"{cases}"
        '  *) echo "credentials not found in native keychain"; exit 1 ;;\n'
        "esac\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return log


@pytest.fixture
def helper_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path('/usr/bin')}:{Path('/bin')}")
    return bin_dir


def write_config(path: Path, document: dict[str, object]) -> Path:
    path.write_text(json.dumps(document))
    return path


def cli(*argv: str) -> int:
    return main(list(argv))


def test_cli_pushes_and_pulls_with_credentials_from_the_creds_store(
    oci_registry_basic_auth: Registry,
    helper_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    host = oci_registry_basic_auth.host
    log = install_helper(helper_path, "cktest", {host: (USER, PASSWORD)})
    config = write_config(tmp_path / "config.json", {"auths": {host: {}}, "credsStore": "cktest"})
    ref = new_ref(host)
    src = make_block(tmp_path / "src", ref.name, ref.tag)
    flags = ("--docker-config", str(config), "--insecure-registry", host)

    assert cli("blocks", "push", str(src), str(ref), *flags) == 0
    assert cli("blocks", "pull", str(ref), str(tmp_path / "ws"), *flags) == 0

    assert (tmp_path / "ws" / "blocks" / ref.registry / ref.repository / "block.poly").is_file()
    assert set(log.read_text().split()) == {host}  # the registry host on stdin, as docker does
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err


def test_cred_helpers_win_over_the_creds_store_and_auths(
    oci_registry_basic_auth: Registry,
    helper_path: Path,
    tmp_path: Path,
) -> None:
    host = oci_registry_basic_auth.host
    right = install_helper(helper_path, "right", {host: (USER, PASSWORD)})
    wrong = install_helper(helper_path, "wrong", {host: (USER, "not-it")})
    config = write_config(
        tmp_path / "config.json",
        {
            "auths": {host: {"username": USER, "password": "not-it-either"}},
            "credsStore": "wrong",
            "credHelpers": {host: "right"},
        },
    )
    ref = new_ref(host)
    src = make_block(tmp_path / "src", ref.name, ref.tag)
    flags = ("--docker-config", str(config), "--insecure-registry", host)
    assert cli("blocks", "push", str(src), str(ref), *flags) == 0
    assert right.read_text().split() == [host]
    assert not wrong.exists()


def test_a_helper_without_credentials_for_the_host_means_anonymous(
    oci_registry_basic_auth: Registry,
    helper_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    host = oci_registry_basic_auth.host
    install_helper(helper_path, "empty", {})
    config = write_config(tmp_path / "config.json", {"credsStore": "empty"})
    ref = new_ref(host)
    flags = ("--docker-config", str(config), "--insecure-registry", host)
    assert cli("blocks", "pull", str(ref), str(tmp_path / "ws"), *flags) == 1
    assert f"registry {host} requires credentials" in capsys.readouterr().err


def test_a_helper_missing_from_path_is_an_error_that_says_so(
    helper_path: Path, tmp_path: Path
) -> None:
    config = DockerConfig.from_file(
        write_config(tmp_path / "config.json", {"credsStore": "nosuch"}),
        helpers=run_helper,
    )
    with pytest.raises(RegistryAuthError, match="docker-credential-nosuch is not on PATH"):
        config.for_registry("registry.example.com")


def test_the_operator_never_runs_a_credential_helper(
    oci_registry_basic_auth: Registry, helper_path: Path, tmp_path: Path
) -> None:
    host = oci_registry_basic_auth.host
    log = install_helper(helper_path, "cktest", {host: (USER, PASSWORD)})
    # What the operator does with a Workspace's registry Secret: no helper runner.
    options = RegistryOptions(
        insecure_registries=(host,),
        docker_config=DockerConfig.from_json(json.dumps({"credsStore": "cktest"})),
        cache_dir=tmp_path / "cache",
    )
    with pytest.raises(RegistryAuthError, match="does not run"):
        pull_block(new_ref(host), tmp_path / "ws", client=RegistryClient(options))
    assert not log.exists()
