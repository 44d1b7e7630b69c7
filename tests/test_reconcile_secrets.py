"""`cratekeeper reconcile` with a secrets.poly: merged last, redacted everywhere, hashed with a
key; a block that leaks its secrets into output never shows them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyrage
import pytest
import yaml

from controller.cli import main
from controller.plan import canonical_json
from controller.refs import BlockRef
from controller.registry import RegistryClient, RegistryOptions, push_block
from tests.support.gitrepo import GitRepo
from tests.support.kube_emulator import KubeEmulator
from tests.support.oci_registry import Registry
from tests.test_reconcile import NAMESPACE, block_name, image, production

__all__ = ["block_name", "production"]  # the fixtures, shared with tests/test_reconcile.py

LEAKY_PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Show the password
      ansible.builtin.debug: {msg: "the password is {{ block.config.password }}"}
    - name: "Refuse {{ block.config.password }}"
      ansible.builtin.fail: {msg: "refused {{ block.config.password }}"}
      when: block.config.fail | bool
"""


@pytest.fixture(scope="module")
def leaky_block(oci_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A block whose deploy prints its password (and fails, when told, in a task named by it)."""
    name = f"{oci_registry.host}/acme/tests/leaky"
    block = tmp_path_factory.mktemp("leaky")
    (block / "block.poly").write_text(
        yaml.safe_dump(
            {
                "name": name,
                "version": "1.0.0",
                "config": {"password": "", "fail": False},
                "actions": [{"name": "deploy", "playbook": "deploy.yml"}],
            }
        )
    )
    (block / "deploy.yml").write_text(LEAKY_PLAYBOOK)
    client = RegistryClient(RegistryOptions(insecure_registries=(oci_registry.host,)))
    push_block(block, BlockRef.parse(f"{name}:1.0.0"), client=client, also_latest=False)
    return name


def _sha256(value: object) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def test_secrets_poly_is_merged_last_redacted_and_hashed_with_a_key(
    production: GitRepo,
    leaky_block: str,
    oci_registry: Registry,
    kube_emulator: KubeEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state_file = tmp_path / "state.json"
    flags = ["--state", str(state_file), "--insecure-registry", oci_registry.host, "-v"]
    ws = production.path / "workspace.poly"
    ws.write_text(
        ws.read_text()
        + f"  - name: vault\n    from: {leaky_block}:1.0.0\n    config: {{password: in-git}}\n"
    )
    image_secret = {"image": "ghcr.io/acme/myapp:from-secrets"}

    def secrets(password: str, *, fail: bool = False) -> dict[str, Any]:
        vault = {"password": password, "fail": fail}
        return {
            "blocks": [{"name": "app", "config": image_secret}, {"name": "vault", "config": vault}]
        }

    production.write_yaml("secrets.poly", secrets("hunter2-first"))
    production.commit("Add the vault with its password in secrets.poly")
    assert main(["reconcile", str(production.path), *flags]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "the password is ***" in out and "hunter2" not in out
    deployment = kube_emulator.get("apps/v1/deployments", "acme-app", namespace=NAMESPACE)
    assert deployment is not None and deployment["spec"]["replicas"] == 2  # instance config kept
    assert image(kube_emulator) == "ghcr.io/acme/myapp:from-secrets"  # secrets.poly wins
    text = state_file.read_text()
    assert "hunter2" not in text and "from-secrets" not in text
    hashes = {b["name"]: b["configHash"] for b in json.loads(text)["blocks"]}
    vault_hash = hashes["vault"]
    assert vault_hash.startswith("hmac-sha256:")
    digest = vault_hash.removeprefix("hmac-sha256:")
    vault_secret = secrets("hunter2-first")["blocks"][1]["config"]
    assert digest not in {
        _sha256(vault_secret),
        _sha256({"config": {"password": "in-git"}, "secrets": vault_secret}),
        _sha256({"password": "hunter2-first", "fail": False}),
    }

    # Encrypted now, with a new password: only the vault runs, for its config.
    identity = pyrage.x25519.Identity.generate()
    monkeypatch.setenv("CRATEKEEPER_AGE_IDENTITY", str(identity))

    def seal(data: dict[str, Any]) -> None:
        plaintext = yaml.safe_dump(data).encode()
        sealed = pyrage.encrypt(plaintext, [identity.to_public()])
        (production.path / "secrets.poly.age").write_bytes(sealed)

    seal(secrets("hunter2-second"))
    (production.path / "secrets.poly").unlink(missing_ok=True)
    production.commit("Rotate the vault password; encrypt secrets.poly")
    assert main(["reconcile", str(production.path), *flags]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "the password is ***" in out and "hunter2" not in out
    state = json.loads(state_file.read_text())
    changes = [(c["block"], c["reason"]) for c in state["history"][0]["changes"]]
    assert changes == [("vault", "config")]
    (vault,) = (b for b in state["blocks"] if b["name"] == "vault")
    assert vault["configHash"] != vault_hash

    # A failure in a task whose name holds the secret: the message is redacted as well.
    seal(secrets("hunter2-third", fail=True))
    production.commit("Make the vault refuse")
    assert main(["reconcile", str(production.path), *flags]) == 1
    captured = capsys.readouterr()
    assert "hunter2" not in captured.out + captured.err
    text = state_file.read_text()
    assert "hunter2" not in text
    assert "at task 'Refuse ***'" in json.loads(text)["history"][0]["message"]

    # A secret for a block the workspace does not have: invalid, nothing runs.
    production.write_yaml(
        "secrets.poly", {"blocks": [{"name": "cache", "config": {"token": "hunter2-four"}}]}
    )
    (production.path / "secrets.poly.age").unlink()
    production.commit("A secret for a block that is not there")
    assert main(["reconcile", str(production.path), *flags]) == 1
    captured = capsys.readouterr()
    assert "InvalidWorkspace" in captured.err
    assert "secrets.poly:2: blocks[0].name: block 'cache' is not in workspace.poly" in captured.err
    assert "hunter2" not in captured.out + captured.err + state_file.read_text()
