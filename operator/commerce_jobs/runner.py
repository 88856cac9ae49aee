"""Runs the kopf operator (its handlers: kopf_handlers.py) with the probes, and says why it stopped."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import kopf

# kopf's own types for what kopf.operator() accepts but does not export: the identity of this process (which kopf
# otherwise derives from getpass.getuser(), which fails under a user id without a passwd entry) and the insights
# (the resources and namespaces that kopf actually watches: what readiness waits for).
from kopf._cogs.structs.references import Insights
from kopf._core.engines.peering import Identity
from kubernetes import client

from commerce_jobs import probes
from commerce_jobs.api_names import FIELD_MANAGER
from commerce_jobs.config import ConfigError, OperatorConfig
from commerce_jobs.kopf_handlers import CLIENT_TIMEOUT  # importing it registers the handlers with kopf
from commerce_jobs.kubeclient import api_client
from commerce_jobs.leader import LeaderElection, LeaderSettings, default_identity
from commerce_jobs.probes import Phase, Snapshot
from commerce_jobs.watchhealth import WatchHealth

if TYPE_CHECKING:
    from commerce_jobs.console.app import ConsoleSettings
    from commerce_jobs.metrics_server import MetricsSettings

# Where the kubelet reads a container's last words (the default terminationMessagePath); written only when it exists.
TERMINATION_LOG = Path("/dev/termination-log")


def _workers_running(memo: kopf.Memo) -> bool:
    # The controllers' worker tasks, the retention loop and the controller's watch streams: each runs for ever, so
    # one that is done has died.
    tasks = [*memo.controller.tasks, *memo.crons.tasks, *memo.streams.tasks]
    return bool(tasks) and not any(task.done() for task in tasks)


def _watched_paths(insights: Insights) -> set[str]:
    """The URL paths of the watch streams that kopf opens (the cron controller's): each watched resource in each
    served namespace (None: cluster-wide). Empty until kopf has chosen them, a moment after its start."""
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
    expected = _watched_paths(insights) | memo.streams.paths
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
    # The cache holds every CommerceJob (50,000 finished ones are about 1.5 million Python objects), all made at a
    # restart's LIST: with the default thresholds (700, 10, 10) the cyclic collector went through the growing heap so
    # often that it took about half of the time to read that LIST. The operator's objects seldom form cycles.
    gc.set_threshold(100_000, 20, 20)
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
