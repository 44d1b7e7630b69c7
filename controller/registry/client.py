"""A small client for the OCI distribution API: just what pushing and pulling blocks needs.

cratekeeper talks to the registry with ``requests`` rather than through oras-py: every byte is
hashed as it arrives (so a bad blob is caught before it is used), the status codes map onto our
error classes, and credentials come only from the docker config it is given (docs/decisions.md:
"No oras-py").
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

import requests

from controller.errors import (
    ArtifactNotFoundError,
    DigestMismatchError,
    RegistryAuthError,
    RegistryError,
    RegistryUnreachableError,
)
from controller.registry.auth import (
    Challenge,
    answer_challenge,
    network_reason,
    parse_challenge,
)
from controller.registry.format import MANIFEST_TYPES, MAX_MANIFEST_SIZE
from controller.registry.options import RegistryOptions as RegistryOptions  # re-exported

log = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
_ACCEPT_MANIFESTS = ", ".join(MANIFEST_TYPES)


@dataclass(frozen=True)
class Manifest:
    """A manifest as the registry served it: exact bytes, media type, and its digest."""

    body: bytes
    media_type: str
    digest: str

    def json(self) -> dict[str, object]:
        try:
            document = json.loads(self.body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RegistryError(f"manifest {self.digest} is not valid JSON") from None
        if not isinstance(document, dict):
            raise RegistryError(f"manifest {self.digest} is not a JSON object")
        return document


class RegistryClient:
    """Talks to one or more registries with the given options; reuses connections and tokens."""

    def __init__(self, options: RegistryOptions, session: requests.Session | None = None) -> None:
        self.options = options
        self.session = session or requests.Session()
        # Never pick up ~/.netrc or proxy credentials from the environment of the controller.
        self.session.trust_env = False
        if options.ca_bundle is not None:
            self.session.verify = str(options.ca_bundle)
        self._auth: dict[tuple[str, str], str] = {}  # (registry, scope) -> Authorization
        # What this client's own credentials were checked against, so that a pull can trust
        # the shared blob cache (issue 10 point 9) and needs no second HEAD (issue 11 point 1).
        self._resolved: dict[tuple[str, str, str], str] = {}  # (registry, repo, tag) -> digest
        self._verified: set[tuple[str, str, str]] = set()  # (registry, repo, manifest digest)

    def resolved(self, registry: str, repository: str, tag: str) -> str | None:
        """The digest this client's HEAD or GET found for ``tag``, if it asked already."""
        return self._resolved.get((registry, repository, tag))

    def verified(self, registry: str, repository: str, digest: str) -> bool:
        """True when the registry showed this client the manifest ``digest`` in ``repository``
        (a HEAD or GET answered with this client's credentials)."""
        return (registry, repository, digest) in self._verified

    def _record(self, registry: str, repository: str, reference: str, digest: str) -> None:
        if not reference.startswith("sha256:"):
            self._resolved[(registry, repository, reference)] = digest
        self._verified.add((registry, repository, digest))

    # --- reading ---------------------------------------------------------------------------

    def get_manifest(self, registry: str, repository: str, reference: str) -> Manifest:
        """Fetch a manifest by tag or digest; the digest is computed from the bytes received."""
        response = self._request(
            "GET",
            registry,
            repository,
            f"manifests/{reference}",
            headers={"Accept": _ACCEPT_MANIFESTS},
            what=_reference(registry, repository, reference),
            stream=True,
        )
        body = _read_limited(response, MAX_MANIFEST_SIZE, f"manifest of {repository}")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        claimed = response.headers.get("Docker-Content-Digest")
        if claimed and claimed != digest:
            raise DigestMismatchError(
                f"manifest of {registry}/{repository}:{reference} does not match its digest: "
                f"the registry says {claimed}, the bytes hash to {digest}"
            )
        if reference.startswith("sha256:") and reference != digest:
            raise DigestMismatchError(
                f"manifest {registry}/{repository}@{reference} hashes to {digest}; "
                "the registry served different content"
            )
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        self._record(registry, repository, reference, digest)
        return Manifest(body, media_type, digest)

    def head_manifest(self, registry: str, repository: str, reference: str) -> str | None:
        """The digest the registry reports for a tag, or None if the tag does not exist."""
        response = self._request(
            "HEAD",
            registry,
            repository,
            f"manifests/{reference}",
            headers={"Accept": _ACCEPT_MANIFESTS},
            what=_reference(registry, repository, reference),
            allow_missing=True,
        )
        if response.status_code == 404:
            return None
        digest = response.headers.get("Docker-Content-Digest")
        if digest and reference.startswith("sha256:") and digest != reference:
            raise DigestMismatchError(
                f"registry {registry} answered {digest} for the manifest "
                f"{repository}@{reference}; it serves different content"
            )
        if digest is None and reference.startswith("sha256:"):
            digest = reference  # a 200 for a digest reference: the registry has it
        if digest:
            self._record(registry, repository, reference, digest)
        return digest

    def download_blob(
        self, registry: str, repository: str, digest: str, size: int, dest: BinaryIO
    ) -> None:
        """Stream a blob into ``dest``, refusing more than ``size`` bytes or a wrong digest."""
        algorithm, _, expected = digest.partition(":")
        if algorithm != "sha256":
            raise RegistryError(f"blob {digest} uses {algorithm!r}; only sha256 is supported")
        response = self._request(
            "GET", registry, repository, f"blobs/{digest}", what=f"blob {digest}", stream=True
        )
        hasher = hashlib.sha256()
        received = 0
        for chunk in _chunks(response, _CHUNK, registry, f"blob {digest}"):
            received += len(chunk)
            if received > size:
                response.close()
                raise DigestMismatchError(
                    f"blob {digest} of {registry}/{repository} is larger than the {size} bytes "
                    "its descriptor declares"
                )
            hasher.update(chunk)
            dest.write(chunk)
        actual = hasher.hexdigest()
        if received != size or actual != expected:
            raise DigestMismatchError(
                f"blob {digest} of {registry}/{repository} is corrupt or tampered with: "
                f"received {received} bytes hashing to sha256:{actual}"
            )

    # --- writing ---------------------------------------------------------------------------

    def blob_exists(self, registry: str, repository: str, digest: str) -> bool:
        response = self._request(
            "HEAD",
            registry,
            repository,
            f"blobs/{digest}",
            what=f"blob {digest}",
            push=True,
            allow_missing=True,
        )
        return response.status_code != 404

    def upload_blob(self, registry: str, repository: str, digest: str, data: bytes) -> None:
        """Upload a blob in one piece (POST to open the upload, PUT with the digest)."""
        if self.blob_exists(registry, repository, digest):
            return
        started = self._request(
            "POST",
            registry,
            repository,
            "blobs/uploads/",
            what=f"upload of {digest}",
            push=True,
            ok=(202,),
        )
        location = started.headers.get("Location")
        if not location:
            raise RegistryError(f"registry {registry} opened an upload without a Location")
        url = urljoin(started.url, location)
        separator = "&" if "?" in url else "?"
        self._request(
            "PUT",
            registry,
            repository,
            url=f"{url}{separator}digest={digest}",
            what=f"upload of {digest}",
            push=True,
            data=data,
            headers={"Content-Type": "application/octet-stream"},
            ok=(201,),
        )

    def put_manifest(
        self, registry: str, repository: str, tag: str, body: bytes, media_type: str
    ) -> str:
        """Tag ``body`` as ``tag``; returns the manifest digest."""
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        self._request(
            "PUT",
            registry,
            repository,
            f"manifests/{tag}",
            what=f"{registry}/{repository}:{tag}",
            push=True,
            data=body,
            headers={"Content-Type": media_type},
            ok=(201,),
        )
        self._record(registry, repository, tag, digest)
        return digest

    # --- plumbing --------------------------------------------------------------------------

    def base_url(self, registry: str) -> str:
        endpoint = self.options.endpoint(registry)
        scheme = "http" if self.options.is_insecure(endpoint) else "https"
        return f"{scheme}://{endpoint}/v2/"

    def _request(
        self,
        method: str,
        registry: str,
        repository: str,
        path: str = "",
        *,
        what: str,
        url: str | None = None,
        push: bool = False,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
        stream: bool = False,
        ok: tuple[int, ...] = (200,),
        allow_missing: bool = False,
    ) -> requests.Response:
        url = url or f"{self.base_url(registry)}{repository}/{path}"
        scope = f"repository:{repository}:{'pull,push' if push else 'pull'}"
        response = self._send(method, url, registry, scope, headers, data, stream)
        if response.status_code == 401:
            challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
            response.close()
            self._authenticate(registry, scope, challenge)
            response = self._send(method, url, registry, scope, headers, data, stream)
        if response.status_code in ok or (allow_missing and response.status_code == 404):
            return response
        raise self._error(response, registry, what)

    def _send(
        self,
        method: str,
        url: str,
        registry: str,
        scope: str,
        headers: dict[str, str] | None,
        data: bytes | None,
        stream: bool,
    ) -> requests.Response:
        all_headers = dict(headers or {})
        authorization = self._auth.get((registry, scope)) or self._auth.get((registry, "*"))
        if authorization:
            all_headers["Authorization"] = authorization
        log.debug("%s %s", method, url)
        try:
            return self.session.request(
                method,
                url,
                headers=all_headers,
                data=data,
                stream=stream,
                timeout=self.options.timeout,
                allow_redirects=True,
            )
        except requests.exceptions.SSLError:
            raise RegistryUnreachableError(
                f"TLS connection to registry {registry} failed; if it serves plain HTTP, list it "
                "in CRATEKEEPER_INSECURE_REGISTRIES"
            ) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise RegistryUnreachableError(
                f"cannot reach registry {registry} ({urlsplit(url).scheme}): {network_reason(exc)}"
            ) from None

    def _authenticate(self, registry: str, scope: str, challenge: Challenge | None) -> None:
        """Answer a 401 challenge once; the retried request tells whether it worked."""
        key, header = answer_challenge(
            self.session,
            registry,
            scope,
            challenge,
            self.options.credentials(registry),
            is_insecure=self.options.is_insecure,
            timeout=self.options.timeout,
        )
        self._auth[(registry, key)] = header

    def _error(self, response: requests.Response, registry: str, what: str) -> RegistryError:
        status = response.status_code
        detail = _registry_error_detail(response)
        response.close()
        if status == 401:
            has_credentials = self.options.credentials(registry) is not None
            return RegistryAuthError(
                f"registry {registry} rejected "
                + (
                    "the credentials from the docker config"
                    if has_credentials
                    else f"anonymous access; add an 'auths' entry for {registry}"
                )
                + f" ({what}){detail}"
            )
        if status == 403:
            return RegistryAuthError(f"registry {registry} denied access to {what}{detail}")
        if status == 404:
            return ArtifactNotFoundError(f"{what} not found in registry {registry}{detail}")
        return RegistryError(f"registry {registry} answered HTTP {status} for {what}{detail}")


