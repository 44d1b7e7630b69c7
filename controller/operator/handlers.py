"""Kopf handlers: the only module that imports Kopf (STYLE: only ``operator`` knows Kopf).

Each Workspace gets one daemon, which runs its :class:`~controller.operator.worker.WorkspaceWorker`
loop: the daemon starts on create and on operator start (resume), and stops on delete or
shutdown. A Kopf timer cannot do the interval, since the interval is per object
(``spec.source.interval``). The ``event`` handler only wakes workers (spec change, the
requested-at annotation) and writes nothing; the ``delete`` handler removes what runs left.

Kopf keeps its own progress in annotations under ``cratekeeper.dev/``, so ``.status`` holds
exactly :class:`~controller.api.status.WorkspaceStatus`. Its diff-base annotation holds only a
digest of what it would store, and its DEBUG lines that quote an object are cut, so spec values
that can hold credentials (``spec.source.url`` with a password, refused by the spec's rules but
only after Kopf saw it) never reach Kopf's bookkeeping or its log (issue 10 point 13).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import logging
from collections.abc import Iterable
from typing import Any

import kopf

from controller.api.spec import GROUP, PLURAL, VERSION
from controller.kube import Credentials
from controller.operator.config import OperatorConfig
from controller.operator.events import EventType
from controller.operator.shards import Selector
from controller.operator.state import OperatorState

FINALIZER = f"{GROUP}/finalizer"
DIFFBASE_KEY = "last-handled-configuration"


class DigestDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """Kopf's diff base as a digest of the essence: changes are still noticed (the digest
    changes), but the spec is never copied into an annotation. We have no update handlers, so
    no handler needs the old values Kopf would otherwise keep."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        essence = super().build(body=body, extra_fields=extra_fields)
        text = json.dumps(essence, sort_keys=True, separators=(",", ":"), default=str)
        digest: Any = {"sha256": hashlib.sha256(text.encode()).hexdigest()}
        return digest  # type: ignore[no-any-return]


class QuietBodies(logging.Filter):
    """Cuts Kopf's DEBUG lines that quote a whole object or its diff (they hold the spec)."""

    MARKERS = (" is in progress: ", " diff: ")

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        for marker in self.MARKERS:
            if marker in message and not record.args:
                cut = message.split(marker, 1)[0]
                record.msg = f"{cut}{marker.rstrip(': ')} (not logged: it may hold credentials)"
        return True


_QUIET_BODIES = QuietBodies()


def bookkeeping_prefix(shard: str | None) -> str:
    """Where Kopf keeps its finalizer and annotations: ``cratekeeper.dev``, or per shard
    ``<shard>.cratekeeper.dev``. Kopf removes its finalizer from objects its filters do not
    match, so two instances sharing one would undo each other's forever."""
    return f"{shard}.{GROUP}" if shard else GROUP


def kopf_settings(config: OperatorConfig, shard: str | None = None) -> kopf.OperatorSettings:
    """Kopf's settings: state in annotations, our finalizer, events only when we post them."""
    prefix = bookkeeping_prefix(shard)
    settings = kopf.OperatorSettings()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = DigestDiffBaseStorage(prefix=prefix, key=DIFFBASE_KEY)
    settings.persistence.finalizer = f"{prefix}/finalizer" if shard else FINALIZER
    # Kopf turns per-object log lines into Events; only warnings should become Events, the
    # rest are posted on purpose (kopf.event) when something happens.
    settings.posting.level = logging.WARNING
    settings.peering.standalone = True
    settings.watching.server_timeout = 300
    return settings


def connection_info(credentials: Credentials) -> kopf.ConnectionInfo:
    """Kopf's login, from the adapter's own configuration (one notion of "the cluster")."""
    return kopf.ConnectionInfo(
        server=credentials.server,
        scheme=credentials.scheme,
        token=credentials.token,
        ca_path=credentials.ca_path,
        insecure=credentials.insecure,
        certificate_path=credentials.certificate_path,
        private_key_path=credentials.private_key_path,
        proxy_url=credentials.proxy_url,
        default_namespace=credentials.default_namespace,
    )


def build_registry(
    state: OperatorState, config: OperatorConfig, selector: Selector | None = None
) -> kopf.OperatorRegistry:
    """The handlers of one operator, bound to its state; with a ``selector`` (a shard), only
    the Workspaces whose labels match it (Kopf stops a daemon whose Workspace stops matching,
    and the shard it now matches starts one)."""
    registry = kopf.OperatorRegistry()
    resource = (GROUP, VERSION, PLURAL)

    def ours(labels: kopf.Labels, **_: Any) -> bool:
        return selector is None or selector.matches(labels)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        # Called again when the API answers 401: the credentials are read afresh (an exec
        # plugin re-runs when its token expired); no client or session is made here.
        info = connection_info(state.kube.credentials())
        state.logged_in = True
        return info

    @kopf.on.startup(registry=registry)
    async def startup(**_: Any) -> None:
        state.watching = True

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        state.watching = False

    @kopf.on.event(*resource, registry=registry, when=ours)
    async def observe(
        type: str | None, body: kopf.Body, namespace: str | None, name: str | None, **_: Any
    ) -> None:
        if type != "DELETED" and namespace and name:
            state.observe(namespace, name, dict(body))

    @kopf.daemon(
        *resource,
        registry=registry,
        id="reconciler",
        when=ours,
        cancellation_backoff=config.shutdown_grace,
        cancellation_timeout=10.0,
    )
    async def reconciler(
        body: kopf.Body,
        namespace: str | None,
        name: str | None,
        stopped: kopf.DaemonStopped,
        logger: kopf.Logger,
        **_: Any,
    ) -> None:
        assert namespace and name  # a namespaced resource

        def snapshot() -> dict[str, Any]:
            return copy.deepcopy(dict(body))  # the daemon's body is live: a fresh copy

        def post(type: EventType, reason: str, message: str) -> None:
            kopf.event(body, type=type, reason=reason, message=message)

        worker = state.start_worker(namespace, name, snapshot, post, logger.info)

        async def relay_stop() -> None:
            await stopped.wait()
            worker.stop()

        relay = asyncio.create_task(relay_stop())
        try:
            await worker.run()
        finally:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay
            state.drop(worker)

    @kopf.on.delete(*resource, registry=registry, id="cleanup", when=ours)
    async def delete(
        namespace: str | None,
        name: str | None,
        spec: kopf.Spec,
        logger: kopf.Logger,
        **_: Any,
    ) -> None:
        assert namespace and name
        url = spec.get("source", {}).get("url")
        removed = await state.cleanup(namespace, name, url if isinstance(url, str) else None)
        if removed:
            logger.info(f"removed what runs left: {', '.join(removed)}")

    return registry


async def serve(
    state: OperatorState,
    config: OperatorConfig,
    *,
    namespaces: list[str] | None,
    clusterwide: bool,
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
    selector: Selector | None = None,
    shard: str | None = None,
) -> None:
    """Run Kopf until ``stop_flag`` (or a signal); standalone: no Kopf peering (several
    replicas elect one active through a Lease, :mod:`controller.operator.leases`)."""
    logging.getLogger("kopf.objects").addFilter(_QUIET_BODIES)  # once: filters are a set
    await kopf.operator(
        registry=build_registry(state, config, selector),
        settings=kopf_settings(config, shard),
        standalone=True,
        namespaces=namespaces or [],
        clusterwide=clusterwide,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )
