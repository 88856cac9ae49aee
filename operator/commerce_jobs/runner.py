"""Runs the kopf operator with the project's settings and its controllers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import aiohttp
import kopf

# kopf's own types for what kopf.operator() accepts but does not export: the identity of this process (which kopf
# otherwise derives from getpass.getuser(), which fails under a user id without a passwd entry) and the insights
# (the resources and namespaces that kopf actually watches: what readiness waits for).
from kopf._cogs.structs.references import Insights
from kopf._core.engines.peering import Identity
from kubernetes import client, config

import commerce_jobs.handlers  # noqa: F401  (registers the handlers)
from commerce_jobs import metrics, probes
from commerce_jobs.api_names import FIELD_MANAGER, GROUP, MANAGED_BY
from commerce_jobs.config import ConfigError, OperatorConfig
from commerce_jobs.cron_controller import controllers
from commerce_jobs.kubeapi import KubeApi
from commerce_jobs.leader import LeaderElection, LeaseTimings, default_identity
from commerce_jobs.probes import Phase, Snapshot
from commerce_jobs.watchhealth import WatchHealth, trace_config

if TYPE_CHECKING:
    from commerce_jobs.console.app import ConsoleSettings
    from commerce_jobs.metrics_server import MetricsSettings

WORKERS = 16
SERVER_TIMEOUT, CLIENT_TIMEOUT = 300, 330  # seconds: kopf's watch requests
# Where the kubelet reads a container's last words (the default terminationMessagePath); written only when it exists.
TERMINATION_LOG = Path("/dev/termination-log")


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
    # Keep kopf's bookkeeping off the objects: no progress or diff-base annotations, no Events for log lines.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
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
    controller, crons = controllers(api, memo.config, workers=WORKERS)
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
    memo.phase = Phase.ACTING


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    memo.phase = Phase.STOPPING
    # The Lease last: it is given up only once no worker acts any more.
    for name in ("metrics", "console", "crons", "controller", "election"):
        component = memo.get(name)
        if component is not None:
            await component.stop()


def _workers_running(memo: kopf.Memo) -> bool:
    # The controllers' worker tasks (and the retention loop): each serves for ever, so one that is done has died.
    tasks = [*memo.controller.tasks, *memo.crons.tasks]
    return bool(tasks) and not any(task.done() for task in tasks)


def _watched_paths(insights: Insights) -> set[str]:
    """The URL paths of the watch streams that kopf opens: each watched resource in each served namespace (None:
    cluster-wide). Empty until kopf has chosen them, a moment after its start."""
    return {r.get_url(namespace=ns) for r in insights.watched_resources for ns in insights.namespaces}


def snapshot(memo: kopf.Memo, insights: Insights) -> Snapshot:
    """What the probes judge (probes.py), read from the running operator."""
    phase: Phase = memo.phase
    serves_console = memo.get("console_settings") is not None
    if phase is Phase.STANDBY:
        election: LeaderElection | None = memo.get("election")
        return Snapshot(
            phase, serves_console, lease_holder=election.holder if election else None,
            holder_renewing=election.holder_renewing() if election else False,
        )  # fmt: skip
    if phase is not Phase.ACTING:
        return Snapshot(phase, serves_console)
    health: WatchHealth = memo.watch_health
    now = time.monotonic()
    expected = _watched_paths(insights)
    return Snapshot(
        phase, serves_console, watch_problems=health.problems(now),
        unlisted=health.unlisted(expected) if expected else ["(the watched resources are not chosen yet)"],
        failing=health.failing(), workers_running=_workers_running(memo), watch_summary=health.summary(now),
    )  # fmt: skip


def last_words(message: str, path: Path = TERMINATION_LOG) -> None:
    """Why the operator stops, for the user: on stderr; in the container's termination message, which `kubectl
    describe pod` shows (Last State: Terminated, Message); and as a Warning Event on its pod, which outlives the pod
    (for the apiserver's event TTL, an hour by default), e.g. after `helm install --rollback-on-failure` removed it.
    The kubelet creates the termination log, and the chart gives the pod's name: elsewhere neither is done."""
    print(message, file=sys.stderr, flush=True)
    if path.exists():
        with contextlib.suppress(OSError):
            path.write_text(message[-4000:] + "\n")
    pod, namespace = os.environ.get("POD_NAME"), os.environ.get("POD_NAMESPACE")
    if pod and namespace:
        with contextlib.suppress(Exception):  # no apiserver, no rights: the other two must do
            client.CoreV1Api(api_client()).create_namespaced_event(
                namespace, stopped_event(pod, namespace, os.environ.get("POD_UID"), message), _request_timeout=3
            )


def stopped_event(pod: str, namespace: str, uid: str | None, message: str) -> client.CoreV1Event:
    now = datetime.now(UTC)
    return client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name=f"{pod[:200]}.", namespace=namespace),
        involved_object=client.V1ObjectReference(api_version="v1", kind="Pod", name=pod, namespace=namespace, uid=uid),
        reason="OperatorStopped", message=message[-1024:], type="Warning", count=1,
        first_timestamp=now, last_timestamp=now, source=client.V1EventSource(component=FIELD_MANAGER),
    )  # fmt: skip


async def _operate(
    memo: kopf.Memo, insights: Insights, identity: str, endpoint: str | None, standalone: bool, namespaces: list[str]
) -> None:
    """kopf's operator, with the probes served from the start (probes.py) instead of kopf's liveness endpoint,
    which would answer only after the startup handlers, and with its liveness verdict only."""
    server = await probes.serve(endpoint, lambda: snapshot(memo, insights)) if endpoint else None
    try:
        await kopf.operator(
            standalone=standalone,
            namespaces=namespaces,
            clusterwide=not namespaces,
            identity=Identity(identity),
            insights=insights,
            memo=memo,
        )
    finally:
        if server is not None:
            await server.cleanup()


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
        last_words(f"commerce-jobs: invalid configuration: {e}")
        return 2
    # One log configuration for kopf's messages and ours; "json" gives one structured record per line.
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat[log_format.upper()], log_refkey="object")
    if not verbose:
        # kopf logs every handled watch event at INFO: thousands of lines an hour that say nothing.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # Chosen here, not by kopf (getpass.getuser() needs a passwd entry, which an arbitrary user id has not): the pod's
    # name and a suffix of this process; the Lease's holder is the same.
    identity = default_identity()
    memo = kopf.Memo(
        config=operator_config,
        console_settings=console,
        namespaces=namespaces,
        leader_settings=leader,
        identity=identity,
        phase=Phase.STARTING,
        watch_health=WatchHealth(grace=watch_grace, client_timeout=CLIENT_TIMEOUT),
        metrics_settings=metrics,
    )
    # With the Lease, kopf's own peering (pauses by priority; no election) is not wanted either.
    kopf_standalone = standalone or leader is not None
    try:
        asyncio.run(_operate(memo, Insights(), identity, liveness_endpoint, kopf_standalone, namespaces))
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        logging.getLogger("commerce_jobs").exception("the operator stopped")
        last_words(f"commerce-jobs: the operator stopped: {type(e).__name__}: {e}")
        return 1
    return 0
