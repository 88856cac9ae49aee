"""Everything that kopf calls, registered in one place (importing this module registers it): the login, the
start-up that builds the controllers, starts the CommerceJob controller's own watch streams and tunes kopf, the
clean-up, and the cron controller's watch handlers.

The watch handlers are thin: each event only updates a controller's cache and queues what it concerns. They are
coroutines on purpose: kopf runs plain functions in a thread pool, and the caches are only ever touched from the
event loop's thread (the workers read them there, between their awaits).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

import aiohttp
import kopf

from commerce_jobs import metrics
from commerce_jobs.api_names import COMMERCECRONJOBS, GROUP, MANAGED_BY, VERSION
from commerce_jobs.controller_streams import MANAGED, ControllerStreams
from commerce_jobs.cron_controller import controllers
from commerce_jobs.jobcalls import JobCalls
from commerce_jobs.kubeapi import KubeApi
from commerce_jobs.kubeclient import WORKERS, api_client
from commerce_jobs.leader import LeaderElection, LeaderSettings
from commerce_jobs.probes import Phase
from commerce_jobs.watchhealth import trace_config
from commerce_jobs.watchstream import PAGE_SIZE, Connect

SERVER_TIMEOUT, CLIENT_TIMEOUT, CONNECT_TIMEOUT = 300, 330, 30  # seconds: the watch requests (kopf's and ours)
log = logging.getLogger("commerce_jobs.login")


class NoDiffBase(kopf.DiffBaseStorage):
    """The operator has only event handlers, which never diff; but kopf builds the diff-base (a deep copy of the
    body) for every event anyway: 14% of the operator's CPU under load. Build nothing."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, None)

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


def _session(info: kopf.ConnectionInfo, *trace_configs: aiohttp.TraceConfig) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
        proxy=info.proxy_url,
        trust_env=info.trust_env,
        trace_configs=[*trace_configs, metrics.session_trace_config()],  # every request counts in the metrics
    )


