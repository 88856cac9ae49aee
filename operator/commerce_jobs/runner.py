"""Runs the kopf operator with the project's settings and its controllers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sys
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import aiohttp
import aiohttp.web
import kopf
from kubernetes import client, config

import commerce_jobs.handlers  # noqa: F401  (registers the handlers)
from commerce_jobs import metrics
from commerce_jobs.config import ConfigError, OperatorConfig
from commerce_jobs.controller import CommerceJobController
from commerce_jobs.cron_controller import CronController
from commerce_jobs.handlers.commercejob import MANAGED_BY
from commerce_jobs.kubeapi import KubeApi
from commerce_jobs.leader import LeaderElection, LeaseTimings, default_identity
from commerce_jobs.watchhealth import WatchHealth, trace_config

if TYPE_CHECKING:
    from commerce_jobs.console.app import ConsoleSettings
    from commerce_jobs.metrics_server import MetricsSettings

PREFIX = "commercejobs.dev"
WORKERS = 16
SERVER_TIMEOUT, CLIENT_TIMEOUT = 300, 330  # seconds: kopf's watch requests


@dataclass(frozen=True)
class LeaderSettings:
    namespace: str
    name: str
    timings: LeaseTimings


def api_client() -> client.ApiClient:
    """In a pod, the ServiceAccount's credentials; elsewhere, the current kubeconfig."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
    else:
        config.load_kube_config()
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = WORKERS
    api = client.ApiClient(configuration)
    metrics.track(api)  # its requests count in commerce_jobs_api_requests_total (with --metrics, on the Lease holder)
    return api


class NoDiffBase(kopf.DiffBaseStorage):
    """The operator has only event handlers, which never diff; but kopf builds the diff-base (a deep copy of the
    body) for every event anyway: 14% of the operator's CPU under load. Build nothing."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, None)

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


@kopf.on.login()
async def login(logger: kopf.Logger, settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> Any:
    """kopf's own login (from the kubeconfig or the ServiceAccount), on a session whose LIST and WATCH requests are
    traced: their outcomes are the liveness probe's signal (watchhealth.py)."""
    info = kopf.login_via_client(logger=logger, settings=settings)
    if info is None:
        return None
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
        proxy=info.proxy_url,
        trust_env=info.trust_env,
        trace_configs=[trace_config(memo.watch_health)],
    )
    return kopf.AiohttpSession(
        aiohttp_session=session, server=info.server, default_namespace=info.default_namespace,
        priority=info.priority, expiration=info.expiration,
    )  # fmt: skip


@kopf.on.probe(id="watches", errors=kopf.ErrorsMode.PERMANENT)
async def watches_alive(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    """A failing probe (HTTP 500) once a watch stream has failed or hung for the grace period."""
    health: WatchHealth = memo.watch_health
    problems = health.problems(time.monotonic())
    if problems:
        raise kopf.PermanentError("watches down: " + "; ".join(problems))
    return health.summary(time.monotonic())


async def _serve_standby_probe(endpoint: str) -> aiohttp.web.AppRunner:
    """kopf serves its liveness probe only after the startup handlers, and a standby replica waits in one for the
    Lease: meanwhile it answers the probe itself, or the kubelet would restart it again and again."""
    parts = urllib.parse.urlsplit(endpoint)

    async def standby(_: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"leader": False})

    app = aiohttp.web.Application()
    app.add_routes([aiohttp.web.get(parts.path or "/", standby)])
    runner = aiohttp.web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, parts.hostname or "localhost", parts.port or 80).start()
    return runner


async def _lead(memo: kopf.Memo) -> None:
    """Blocks until this replica holds the Lease (kopf starts no watch before), then keeps renewing it."""
    leader: LeaderSettings = memo.leader_settings
    election = LeaderElection(api_client(), leader.namespace, leader.name, default_identity(), leader.timings)
    memo.election = election
    probe = await _serve_standby_probe(memo.liveness_endpoint) if memo.liveness_endpoint else None
    try:
        await election.acquire()
    finally:
        if probe is not None:
            await probe.cleanup()
    election.start_renewing()


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Before the Lease: a standby serves process metrics and leader 0. Once only, should kopf retry this handler.
    if memo.get("metrics_settings") is not None and memo.get("metrics") is None:
        from commerce_jobs.metrics_server import MetricsServer

        metrics_server = MetricsServer(memo.metrics_settings, memo.config)
        await metrics_server.start()
        memo.metrics = metrics_server
    if memo.get("leader_settings") is not None:
        await _lead(memo)
    # Keep kopf's bookkeeping off the objects: no progress or diff-base annotations, no Events for log lines.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.posting.level = logging.WARNING
    # The resources are known: no watch of CRDs or namespaces (nor the RBAC rights for one).
    settings.scanning.disabled = True
    # Only the Jobs that the operator made are streamed to it.
    managed = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
    settings.watching.label_selectors["batch", "jobs"] = managed
    settings.watching.label_selectors["v1", "pods"] = managed
    settings.watching.label_selectors["batch", "cronjobs"] = managed
    # The initial LIST comes in pages: 10,000 finished jobs with their output tails, parsed at once, would be the
    # operator's peak memory.
    settings.watching.chunk_size = 500
    # kopf keeps a task per object for idle_timeout after its last event. At a restart every object has an event at
    # once, so with the default 5 s all 10,000 tasks lived together: 189 MiB peak, against 130 MiB with 0.1 s.
    settings.queueing.idle_timeout = 0.1
    # Watches that go quiet behind a proxy are restarted instead of hanging for ever.
    settings.watching.server_timeout = SERVER_TIMEOUT
    settings.watching.client_timeout = CLIENT_TIMEOUT
    settings.watching.connect_timeout = 30
    # The workers' API calls run in the default executor: on 2 cores it has 6 threads, fewer than the workers.
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(WORKERS + 4, thread_name_prefix="kubeapi")
    )
    api = KubeApi(api_client())
    controller = CommerceJobController(api, memo.config, workers=WORKERS)
    crons = CronController(api, memo.config, controller)
    if memo.get("console_settings") is not None:
        from commerce_jobs.console.app import Console  # aiohttp's web server only when the console is on

        # A connection pool of its own: followed logs stay open, and must not take the controller's connections.
        console = Console(controller, api_client(), memo.namespaces, memo.console_settings)
        await console.start()  # first: a port in use fails the start before any worker runs
        memo.console = console
    controller.start()
    crons.start()
    if memo.get("metrics") is not None:
        memo.metrics.metrics.attach(controller, crons, memo.watch_health)
    memo.controller = controller
    memo.crons = crons


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    # The Lease last: it is given up only once no worker acts any more.
    for name in ("metrics", "console", "crons", "controller", "election"):
        component = memo.get(name)
        if component is not None:
            await component.stop()


def run_operator(
    namespaces: list[str],
    liveness_endpoint: str | None,
    standalone: bool,
    verbose: bool = False,
    log_format: str = "full",
    console: ConsoleSettings | None = None,
    leader: LeaderSettings | None = None,
    watch_grace: float = 30.0,
    metrics: MetricsSettings | None = None,
) -> int:
    try:
        # Read before kopf starts: a bad file stops the operator at once, with the reason, instead of a retry loop.
        operator_config = OperatorConfig.load()
    except ConfigError as e:
        print(f"commerce-jobs: invalid configuration: {e}", file=sys.stderr)
        return 2
    # One log configuration for kopf's messages and ours; "json" gives one structured record per line.
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat[log_format.upper()], log_refkey="object")
    if not verbose:
        # kopf logs every handled watch event at INFO: thousands of lines an hour that say nothing.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        asyncio.run(
            kopf.operator(
                # With the Lease, kopf's own peering (pauses by priority; no election) is not wanted either.
                standalone=standalone or leader is not None,
                namespaces=namespaces,
                clusterwide=not namespaces,
                liveness_endpoint=liveness_endpoint,
                memo=kopf.Memo(
                    config=operator_config,
                    console_settings=console,
                    namespaces=namespaces,
                    leader_settings=leader,
                    liveness_endpoint=liveness_endpoint,
                    watch_health=WatchHealth(grace=watch_grace, client_timeout=CLIENT_TIMEOUT),
                    metrics_settings=metrics,
                ),
            )
        )
    except KeyboardInterrupt:
        return 130
    return 0
