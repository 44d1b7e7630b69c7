"""Registry credentials from a docker config JSON, and the registry's auth challenges.

What ``docker login`` writes is understood: ``auths.<host>.auth`` (base64 ``user:pass``)
or ``auths.<host>.username``/``password``, plus ``identitytoken`` (an OAuth2 refresh token)
and ``registrytoken`` (a bearer token used as is). Credential helpers (``credHelpers.<host>``,
then ``credsStore``, before ``auths``, as docker orders them) run programs: they are used only
when the caller passes a runner (the CLI passes :func:`controller.registry.helpers.run_helper`);
in the operator a config that needs one is an error that says so.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import requests

from controller.errors import RegistryAuthError, RegistryUnreachableError

_T = TypeVar("_T")


@dataclass(frozen=True)
class Credentials:
    """What the docker config holds for one registry host. ``repr`` never shows secrets."""

    username: str | None = field(default=None)
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)
    registry_token: str | None = field(default=None, repr=False)


HelperRunner = Callable[..., Credentials | None]
"""``run(helper_name, registry, *, source=...)``: the credentials a credential helper holds."""


@dataclass(frozen=True)
class DockerConfig:
    """The ``auths`` of a docker config JSON, keyed by ``host[:port]``, and its helpers."""

    auths: dict[str, Credentials] = field(default_factory=dict, repr=False)
    creds_store: str | None = None
    cred_helpers: dict[str, str] = field(default_factory=dict)
    helpers: HelperRunner | None = field(default=None, repr=False, compare=False)
    source: str = "docker config"
    _asked: dict[str, Credentials | None] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(
        cls, text: str, *, source: str = "docker config", helpers: HelperRunner | None = None
    ) -> DockerConfig:
        """Parse the JSON text of a docker config (``~/.docker/config.json`` or a Secret).

        ``helpers`` runs credential helpers; without it, a registry whose credentials are in
        one is a :class:`RegistryAuthError` when they are needed.
        """
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            # The message names the position only: the text may hold credentials.
            raise RegistryAuthError(
                f"{source} is not valid JSON (line {exc.lineno}, column {exc.colno})"
            ) from None
        if not isinstance(document, dict):
            raise RegistryAuthError(f"{source} must be a JSON object with an 'auths' key")
        auths = document.get("auths", {})
        if not isinstance(auths, dict):
            raise RegistryAuthError(f"{source}: 'auths' must be an object keyed by registry")
        parsed: dict[str, Credentials] = {}
        for key, entry in auths.items():
            if not isinstance(entry, dict):
                raise RegistryAuthError(f"{source}: auths[{key!r}] must be an object")
            parsed[_host_key(str(key))] = _credentials(str(key), entry, source)
        store = document.get("credsStore")
        helpers_by_host = document.get("credHelpers", {})
        if (store is not None and not isinstance(store, str)) or not isinstance(
            helpers_by_host, dict
        ):
            raise RegistryAuthError(
                f"{source}: 'credsStore' must be a helper name and 'credHelpers' an object "
                "of registry: helper name"
            )
        return cls(
            parsed,
            creds_store=store or None,
            cred_helpers={_host_key(str(k)): str(v) for k, v in helpers_by_host.items()},
            helpers=helpers,
            source=source,
        )

    @classmethod
    def from_file(cls, path: Path, *, helpers: HelperRunner | None = None) -> DockerConfig:
        """Read a docker config file; a missing file is an error, not anonymous access."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RegistryAuthError(f"cannot read docker config {path}: {exc.strerror}") from None
        return cls.from_json(text, source=str(path), helpers=helpers)

    def for_registry(self, registry: str) -> Credentials | None:
        """Credentials for ``host[:port]``; an entry without a port also covers any port."""
        helper = _lookup(self.cred_helpers, registry) or self.creds_store
        if helper is not None:
            return self._from_helper(helper, registry)
        return _lookup(self.auths, registry)

    def _from_helper(self, helper: str, registry: str) -> Credentials | None:
        if self.helpers is None:
            raise RegistryAuthError(
                f"{self.source} keeps the credentials for {registry} in the credential helper "
                f"{helper!r}, which the operator does not run; create the Secret with "
                "'auths' credentials (kubectl create secret docker-registry)"
            )
        if registry not in self._asked:  # one helper run per registry and config
            self._asked[registry] = self.helpers(helper, registry, source=self.source)
        return self._asked[registry]


def _lookup(entries: dict[str, _T], registry: str) -> _T | None:
    if registry in entries:
        return entries[registry]
    return entries.get(registry.rsplit(":", 1)[0]) if ":" in registry else None


def _host_key(key: str) -> str:
    """``https://host:5000/v1/`` and ``host:5000`` both name ``host:5000``."""
    if "://" in key:
        return urlsplit(key).netloc
    return key.split("/", 1)[0]


