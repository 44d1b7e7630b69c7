"""The kubeconfig rule and age decryption."""

from __future__ import annotations

import stat
from pathlib import Path

import pyrage
import pytest

from controller.errors import DecryptionError, KubeconfigError
from controller.secrets import (
    KUBECONFIG,
    KUBECONFIG_AGE,
    AgeKeys,
    find_kubeconfig,
    kubeconfig_file,
    read_kubeconfig,
    write_private,
)
from controller.tree import DirectoryTree

PLAINTEXT = (
    b"apiVersion: v1\nkind: Config\nclusters: []\nusers: [{name: u, user: {token: s3cr3t}}]\n"
)


def tree_with(tmp_path: Path, files: dict[str, bytes]) -> DirectoryTree:
    for rel, data in {"workspace.poly": b"name: ws\n", **files}.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return DirectoryTree(tmp_path)


def test_the_one_plaintext_kubeconfig_is_found(tmp_path: Path) -> None:
    location = find_kubeconfig(tree_with(tmp_path, {KUBECONFIG: PLAINTEXT}))
    assert (location.path, location.encrypted) == (KUBECONFIG, False)


def test_a_missing_kubeconfig_says_where_it_belongs(tmp_path: Path) -> None:
    with pytest.raises(
        KubeconfigError, match=r"no kubeconfig: add .*artifacts/secrets/kubeconfig\.yml"
    ):
        find_kubeconfig(tree_with(tmp_path, {}))


def test_plain_and_encrypted_together_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError, match="keep exactly one"):
        find_kubeconfig(tree_with(tmp_path, {KUBECONFIG: PLAINTEXT, KUBECONFIG_AGE: b"x"}))


@pytest.mark.parametrize(
    "other",
    ["artifacts/secrets/kubeconfig-prod.yml", "kubeconfig", ".kube/config", "clusters/extra.yaml"],
)
def test_any_other_kubeconfig_like_file_is_an_error(tmp_path: Path, other: str) -> None:
    tree = tree_with(tmp_path, {KUBECONFIG: PLAINTEXT, other: PLAINTEXT})
    with pytest.raises(KubeconfigError, match=f"another kubeconfig-like file: {other}"):
        find_kubeconfig(tree)


def test_pulled_blocks_are_not_searched_for_kubeconfigs(tmp_path: Path) -> None:
    tree = tree_with(tmp_path, {KUBECONFIG: PLAINTEXT, "blocks/r.io/x/kubeconfig.yml": PLAINTEXT})
    assert find_kubeconfig(tree).path == KUBECONFIG


def test_an_encrypted_kubeconfig_decrypts_with_the_identity(tmp_path: Path) -> None:
    identity = pyrage.x25519.Identity.generate()
    ciphertext = pyrage.encrypt(PLAINTEXT, [identity.to_public()])
    key_file = tmp_path / "key.txt"
    key_file.write_text(f"# created: today\n# public key: {identity.to_public()}\n{identity}\n")
    tree = tree_with(tmp_path / "ws", {KUBECONFIG_AGE: ciphertext})
    assert read_kubeconfig(tree, AgeKeys.from_sources(identity_file=key_file)) == PLAINTEXT


def test_a_passphrase_also_decrypts(tmp_path: Path) -> None:
    ciphertext = pyrage.passphrase.encrypt(PLAINTEXT, "correct horse")
    tree = tree_with(tmp_path, {KUBECONFIG_AGE: ciphertext})
    assert read_kubeconfig(tree, AgeKeys(passphrase="correct horse")) == PLAINTEXT


def test_a_wrong_key_is_a_clear_error_without_plaintext(tmp_path: Path) -> None:
    ciphertext = pyrage.encrypt(PLAINTEXT, [pyrage.x25519.Identity.generate().to_public()])
    tree = tree_with(tmp_path, {KUBECONFIG_AGE: ciphertext})
    wrong = str(pyrage.x25519.Identity.generate())
    with pytest.raises(DecryptionError) as caught:
        read_kubeconfig(tree, AgeKeys.from_sources(identity=wrong))
    message = str(caught.value)
    assert "cannot decrypt artifacts/secrets/kubeconfig.yml.age" in message
    assert "s3cr3t" not in message and wrong not in message
    assert caught.value.reason == "DecryptionFailed"


def test_a_missing_key_names_the_setting(tmp_path: Path) -> None:
    tree = tree_with(tmp_path, {KUBECONFIG_AGE: b"age-encryption.org/v1\n"})
    with pytest.raises(DecryptionError, match="CRATEKEEPER_AGE_IDENTITY_FILE"):
        read_kubeconfig(tree, AgeKeys())


def test_a_malformed_identity_does_not_echo_it() -> None:
    with pytest.raises(DecryptionError) as caught:
        from controller.secrets import decrypt_age

        decrypt_age(b"x", AgeKeys(identities=("AGE-SECRET-KEY-NOPE",)), "f")
    assert "AGE-SECRET-KEY-NOPE" not in str(caught.value)


def test_age_keys_never_show_in_repr() -> None:
    keys = AgeKeys(identities=("AGE-SECRET-KEY-1XYZ",), passphrase="pw")
    assert "XYZ" not in repr(keys) and "pw" not in repr(keys)


def test_the_kubeconfig_file_is_private_and_removed_after_use() -> None:
    with kubeconfig_file(PLAINTEXT) as path:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_bytes() == PLAINTEXT
    assert not path.exists()


def test_private_files_are_0600_and_never_overwrite_or_follow_a_symlink(tmp_path: Path) -> None:
    path = write_private(tmp_path / "token", b"s3cret")
    assert path.read_bytes() == b"s3cret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_private(path, b"other")
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FileExistsError):
        write_private(tmp_path / "link", b"s3cret")
    assert not (tmp_path / "elsewhere").exists()
