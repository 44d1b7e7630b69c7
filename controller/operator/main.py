"""Starting the operator: Kopf, the webhook receiver and the metrics server, together.

With ``settings.leader_election`` the servers start at once but Kopf only once this replica
holds the shard's Lease (:mod:`controller.operator.leases`); a standby serves its probes and
metrics and waits. With ``settings.label_selector`` only the matching Workspaces are
reconciled (:mod:`controller.operator.shards`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from aiohttp import web

from controller.errors import LeaseLostError
from controller.kube import Kube
from controller.notify import Notifier, Policy
from controller.operator.config import OperatorConfig
from controller.operator.handlers import serve
from controller.operator.leases import Elector, Timings, default_identity
from controller.operator.metrics import OperatorMetrics, metrics_app, refresh_cache_sizes
from controller.operator.relay import Relay
from controller.operator.shards import parse_selector
from controller.operator.shared import Shared
from controller.operator.slots import CheckSlots
from controller.operator.state import OperatorState
from controller.operator.webhook import webhook_app
from controller.operator.wiring import RunnerFactory
from controller.operator.wiring import runner_factory as runner_from_settings
from controller.runners.kubernetes.artifacts import SecretStore
from controller.secrets import AgeKeys
from controller.settings import Settings

log = logging.getLogger(__name__)

LEASE_LOST_EXIT = 3
"""``cratekeeper run``'s exit status when it lost its Lease (the pod restarts, as a standby)."""
ABANDON_WAIT = 5.0
"""Seconds the cancelled workers get to kill their runs once the Lease is lost."""