@kopf.on.login()
async def login(logger: kopf.Logger, settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> Any:
    """kopf's own login (from the kubeconfig or the ServiceAccount), on a session whose LIST and WATCH requests are
    traced: their outcomes are the liveness probe's signal (watchhealth.py)."""
    info = kopf.login_via_client(logger=logger, settings=settings)
    if info is None:
        return None
    return kopf.AiohttpSession(
        aiohttp_session=_session(info, trace_config(memo.watch_health)), server=info.server,
        default_namespace=info.default_namespace, priority=info.priority, expiration=info.expiration,
    )  # fmt: skip


def _connect(settings: kopf.OperatorSettings) -> Connect:
    """The controller's own streams and its calls (jobcalls.py) log in as kopf does, afresh for each session (a
    rotated token is read again); the streams tell WatchHealth themselves (a stream is listed only once its whole
    LIST is read), so no trace of it."""

    async def connect() -> tuple[aiohttp.ClientSession, str]:
        info = await asyncio.to_thread(kopf.login_via_client, logger=log, settings=settings)
        if info is None:
            raise RuntimeError("no credentials for the apiserver (no kubeconfig, no ServiceAccount)")
        return _session(info), info.server.rstrip("/")

    return connect


async def _lead(memo: kopf.Memo) -> None:
    """Blocks until this replica holds the Lease (kopf starts no watch before), then keeps renewing it."""
    leader: LeaderSettings = memo.leader_settings
    election = LeaderElection(api_client(), leader.namespace, leader.name, memo.identity, leader.timings)
    memo.election = election
    memo.phase = Phase.STANDBY
    await election.acquire()
    election.start_renewing()


# A failure here (the console's port taken, ...) will not go away by itself: the process ends with the reason
# (last_words) instead of retrying for ever.
@kopf.on.startup(errors=kopf.ErrorsMode.PERMANENT)
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Before the Lease: a standby serves process metrics and leader 0. Once only, should kopf retry this handler.
    if memo.get("metrics_settings") is not None and memo.get("metrics") is None:
        from commerce_jobs.metrics_server import MetricsServer

        metrics_server = MetricsServer(memo.metrics_settings, memo.config)
        await metrics_server.start()
        memo.metrics = metrics_server
    if memo.get("leader_settings") is not None:
        await _lead(memo)
    # Keep kopf's bookkeeping small: its progress storage is annotations only, under the project's prefix (never a
    # status.kopf field; event handlers have no progress to store, so none is written), no diff-base at all
    # (NoDiffBase), no Events for log lines.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.posting.level = logging.WARNING
    # The resources are known: no watch of CRDs or namespaces (nor the RBAC rights for one).
    settings.scanning.disabled = True
    # Only the CronJobs that the operator made are streamed to it.
    settings.watching.label_selectors["batch", "cronjobs"] = MANAGED
    settings.watching.chunk_size = PAGE_SIZE
    # kopf keeps a task per object for idle_timeout after its last event. At a restart every object has an event at
    # once, so with the default 5 s all 10,000 tasks lived together: 189 MiB peak, against 130 MiB with 0.1 s.
    settings.queueing.idle_timeout = 0.1
    # Watches that go quiet behind a proxy are restarted instead of hanging for ever.
    settings.watching.server_timeout = SERVER_TIMEOUT
    settings.watching.client_timeout = CLIENT_TIMEOUT
    settings.watching.connect_timeout = CONNECT_TIMEOUT
    # The workers' API calls run in the default executor: on 2 cores it has 6 threads, fewer than the workers.
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(WORKERS + 4, thread_name_prefix="kubeapi")
    )
    api = KubeApi(api_client())
    controller, crons = controllers(api, JobCalls(_connect(settings)), memo.config, workers=WORKERS)
    if memo.get("console_settings") is not None:
        from commerce_jobs.console.app import Console  # aiohttp's web server only when the console is on

        # A connection pool of its own: followed logs stay open, and must not take the controller's connections.
        console = Console(controller, api_client(), memo.namespaces, memo.console_settings)
        await console.start()  # first: a port in use fails the start before any worker runs
        memo.console = console
    streams = ControllerStreams(
        controller, memo.namespaces, _connect(settings), memo.watch_health,
        SERVER_TIMEOUT, CLIENT_TIMEOUT, CONNECT_TIMEOUT,
    )  # fmt: skip
    controller.start(streams.synced)
    streams.start()
    memo.streams = streams
    crons.start()
    if memo.get("metrics") is not None:
        memo.metrics.metrics.attach(controller, crons, memo.watch_health)
    memo.controller = controller
    memo.crons = crons
    memo.phase = Phase.ACTING


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    memo.phase = Phase.STOPPING
    # The Lease last: it is given up only once no worker acts any more.
    for name in ("metrics", "console", "crons", "streams", "controller", "election"):
        component = memo.get(name)
        if component is not None:
            await component.stop()


# -- the watch handlers ------------------------------------------------------------------------------------------
# (group, version, plural, whether only the operator's own objects are streamed, the controller in kopf's memo, and
# its method that observes an event). The CronJobs are selected by their managed-by label. The CommerceJobs, their
# Jobs and their pods, a hundred times busier, have streams of their own (controller_streams.py).
WATCHES = (
    (GROUP, VERSION, COMMERCECRONJOBS, False, "crons", "observe_cron"),
    ("batch", "v1", "cronjobs", True, "crons", "observe_cronjob"),
)


def _watch_handler(controller: str, method: str) -> Callable[..., Awaitable[None]]:
    async def observe(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        observer: Callable[[str | None, dict[str, Any]], None] = getattr(memo[controller], method)
        observer(type, dict(body))

    return observe


def _register_watches() -> None:
    for group, version, plural, managed, controller, method in WATCHES:
        labels = MANAGED_BY if managed else None
        kopf.on.event(group, version, plural, labels=labels, id=f"{plural}-event")(_watch_handler(controller, method))


_register_watches()
