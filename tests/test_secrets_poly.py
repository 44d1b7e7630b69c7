"""secrets.poly: parsing, the one-file rule, decryption, the config hash and redaction values."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pyrage
import pytest

from controller.errors import DecryptionError, WorkspaceError
from controller.plan import (
    AppliedBlock,
    SecretConfigs,
    canonical_json,
    config_hash,
    plan,
)
from controller.secrets import (
    SECRETS_POLY,
    SECRETS_POLY_AGE,
    AgeKeys,
    config_hash_key,
    find_secrets_poly,
    read_secrets_poly,
    secret_values,
)
from controller.tree import DirectoryTree
from controller.validate import validate_tree
from controller.workspace import check_secrets, parse_secrets, parse_workspace

WORKSPACE = """\
name: acme-production-1
organization: acme
blocks:
  - name: app
    from: registry.acme-corp.com/acme/apps/app-deploy:1.2.0
    config: {namespace: acme-app, image: ghcr.io/acme/myapp:1.2.0}
  - name: db
    from: registry.acme-corp.com/acme/db:2.0.0
"""
SECRETS = """\
blocks:
  - name: app
    config:
      database: {password: hunter2-app}
  - name: db
    config: {root_password: "s3cr3t-db"}
"""
KUBECONFIG = (
    b"apiVersion: v1\nkind: Config\nclusters: []\nusers: [{name: u, user: {token: t0k3n}}]\n"
)


def ws() -> object:
    return parse_workspace(WORKSPACE)


def problems_of(text: str) -> list[str]:
    return [
        str(p)
        for p in check_secrets(textwrap.dedent(text), workspace=parse_workspace(WORKSPACE))[1]
    ]


def workspace_dir(tmp_path: Path, files: dict[str, bytes]) -> DirectoryTree:
    for rel, data in {
        "workspace.poly": WORKSPACE.encode(),
        "artifacts/secrets/kubeconfig.yml": KUBECONFIG,
        **files,
    }.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return DirectoryTree(tmp_path)


# --- parsing -------------------------------------------------------------------------------


def test_secrets_parse_into_per_block_config() -> None:
    secrets = parse_secrets(SECRETS, workspace=parse_workspace(WORKSPACE))
    assert secrets.block_config("app") == {"database": {"password": "hunter2-app"}}
    assert secrets.block_config("db") == {"root_password": "s3cr3t-db"}
    assert secrets.block_config("other") == {}
    assert secrets.block_configs().keys() == {"app", "db"}


def test_the_model_never_shows_secret_values() -> None:
    secrets = parse_secrets(SECRETS + "config: {api_key: k3y-top}\n")
    assert "hunter2" not in repr(secrets) and "s3cr3t" not in str(secrets)
    assert "k3y-top" not in repr(secrets)


def test_a_block_not_in_the_workspace_is_an_error_with_file_and_line() -> None:
    (problem,) = problems_of(SECRETS + "  - name: cache\n    config: {token: abcd}\n")
    assert problem.startswith(
        "secrets.poly:7: blocks[2].name: block 'cache' is not in workspace.poly"
    )
    assert "(app, db)" in problem


def test_without_the_workspace_block_names_are_not_checked() -> None:
    assert check_secrets("blocks: [{name: cache}]\n")[0] is not None


def test_unknown_keys_are_warnings() -> None:
    problems = problems_of(SECRETS + "workflows: []\n").copy()
    assert problems == [
        "secrets.poly:7: warning: workflows: unknown key is ignored by cratekeeper "
        "(known keys: blocks, config)"
    ]
    entry = problems_of("blocks:\n  - name: app\n    from: x.example.com/a:1\n")
    assert entry == [
        "secrets.poly:3: warning: blocks[0].from: unknown key is ignored by cratekeeper "
        "(known keys: config, name)"
    ]


def test_a_block_named_twice_is_an_error() -> None:
    (problem,) = problems_of(SECRETS + "  - name: app\n")
    assert problem.startswith("secrets.poly:7: blocks[2].name: secret block 'app' is defined twice")


@pytest.mark.parametrize(
    "text",
    [
        "blocks:\n  - name: app\n    config: hunter2-app\n",
        "blocks: hunter2-app\n",
        "config: [hunter2-app]\n",
        "blocks:\n  - name: app\n    config: {password: hunter2-app}\n    config: {x: 1}\n",
        "blocks:\n  - name: app\n    config: {password: hunter2-app}\n  - {name: [hunter2-x]}\n",
    ],
)
def test_problems_never_quote_a_value(text: str) -> None:
    problems = problems_of(text)
    assert problems and all(p.startswith("secrets.poly:") for p in problems)
    assert not any("hunter2" in p for p in problems), problems


def test_parse_secrets_raises_a_workspace_error() -> None:
    with pytest.raises(WorkspaceError) as caught:
        parse_secrets("blocks: [{name: nope}]\n", workspace=parse_workspace(WORKSPACE))
    assert caught.value.reason == "InvalidWorkspace"
    assert "secrets.poly:1" in str(caught.value)


# --- files and decryption ------------------------------------------------------------------


def test_a_workspace_may_have_no_secrets(tmp_path: Path) -> None:
    tree = workspace_dir(tmp_path, {})
    assert find_secrets_poly(tree) is None
    assert read_secrets_poly(tree, AgeKeys()) is None


def test_plain_secrets_are_read(tmp_path: Path) -> None:
    tree = workspace_dir(tmp_path, {SECRETS_POLY: SECRETS.encode()})
    assert read_secrets_poly(tree, AgeKeys()) == (SECRETS_POLY, SECRETS)


def test_encrypted_secrets_are_decrypted_in_memory(tmp_path: Path) -> None:
    identity = pyrage.x25519.Identity.generate()
    sealed = pyrage.encrypt(SECRETS.encode(), [identity.to_public()])
    tree = workspace_dir(tmp_path, {SECRETS_POLY_AGE: sealed})
    assert read_secrets_poly(tree, AgeKeys((str(identity),))) == (SECRETS_POLY_AGE, SECRETS)
    with pytest.raises(DecryptionError) as caught:
        read_secrets_poly(tree, AgeKeys((str(pyrage.x25519.Identity.generate()),)))
    assert "cannot decrypt secrets.poly.age" in str(caught.value)
    with pytest.raises(DecryptionError, match="no age identity is configured"):
        read_secrets_poly(tree, AgeKeys())


def test_plain_and_encrypted_secrets_together_are_an_error(tmp_path: Path) -> None:
    tree = workspace_dir(tmp_path, {SECRETS_POLY: SECRETS.encode(), SECRETS_POLY_AGE: b"x"})
    with pytest.raises(WorkspaceError, match=r"both secrets\.poly and secrets\.poly\.age exist"):
        find_secrets_poly(tree)


def test_validate_checks_secrets_poly(tmp_path: Path) -> None:
    bad = SECRETS + "  - name: cache\n    config: {token: hunter2-cache}\n"
    problems = [
        str(p) for p in validate_tree(workspace_dir(tmp_path, {SECRETS_POLY: bad.encode()}))
    ]
    assert any(p.startswith("secrets.poly:7: blocks[2].name: block 'cache'") for p in problems)
    assert not any("hunter2" in p for p in problems)


def test_validate_does_not_read_encrypted_secrets_but_refuses_both(tmp_path: Path) -> None:
    assert validate_tree(workspace_dir(tmp_path, {SECRETS_POLY_AGE: b"not even age"})) == []
    (tmp_path / SECRETS_POLY).write_text(SECRETS)
    (problem,) = validate_tree(DirectoryTree(tmp_path))
    assert "both secrets.poly and secrets.poly.age exist" in str(problem)


# --- the config hash and the plan ----------------------------------------------------------


def test_without_secrets_the_config_hash_is_the_plain_sha256() -> None:
    config = {"namespace": "acme-app"}
    expected = "sha256:" + hashlib.sha256(canonical_json(config).encode()).hexdigest()
    assert config_hash(config) == config_hash(config, {}, b"") == expected


def test_a_hash_covering_secrets_is_keyed_and_never_a_plain_hash() -> None:
    config, secret = {"namespace": "acme-app"}, {"password": "hunter2"}
    key = config_hash_key(KUBECONFIG)
    hashed = config_hash(config, secret, key)
    assert hashed.startswith("hmac-sha256:")
    plain = {
        hashlib.sha256(canonical_json(v).encode()).hexdigest()
        for v in (secret, {"config": config, "secrets": secret}, {**config, **secret})
    }
    assert hashed.removeprefix("hmac-sha256:") not in plain
    assert config_hash(config, secret, config_hash_key(KUBECONFIG + b"#")) != hashed
    assert config_hash(config, {"password": "hunter3"}, key) != hashed
    with pytest.raises(ValueError, match="needs a key"):
        config_hash(config, secret)


def test_a_secret_change_plans_a_config_run_of_that_block_only() -> None:
    workspace = parse_workspace(WORKSPACE)
    key = config_hash_key(KUBECONFIG)
    before = SecretConfigs(parse_secrets(SECRETS).block_configs(), key)
    applied = [
        AppliedBlock(b.name, str(b.from_), None, config_hash(b.config, before.of(b.name), key))
        for b in workspace.blocks
    ]
    assert plan(workspace, applied, secrets=before).empty
    after = SecretConfigs(
        parse_secrets(SECRETS.replace("hunter2-app", "hunter3")).block_configs(), key
    )
    (run,) = plan(workspace, applied, secrets=after).runs
    assert (run.block, run.reason) == ("app", "config")
    assert "hunter" not in repr(after) and "hunter" not in repr(run)


def test_secret_values_are_every_scalar_long_enough_to_redact() -> None:
    values = secret_values(
        {
            "password": "hunter2",
            "short": "abc",
            "pin": 123456,
            "enabled": True,
            "nested": {"list": ["tok-1", {"key": "multi\n  line-two\nx"}]},
            "quote": 'say "hi"',
        }
    )
    assert {"hunter2", "123456", "tok-1", "line-two", "multi", 'say "hi"', 'say \\"hi\\"'} <= set(
        values
    )
    assert "abc" not in values and "True" not in values and "x" not in values
    assert values == tuple(sorted(values, key=lambda v: (-len(v), v)))  # longest first
