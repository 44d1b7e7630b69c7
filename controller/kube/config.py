"""Which cluster: one rule for the operator, Kopf's login, the runners and the CLI.

The order is kubectl's (and the ``kubernetes`` client's ``load_config``):

1. the kubeconfig given explicitly (``--kubeconfig``, ``CRATEKEEPER_KUBECONFIG``);
2. ``$KUBECONFIG`` (one or more files, ``:``-separated, merged as kubectl merges them);
3. ``~/.kube/config`` when it exists;
4. the pod's service account (in-cluster), when the process runs in a pod.

Nothing found is a :class:`~controller.errors.KubeLoginError` naming what was tried. Exec
credential plugins, auth providers, token files and client certificates are the client's own
kubeconfig loader's: what works with kubectl works here. :class:`Credentials` are what Kopf
logs in with, read from the same configuration, so there is one notion of "the cluster".
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes

from controller.errors import KubeLoginError

__all__ = ["SERVICE_ACCOUNT_DIR", "Cluster", "Credentials", "kubeconfig_files", "load_cluster"]

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class Credentials:
    """Where the API server is and how to authenticate, as Kopf's ``ConnectionInfo`` wants it.

    Certificate and CA material is in files (the client writes inline data to private temporary
    files); secrets are never shown in a repr.
    """

    server: str
    scheme: str | None = None
    token: str | None = field(default=None, repr=False)
    ca_path: str | None = None
    insecure: bool = False
    certificate_path: str | None = None
    private_key_path: str | None = None
    proxy_url: str | None = None
    default_namespace: str | None = None


@dataclass(frozen=True)
class Cluster:
    """A loaded client configuration, where it came from, and its default namespace."""

    configuration: Any = field(repr=False)  # kubernetes.client.Configuration (untyped upstream)
    origin: str
    """``kubeconfig PATH (context NAME)`` or ``in-cluster service account``: for messages."""
    namespace: str
    """The context's namespace, the pod's own namespace in-cluster, else ``default``."""

    def credentials(self) -> Credentials:
        """The current credentials; an exec plugin or a rotated service-account token is
        re-read when due (the client's refresh hook runs here)."""
        config = self.configuration
        header: str | None = config.get_api_key_with_prefix("BearerToken", alias="authorization")
        scheme, token = _split_authorization(header)
        return Credentials(
            server=str(config.host).rstrip("/"),
            scheme=scheme,
            token=token,
            ca_path=config.ssl_ca_cert or None,
            insecure=not config.verify_ssl,
            certificate_path=config.cert_file or None,
            private_key_path=config.key_file or None,
            proxy_url=config.proxy or None,
            default_namespace=self.namespace,
        )


def kubeconfig_files(
    explicit: Path | str | None, environ: Mapping[str, str], home: Path
) -> str | None:
    """The kubeconfig file(s) to load (a ``:``-separated list), None for in-cluster."""
    if explicit:
        return str(explicit)
    listed = environ.get("KUBECONFIG", "")
    if any(part for part in listed.split(os.pathsep)):
        return listed
    default = home / ".kube" / "config"
    return str(default) if default.is_file() else None


def load_cluster(
    kubeconfig: Path | str | None = None,
    *,
    context: str | None = None,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
    service_account: Path = SERVICE_ACCOUNT_DIR,
) -> Cluster:
    """The cluster by the order in this module's docstring (``environ``/``home``: the process's
    own unless given)."""
    environ = os.environ if environ is None else environ
    files = kubeconfig_files(kubeconfig, environ, Path.home() if home is None else home)
    if files is not None:
        return _from_kubeconfig(files, context)
    if context is not None:
        raise KubeLoginError(
            f"--context {context!r} needs a kubeconfig; none was given, $KUBECONFIG is unset "
            "and ~/.kube/config does not exist"
        )
    return _in_cluster(environ, service_account)


def _from_kubeconfig(files: str, context: str | None) -> Cluster:
    listed_files = [Path(part).expanduser() for part in files.split(os.pathsep) if part]
    if not any(path.is_file() for path in listed_files):
        raise KubeLoginError(
            f"kubeconfig {files} does not exist; give the management cluster's kubeconfig "
            "(--kubeconfig, CRATEKEEPER_KUBECONFIG or $KUBECONFIG)"
        )
    configuration = kubernetes.client.Configuration()
    load: Any = kubernetes.config.load_kube_config  # untyped upstream
    listed: Any = kubernetes.config.list_kube_config_contexts
    try:
        load(
            config_file=files,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
        contexts, current = listed(config_file=files)
    except (kubernetes.config.ConfigException, OSError, ValueError, TypeError) as exc:
        raise KubeLoginError(
            f"cannot use kubeconfig {files}: {exc}; check the file with "
            "`kubectl --kubeconfig FILE config view`"
        ) from None
    chosen = context or str((current or {}).get("name") or "")
    found = next((c for c in contexts or () if c.get("name") == chosen), current or {})
    namespace = str((found.get("context") or {}).get("namespace") or "default")
    return Cluster(configuration, f"kubeconfig {files} (context {chosen})", namespace)


def _in_cluster(environ: Mapping[str, str], service_account: Path) -> Cluster:
    configuration = kubernetes.client.Configuration()
    make_loader: Any = kubernetes.config.incluster_config.InClusterConfigLoader  # untyped
    loader = make_loader(
        token_filename=str(service_account / "token"),
        cert_filename=str(service_account / "ca.crt"),
        environ=environ,
    )
    try:
        loader.load_and_set(configuration)
    except kubernetes.config.ConfigException as exc:
        raise KubeLoginError(
            "no Kubernetes cluster to talk to: no kubeconfig (--kubeconfig or "
            "CRATEKEEPER_KUBECONFIG, $KUBECONFIG, ~/.kube/config) and not in a pod "
            f"({exc})"
        ) from None
    try:
        namespace = (service_account / "namespace").read_text(encoding="utf-8").strip()
    except OSError:
        namespace = ""
    return Cluster(configuration, "in-cluster service account", namespace or "default")


def _split_authorization(header: str | None) -> tuple[str | None, str | None]:
    """``"Bearer abc"`` → ``("Bearer", "abc")``; a bare token has no scheme (RFC 7235)."""
    if not header:
        return None, None
    scheme, _, token = header.partition(" ")
    return (scheme, token) if token else (None, scheme)