class Operator:
    """One operator process: Kopf plus its webhook and metrics servers.

    The cluster is resolved once (:func:`controller.kube.load_cluster`: the configured
    kubeconfig, ``$KUBECONFIG``, ``~/.kube/config``, in-cluster); Kopf, the status writes, the
    Secret reads and the kubernetes runner all use that one :class:`~controller.kube.Kube`.
    ``runner_factory`` defaults to the one ``settings.runner`` names; ``notify_backoff``
    (seconds before a notification's second try, doubling) to :class:`Policy`'s.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        namespaces: list[str] | None = None,
        clusterwide: bool = False,
        webhook_port: int | None = None,
        metrics_port: int | None = None,
        health_port: int | None = None,
        config: OperatorConfig | None = None,
        runner_factory: RunnerFactory | None = None,
        host: str = "0.0.0.0",  # noqa: S104 (probes and Git servers reach the pod's IP)
        notify_backoff: float | None = None,
    ) -> None:
        if not clusterwide and not namespaces:
            raise ValueError("give namespaces to watch, or run cluster-wide")
        self.settings = settings
        self.config = config or OperatorConfig.from_settings(settings)
        self.namespaces = namespaces
        self.clusterwide = clusterwide
        self.host = host
        self._ports = {"webhook": webhook_port, "metrics": metrics_port, "health": health_port}
        self.bound: dict[str, int] = {}
        self.metrics = OperatorMetrics()
        self.kube = Kube.connect(self.config.kubeconfig)  # KubeLoginError when there is none
        policy = Policy(ca_bundle=str(settings.ca_bundle) if settings.ca_bundle else None)
        if notify_backoff is not None:
            policy = replace(policy, backoff=notify_backoff)
        self.notifier = Notifier(
            self.kube,
            alerts=self.kube,  # the namespace's Alert objects (docs/notifications.md)
            policy=policy,
            on_failure=lambda ns, name, channel: self.metrics.notification_failures.labels(
                ns, name, channel
            ).inc(),
        )
        self.state = OperatorState(
            Shared(
                settings=settings,
                config=self.config,
                api=self.kube,
                metrics=self.metrics,
                runner_factory=runner_factory or runner_from_settings(settings, self.kube),
                base_keys=AgeKeys.from_sources(
                    settings.age_identity_file, settings.age_identity, settings.age_passphrase
                ),
                run_slots=asyncio.Semaphore(self.config.max_concurrent_runs),
                check_slots=CheckSlots(self.config.max_concurrent_checks),
                artifacts=lambda namespace, name: SecretStore(self.kube, namespace, name),
                notifier=self.notifier,
            ),
            self.kube,
        )
        self.selector = parse_selector(settings.label_selector)
        self.elector = (
            Elector(
                self.kube,
                settings.lease_namespace or self.kube.namespace,
                settings.lease_name,
                settings.lease_identity or default_identity(),
                Timings(settings.lease_duration, settings.renew_deadline, settings.retry_period),
            )
            if settings.leader_election
            else None
        )
        self.standing_by = False
        self.relay = Relay(self.kube, None if clusterwide else namespaces)

    def ready(self) -> bool:
        """Kopf watches, or this replica waits for the Lease (a standby is ready: a rollout
        waits for new pods to be ready, and only one of them can hold the Lease)."""
        return self.standing_by or self.state.ready()

    async def _webhook_secret(self, namespace: str, name: str) -> bytes | None:
        if (namespace, name) in self.state.workers:
            return await self.state.webhook_secret(namespace, name)
        return await self.relay.secret(namespace, name)  # a standby, or another shard's

    def _trigger(self, namespace: str, name: str, ref: str | None = None) -> bool:
        return self.state.trigger(namespace, name, ref) or self.relay.pass_on(namespace, name)

    @contextlib.asynccontextmanager
    async def _servers(self) -> AsyncIterator[None]:
        apps = {
            "webhook": webhook_app(self._webhook_secret, self._trigger),
            "metrics": metrics_app(self.metrics, self.ready),
            # Probes may have a port of their own (the chart's `health`); same app, same answers.
            "health": metrics_app(self.metrics, self.ready),
        }
        runners: list[web.AppRunner] = []
        caches = asyncio.create_task(refresh_cache_sizes(self.metrics, self.settings.cache_dir))
        try:
            for kind, app in apps.items():
                port = self._ports[kind]
                if port is None:
                    continue
                runner = web.AppRunner(app, access_log=None, handle_signals=False)
                await runner.setup()
                runners.append(runner)
                site = web.TCPSite(runner, self.host, port)
                await site.start()
                self.bound[kind] = runner.addresses[0][1]
            yield
        finally:
            caches.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await caches
            for runner in runners:
                await runner.cleanup()

    async def run(
        self, stop_flag: asyncio.Event | None = None, ready_flag: asyncio.Event | None = None
    ) -> None:
        """Serve until ``stop_flag`` is set (or SIGINT/SIGTERM); in-flight runs finish first.

        With leader election, Kopf starts only once the Lease is held, and a clean stop
        releases it (after the runs in flight are recorded), so a standby takes over at once.
        :class:`LeaseLostError` when it could not be renewed in time: every worker was
        cancelled first (local runs killed), so no two replicas ever run side by side.
        """
        try:
            async with self._servers():
                if self.elector is None:
                    await self._kopf(stop_flag, ready_flag)
                else:
                    await self._lead(self.elector, stop_flag, ready_flag)
        finally:
            await self.notifier.aclose()  # what is in flight, briefly; never blocks shutdown long
            self.kube.close()

    async def _kopf(
        self, stop_flag: asyncio.Event | None, ready_flag: asyncio.Event | None
    ) -> None:
        await serve(
            self.state,
            self.config,
            namespaces=self.namespaces,
            clusterwide=self.clusterwide,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
            selector=self.selector if self.selector.requirements else None,
            shard=self.settings.shard,
        )

    async def _lead(
        self, elector: Elector, stop: asyncio.Event | None, ready_flag: asyncio.Event | None
    ) -> None:
        # ``stop`` stays None when nothing will set it: Kopf would wait on a flag no one sets
        # and, stopped by a signal, give that waiter 5 s before it exits (and releases the Lease).
        self.standing_by = True
        try:
            if not await elector.acquire(stop):
                return
        finally:
            self.standing_by = False
        kopf = asyncio.create_task(self._kopf(stop, ready_flag))
        keep = asyncio.create_task(elector.keep())
        await asyncio.wait({kopf, keep}, return_when=asyncio.FIRST_COMPLETED)
        if kopf.done():  # stopped (or failed): the runs in flight are recorded by now
            keep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keep
            await elector.release()
            kopf.result()
            return
        # Lost: stop working before a standby may take over, without waiting for runs.
        log.error(
            f"lost Lease {elector.namespace}/{elector.name}: stopping every run and exiting "
            "(a standby takes over)"
        )
        abandoned = self.state.abandon()
        if abandoned:
            await asyncio.wait(abandoned, timeout=ABANDON_WAIT)
        kopf.cancel()
        await asyncio.wait({kopf}, timeout=ABANDON_WAIT)
        raise LeaseLostError(
            f"Lease {elector.namespace}/{elector.name} not renewed within "
            f"{elector.timings.renew_deadline:g} s; this replica stopped reconciling"
        )


def run_operator(
    settings: Settings,
    namespaces: list[str] | None,
    clusterwide: bool,
    webhook_port: int | None,
    metrics_port: int | None,
    health_port: int | None = None,
    runner_factory: RunnerFactory | None = None,
) -> None:
    """``cratekeeper run``: the operator in the foreground until SIGINT/SIGTERM."""
    operator = Operator(
        settings,
        namespaces=namespaces,
        clusterwide=clusterwide,
        webhook_port=webhook_port,
        metrics_port=metrics_port,
        health_port=health_port,
        runner_factory=runner_factory,
    )
    try:
        asyncio.run(_with_threads(operator))
    except LeaseLostError as exc:
        # Exit at once: Kopf's own shutdown would wait for daemons that are gone already.
        log.error(str(exc))
        logging.shutdown()
        os._exit(LEASE_LOST_EXIT)


async def _with_threads(operator: Operator) -> None:
    """``operator.run()`` with a thread pool sized for it. asyncio's default has CPUs + 4
    threads (6 on 2 cores) for every blocking call: the Git checks in flight, a docker run for
    its whole length, and every Kubernetes API call and tree read; with fewer threads than
    checks and runs, a push's status write would wait behind a sweep's ``ls-remote``s."""
    config = operator.config
    threads = config.max_concurrent_checks + config.max_concurrent_runs + 8
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(threads, thread_name_prefix="cratekeeper")
    )
    await operator.run()