def _reference(registry: str, repository: str, reference: str) -> str:
    separator = "@" if reference.startswith("sha256:") else ":"
    return f"block {registry}/{repository}{separator}{reference}"


def _registry_error_detail(response: requests.Response) -> str:
    """The registry's own error codes (``MANIFEST_UNKNOWN: ...``); they never hold secrets."""
    try:
        errors = response.json().get("errors", [])
        parts = [f"{e.get('code', '?')}: {e.get('message', '')}" for e in errors[:3]]
    except (ValueError, AttributeError):
        return ""
    return f" ({'; '.join(parts)})" if parts else ""


def _read_limited(response: requests.Response, limit: int, what: str) -> bytes:
    chunks: list[bytes] = []
    total = 0
    for chunk in _chunks(response, 64 * 1024, urlsplit(response.url).netloc, what):
        total += len(chunk)
        if total > limit:
            response.close()
            raise RegistryError(f"{what} is larger than {limit} bytes; not a block manifest")
        chunks.append(chunk)
    return b"".join(chunks)


def _chunks(response: requests.Response, size: int, registry: str, what: str) -> Iterator[bytes]:
    """The body in chunks; a connection lost mid-body is the registry being unreachable."""
    try:
        yield from response.iter_content(size)
    except requests.RequestException as exc:
        response.close()
        raise RegistryUnreachableError(
            f"registry {registry} dropped the connection while sending {what}: "
            f"{network_reason(exc)}; the pull is retried on the next reconcile"
        ) from None
