"""Secrets named in a Workspace's spec, handed to the pipeline as private files for one run.

Read when a run is due (so a rotated Secret takes effect on the next run), written as 0600
files in a 0700 directory on a memory-backed filesystem when there is one, and removed when the
run ends. The Git credentials alone, which every check needs, are kept per worker
(:class:`GitCredentials`) until the Secret's name changes, an authentication fails or the worker
ends: an idle check reads no Secret. Nothing here logs or raises with a Secret's contents:
messages name the Secret and key.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from controller.api.spec import WorkspaceSpec
from controller.errors import SecretInvalidError, SecretNotFoundError
from controller.kube import Secret
from controller.secrets import AgeKeys, write_private
from controller.source import GitAuth

DOCKER_CONFIG_KEYS = (".dockerconfigjson", "config.json")
AGE_IDENTITY_KEYS = ("identity.agekey", "identity", "age.agekey")
AGE_PASSPHRASE_KEY = "passphrase"  # noqa: S105 (a key name, not a secret)
_SAFE_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_MEMORY_FS = Path("/dev/shm")  # noqa: S108 (memory-backed; files are 0600 in a 0700 dir)


class SecretReader(Protocol):
    """Reads a Secret (:meth:`controller.kube.Kube.get_secret`)."""

    async def get_secret(self, namespace: str, name: str) -> Secret | None: ...


@dataclass(frozen=True)
class RunSecrets:
    """What the pipeline gets from the Workspace's Secrets (paths live until the run ends)."""

    git_auth: GitAuth | None = None
    docker_config: Path | None = None
    keys: AgeKeys = field(default_factory=AgeKeys)


def _private_dir(parent: Path, name: str) -> Path:
    path = parent / name
    path.mkdir(mode=0o700)
    return path


def _write_all(directory: Path, data: Mapping[str, bytes]) -> None:
    for key, value in data.items():
        if _SAFE_KEY.match(key) and key not in (".", ".."):
            write_private(directory / key, value)


async def _read(
    reader: SecretReader, namespace: str, name: str, field_path: str
) -> dict[str, bytes]:
    secret = await reader.get_secret(namespace, name)
    if secret is None:
        raise SecretNotFoundError(
            f"Secret {namespace}/{name} ({field_path}) not found; create it in the "
            "Workspace's namespace or fix the name"
        )
    return dict(secret.data)


def _scratch_parent() -> str | None:
    usable = _MEMORY_FS.is_dir() and os.access(_MEMORY_FS, os.W_OK | os.X_OK)
    return str(_MEMORY_FS) if usable else None


class GitCredentials:
    """One worker's Git credentials (``spec.source.secretRef``) as private files, read once and
    kept until the Secret's name changes, :meth:`forget` (an authentication failed) or
    :meth:`close` (the worker ends)."""

    def __init__(self, reader: SecretReader, namespace: str) -> None:
        self._reader, self._namespace = reader, namespace
        self._held: tuple[str, Path, GitAuth] | None = None

    @property
    def cached(self) -> bool:
        return self._held is not None

    async def auth(self, spec: WorkspaceSpec) -> GitAuth | None:
        ref = spec.source.secret_ref
        if ref is None:
            self.close()
            return None
        if self._held is not None and self._held[0] == ref.name:
            return self._held[2]
        self.close()
        data = await _read(self._reader, self._namespace, ref.name, "spec.source.secretRef")
        root = Path(tempfile.mkdtemp(prefix="cratekeeper-git-", dir=_scratch_parent()))
        try:
            directory = _private_dir(root, "git")
            _write_all(directory, data)
            self._held = (ref.name, root, GitAuth.from_directory(directory))
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return self._held[2]

    def forget(self) -> None:
        """Read the Secret again next time (it may have been rotated)."""
        self.close()

    def close(self) -> None:
        if self._held is not None:
            shutil.rmtree(self._held[1], ignore_errors=True)
            self._held = None


@contextlib.asynccontextmanager
async def secret_files(
    reader: SecretReader,
    namespace: str,
    spec: WorkspaceSpec,
    base_keys: AgeKeys,
    *,
    git_auth: GitAuth | None = None,
) -> AsyncIterator[RunSecrets]:
    """The Workspace's Secrets as files, for the duration of the ``async with`` block.

    ``base_keys`` (the controller's own age identity) are kept; the Workspace's decryption
    Secret adds to them. ``git_auth`` given (from :class:`GitCredentials`): the Git Secret is
    not read again.
    """
    root = Path(tempfile.mkdtemp(prefix="cratekeeper-secrets-", dir=_scratch_parent()))
    try:
        if git_auth is None and spec.source.secret_ref is not None:
            name = spec.source.secret_ref.name
            data = await _read(reader, namespace, name, "spec.source.secretRef")
            directory = _private_dir(root, "git")
            _write_all(directory, data)
            git_auth = GitAuth.from_directory(directory)
        docker_config = None
        if spec.registry.secret_ref is not None:
            name = spec.registry.secret_ref.name
            data = await _read(reader, namespace, name, "spec.registry.secretRef")
            value = next((data[k] for k in DOCKER_CONFIG_KEYS if k in data), None)
            if value is None:
                raise SecretNotFoundError(
                    f"Secret {namespace}/{name} (spec.registry.secretRef) has no "
                    ".dockerconfigjson key; create it with `kubectl create secret "
                    "docker-registry`"
                )
            docker_config = write_private(_private_dir(root, "registry") / "config.json", value)
        keys = base_keys
        if spec.decryption.secret_ref is not None:
            name = spec.decryption.secret_ref.name
            data = await _read(reader, namespace, name, "spec.decryption.secretRef")
            directory = _private_dir(root, "age")
            identity = next((k for k in AGE_IDENTITY_KEYS if k in data), None)
            passphrase = data.get(AGE_PASSPHRASE_KEY)
            if identity is None and passphrase is None:
                raise SecretNotFoundError(
                    f"Secret {namespace}/{name} (spec.decryption.secretRef) has neither an "
                    f"age identity ({', '.join(AGE_IDENTITY_KEYS)}) nor a passphrase key"
                )
            try:
                text = passphrase.decode().strip() if passphrase else None
            except UnicodeDecodeError:
                raise SecretInvalidError(
                    f"Secret {namespace}/{name} (spec.decryption.secretRef): key "
                    f"{AGE_PASSPHRASE_KEY!r} is not UTF-8 text"
                ) from None
            own = AgeKeys.from_sources(
                identity_file=write_private(directory / "identity", data[identity])
                if identity
                else None,
                passphrase=text,
            )
            keys = AgeKeys(
                base_keys.identities + own.identities, own.passphrase or base_keys.passphrase
            )
        yield RunSecrets(git_auth, docker_config, keys)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.asynccontextmanager
async def held_secrets(git_auth: GitAuth | None, base_keys: AgeKeys) -> AsyncIterator[RunSecrets]:
    """What a check needs when nothing will run: the Git credentials already held."""
    yield RunSecrets(git_auth=git_auth, keys=base_keys)
