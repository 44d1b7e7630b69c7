"""Docker credential helpers (``credsStore``, ``credHelpers``), for the CLI only.

``docker`` runs ``docker-credential-<name> get`` with the registry host on stdin and reads
``{"ServerURL", "Username", "Secret"}`` from stdout (a ``Username`` of ``<token>`` makes the
secret an identity token); a helper that knows no credentials for the host says so and
exits non-zero. cratekeeper does the same. The operator never runs them: a controller must not
run programs named by a tenant's Secret, so there credentials come from ``auths`` only.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

from controller.errors import RegistryAuthError
from controller.registry.auth import Credentials

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_TIMEOUT = 30.0
_NOT_FOUND = ("credentials not found", "not found in native keychain", "no credentials")


def run_helper(name: str, registry: str, *, source: str) -> Credentials | None:
    """The credentials ``docker-credential-<name>`` holds for ``registry``, or None."""
    if not _NAME.match(name):
        raise RegistryAuthError(
            f"{source}: credential helper {name!r} is not a helper name "
            "(docker-credential-NAME, letters, digits, '.', '_' and '-')"
        )
    program = f"docker-credential-{name}"
    path = shutil.which(program)
    if path is None:
        raise RegistryAuthError(
            f"{source} names the credential helper {name!r} for {registry}, but {program} is "
            "not on PATH; install it, or put the credentials in 'auths' "
            f"(docker login {registry} without a credential store)"
        )
    try:
        done = subprocess.run(  # a helper named by the user's own docker config
            [path, "get"],
            input=registry.encode(),
            capture_output=True,
            timeout=_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RegistryAuthError(
            f"credential helper {program} did not answer for {registry} within "
            f"{_TIMEOUT:.0f} seconds"
        ) from None
    except OSError as exc:
        raise RegistryAuthError(f"cannot run credential helper {program}: {exc.strerror}") from None
    if done.returncode != 0:
        said = (done.stdout + done.stderr).decode(errors="replace").lower()
        if any(phrase in said for phrase in _NOT_FOUND):
            return None
        # Its output is not quoted: a misbehaving helper might print a secret.
        raise RegistryAuthError(
            f"credential helper {program} failed for {registry} (exit code {done.returncode})"
        )
    return _parse(done.stdout, program, registry)


def _parse(output: bytes, program: str, registry: str) -> Credentials:
    try:
        document = json.loads(output)
    except (ValueError, UnicodeDecodeError):
        document = None
    if not isinstance(document, dict):
        raise RegistryAuthError(
            f"credential helper {program} answered something other than a JSON object "
            f"for {registry}"
        )
    username, secret = document.get("Username"), document.get("Secret")
    if not isinstance(secret, str) or not secret:
        raise RegistryAuthError(f"credential helper {program} gave no Secret for {registry}")
    if username == "<token>":
        return Credentials(identity_token=secret)
    return Credentials(username=username if isinstance(username, str) else None, password=secret)