def _credentials(key: str, entry: dict[str, object], source: str) -> Credentials:
    username = _optional_str(entry.get("username"))
    password = _optional_str(entry.get("password"))
    encoded = _optional_str(entry.get("auth"))
    if encoded:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise RegistryAuthError(
                f"{source}: auths[{key!r}].auth is not base64 of 'user:password'"
            ) from None
        if ":" not in decoded:
            raise RegistryAuthError(
                f"{source}: auths[{key!r}].auth is not base64 of 'user:password'"
            )
        username, password = decoded.split(":", 1)
    return Credentials(
        username=username,
        password=password,
        identity_token=_optional_str(entry.get("identitytoken")),
        registry_token=_optional_str(entry.get("registrytoken")),
    )


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` header: the scheme and its parameters."""

    scheme: str
    params: dict[str, str]


_PARAM = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def parse_challenge(header: str) -> Challenge | None:
    """Parse ``Bearer realm="https://auth/token",service="reg",scope="repo:a/b:pull"``."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params = {
        match.group(1).lower(): (
            match.group(2).replace('\\"', '"') if match.group(2) is not None else match.group(3)
        )
        for match in _PARAM.finditer(rest)
    }
    return Challenge(scheme.lower(), params)


def answer_challenge(
    session: requests.Session,
    registry: str,
    scope: str,
    challenge: Challenge | None,
    credentials: Credentials | None,
    *,
    is_insecure: Callable[[str], bool],
    timeout: float,
) -> tuple[str, str]:
    """The Authorization header answering a 401 challenge, and the scope it is good for.

    Basic credentials hold for the whole registry (scope ``*``); a bearer token only for the
    ``repository:NAME:ACTIONS`` scope it was issued for.
    """
    if challenge is None:
        raise RegistryAuthError(f"registry {registry} refused access without a challenge")
    if challenge.scheme == "basic":
        if credentials is None or credentials.username is None:
            raise RegistryAuthError(
                f"registry {registry} requires credentials; add an 'auths' entry for "
                f"{registry} to the docker config (registry.secretRef)"
            )
        pair = f"{credentials.username}:{credentials.password or ''}".encode()
        return "*", "Basic " + base64.b64encode(pair).decode("ascii")
    if challenge.scheme == "bearer":
        token = _bearer_token(
            session, registry, scope, challenge, credentials, is_insecure, timeout
        )
        return scope, "Bearer " + token
    raise RegistryAuthError(
        f"registry {registry} asks for {challenge.scheme!r} authentication, which "
        "cratekeeper does not support (only Basic and Bearer)"
    )


def _bearer_token(
    session: requests.Session,
    registry: str,
    scope: str,
    challenge: Challenge,
    credentials: Credentials | None,
    is_insecure: Callable[[str], bool],
    timeout: float,
) -> str:
    if credentials is not None and credentials.registry_token:
        return credentials.registry_token
    realm = challenge.params.get("realm", "")
    realm_url = urlsplit(realm)
    if realm_url.scheme not in ("http", "https") or not realm_url.netloc:
        raise RegistryAuthError(f"registry {registry} sent an unusable token realm")
    if realm_url.scheme == "http" and not is_insecure(realm_url.netloc):
        raise RegistryAuthError(
            f"registry {registry} sends credentials to a plain-HTTP token service "
            f"({realm_url.netloc}); list it in CRATEKEEPER_INSECURE_REGISTRIES to allow that"
        )
    params = {"scope": challenge.params.get("scope", scope)}
    if "service" in challenge.params:
        params["service"] = challenge.params["service"]
    try:
        if credentials is not None and credentials.identity_token:
            response = session.post(
                realm,
                data={
                    **params,
                    "grant_type": "refresh_token",
                    "refresh_token": credentials.identity_token,
                    "client_id": "cratekeeper",
                },
                timeout=timeout,
            )
        else:
            auth = (
                (credentials.username, credentials.password or "")
                if credentials is not None and credentials.username
                else None
            )
            response = session.get(realm, params=params, auth=auth, timeout=timeout)
    except requests.exceptions.RequestException as exc:
        raise RegistryUnreachableError(
            f"cannot reach the token service of registry {registry} ({realm_url.netloc}): "
            f"{network_reason(exc)}"
        ) from None
    if response.status_code in (401, 403):
        raise RegistryAuthError(
            f"the token service of registry {registry} rejected "
            + (
                "the credentials from the docker config"
                if credentials
                else f"anonymous access; add an 'auths' entry for {registry}"
            )
        )
    if response.status_code != 200:
        raise RegistryAuthError(
            f"the token service of registry {registry} answered HTTP {response.status_code}"
        )
    try:
        body = response.json()
        token = body.get("token") or body.get("access_token")
    except (ValueError, AttributeError):
        token = None
    if not isinstance(token, str) or not token:
        raise RegistryAuthError(f"the token service of registry {registry} sent no token")
    return token


def network_reason(exc: BaseException) -> str:
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    if isinstance(exc, requests.exceptions.Timeout) or "timed out" in text:
        return "timed out"
    if "Name or service not known" in text or "Temporary failure in name resolution" in text:
        return "host name not found"
    return f"network error ({type(exc).__name__})"
