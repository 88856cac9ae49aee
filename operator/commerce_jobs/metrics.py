"""The operator's Prometheus metrics: what its jobs, crontab tasks, queues and controllers do.

Three kinds of source, each as cheap as it can be:

- events that happen once (a job completes, an attempt starts or fails, a retention deletion, an API request) are
  counted when they happen, by hooks in the controller (``status_written``, ``retention_deleted``,
  ``template_resolved``) and in the work queues;
- states (jobs by state, queue occupancy, crontab tasks) are read from the controller's cache at scrape time by a
  custom collector (metrics_cache.py), so they cost nothing between scrapes;
- process metrics (CPU, memory, file descriptors, GC) from prometheus-client's own collectors.

Only the Lease holder has a cache: a standby serves the process metrics and ``commerce_jobs_leader 0``. The hooks
are module functions that do nothing until a ``Metrics`` is active (metrics off, or a standby).

Label values stay bounded whatever users create (metrics_labels.py).
"""

from __future__ import annotations

import logging
import platform
import time
import weakref
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from commerce_jobs import __version__, lifecycle
from commerce_jobs.api_names import COMMERCECRONJOB, COMMERCECRONJOBS, COMMERCEJOBS
from commerce_jobs.fields import spec_of, status_of
from commerce_jobs.metrics_cache import CacheCollector
from commerce_jobs.metrics_labels import DEFAULT_QUEUE, LabelVocabulary, api_route, error_reason, owner, timestamp

if TYPE_CHECKING:
    from commerce_jobs.config import OperatorConfig
    from commerce_jobs.controller import CommerceJobController
    from commerce_jobs.cron_controller import CronController
    from commerce_jobs.watchhealth import WatchHealth
    from commerce_jobs.workqueue import WorkQueue

# A job's run time: from a second to a night's import.
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800)
# From creation to start: instant when the queue is free, hours when it is backed up.
WAIT_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200)
# The controller's own steps (a reconcile, an API call, a key's time in the work queue).
STEP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
ATTEMPT_RESULTS = {
    lifecycle.FINISHED: "succeeded",
    lifecycle.FAILED: "failed",
    lifecycle.TERMINATED: "terminated",
    lifecycle.INCOMPLETE: "incomplete",
    lifecycle.CANCELED: "canceled",
}

# prometheus-client adds a `_created` series to every counter and histogram: twice the series for nothing a shop's
# dashboards use.
disable_created_metrics()


class Metrics:
    def __init__(self, config: OperatorConfig, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.config = config
        self.labels = LabelVocabulary(config.queue_limits, config.allowed_commands)
        self.controller: CommerceJobController | None = None
        self.crons: CronController | None = None
        self.watch_health: WatchHealth | None = None
        r = self.registry
        self.leader = Gauge("commerce_jobs_leader", "1 on the replica that acts (holds the Lease), 0 on a standby",
                            registry=r)  # fmt: skip
        build = Gauge("commerce_jobs_build_info", "The operator's version", ["version", "python", "kopf"], registry=r)
        build.labels(__version__, platform.python_version(), _version("kopf")).set(1)
        job = ["namespace", "queue", "command"]
        self.completions = Counter("commerce_jobs_job_completions", "CommerceJobs that reached a final state",
                                   [*job, "state"], registry=r)  # fmt: skip
        self.durations = Histogram("commerce_jobs_job_duration_seconds", "From a job's start to its final state",
                                   ["queue", "command", "state"], buckets=DURATION_BUCKETS, registry=r)  # fmt: skip
        self.queue_wait = Histogram("commerce_jobs_queue_wait_seconds", "From a job's creation to its first attempt",
                                    ["queue"], buckets=WAIT_BUCKETS, registry=r)  # fmt: skip
        self.attempts = Counter("commerce_jobs_attempts", "Attempts (batch Jobs) started, and ended by result",
                                [*job, "result"], registry=r)  # fmt: skip
        self.retention_trees = Counter("commerce_jobs_retention_deletions", "Job trees deleted by retention",
                                       ["namespace"], registry=r)  # fmt: skip
        self.retention_jobs = Counter("commerce_jobs_retention_deleted_jobs",
                                      "CommerceJobs deleted by retention (a tree counts all its jobs)", ["namespace"],
                                      registry=r)  # fmt: skip
        self.api_requests = Counter("commerce_jobs_api_requests", "Requests of the operator to the apiserver (its "
                                    "Kubernetes client's and kopf's)", ["verb", "resource", "code"],
                                    registry=r)  # fmt: skip
        self.api_latency = Histogram("commerce_jobs_api_request_duration_seconds", "Their duration",
                                     ["verb", "resource"], buckets=STEP_BUCKETS, registry=r)  # fmt: skip
        self.queue_adds = Counter("commerce_jobs_workqueue_adds", "Keys added to a controller's work queue",
                                  ["name"], registry=r)  # fmt: skip
        self.queue_latency = Histogram("commerce_jobs_workqueue_queue_duration_seconds",
                                       "How long a key waited in the work queue before a worker took it", ["name"],
                                       buckets=STEP_BUCKETS, registry=r)  # fmt: skip
        self.queue_retries = Counter("commerce_jobs_workqueue_retries", "Keys requeued with a backoff after a failure",
                                     ["name"], registry=r)  # fmt: skip
        self.reconciles = Counter("commerce_jobs_reconcile", "Reconciles, by result (success, requeue, error)",
                                  ["controller", "result"], registry=r)  # fmt: skip
        self.reconcile_errors = Counter("commerce_jobs_reconcile_errors", "Failed reconciles, by reason",
                                        ["controller", "reason"], registry=r)  # fmt: skip
        self.reconcile_time = Histogram("commerce_jobs_reconcile_duration_seconds", "The duration of a reconcile",
                                        ["controller"], buckets=STEP_BUCKETS, registry=r)  # fmt: skip
        r.register(CacheCollector(self))
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)

    def attach(self, controller: CommerceJobController, crons: CronController, watch_health: WatchHealth) -> None:
        """This replica acts: read its caches, count what its controllers and client do, and let the hooks record."""
        global _active
        self.controller, self.crons, self.watch_health = controller, crons, watch_health
        self.observe_queue(controller.queue, COMMERCEJOBS)
        self.observe_queue(crons.queue, COMMERCECRONJOBS)
        for api_client in [controller.api.core.api_client, *_clients]:
            self.instrument(api_client)
        self.leader.set(1)
        _active = self

    def detach(self) -> None:
        global _active
        if _active is self:
            _active = None

    def observe_queue(self, queue: WorkQueue[Any], name: str) -> None:
        queue.observer = QueueMetrics(self, name)

    def instrument(self, api_client: Any) -> None:
        """Counts every request of a kubernetes ApiClient (each call of the operator goes through its REST client)."""
        rest = api_client.rest_client
        if getattr(rest.request, "instrumented", False):
            return
        send = rest.request

        def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            code = "error"
            started = time.perf_counter()
            try:
                response = send(method, url, *args, **kwargs)
                code = str(response.status)
                return response
            except Exception as e:
                status = getattr(e, "status", None)
                code = str(status) if isinstance(status, int) and status else "error"
                raise
            finally:
                self.api_request(method, url, code, time.perf_counter() - started)

        request.instrumented = True  # type: ignore[attr-defined]
        rest.request = request

    def api_request(self, method: str, url: str, code: str, seconds: float) -> None:
        verb, resource = api_route(method, url)
        self.api_latency.labels(verb, resource).observe(seconds)
        self.api_requests.labels(verb, resource, code).inc()

    # -- what the controller reports ------------------------------------------------------------------------------
    def status_written(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
        """A CommerceJob's status was written: count the attempt that started or ended, and the final state."""
        old, new = status_of(before), status_of(after)
        meta, spec = after.get("metadata") or {}, spec_of(after)
        cron = owner(meta, COMMERCECRONJOB)
        if cron and self.crons is not None:
            task = self.crons.crons.get((meta.get("namespace", ""), cron))
            if task is not None and spec_of(task).get("command") == spec.get("command"):
                self.labels.learn(spec.get("command"))
        namespace = str(meta.get("namespace", ""))
        queue, command = self.labels.queue(spec.get("queue", DEFAULT_QUEUE)), self.labels.command(spec.get("command"))
        old_attempts, new_attempts = int(old.get("attempts") or 0), int(new.get("attempts") or 0)
        was_backing_off = old.get("reason") == "RetryBackoff"
        if new_attempts > old_attempts:
            if old_attempts and not was_backing_off:  # retried at once: the failure was never recorded on its own
                self.attempts.labels(namespace, queue, command, "failed").inc()
            self.attempts.labels(namespace, queue, command, "started").inc()
            if new_attempts == 1:
                created, started = timestamp(meta.get("creationTimestamp")), timestamp(new.get("startTime"))
                if created is not None and started is not None:
                    self.queue_wait.labels(queue).observe(max(started - created, 0.0))
        elif new.get("reason") == "RetryBackoff" and not was_backing_off:
            self.attempts.labels(namespace, queue, command, "failed").inc()
        state = new.get("state")
        if state in lifecycle.FINAL_STATES and old.get("state") not in lifecycle.FINAL_STATES:
            self.completions.labels(namespace, queue, command, state).inc()
            if new_attempts and not was_backing_off:
                self.attempts.labels(namespace, queue, command, ATTEMPT_RESULTS[state]).inc()
            started = timestamp(new.get("startTime") or old.get("startTime"))
            ended = timestamp(new.get("completionTime"))
            if started is not None and ended is not None:
                self.durations.labels(queue, command, state).observe(max(ended - started, 0.0))

    def retention_deleted(self, namespace: str, jobs: int) -> None:
        self.retention_trees.labels(namespace).inc()
        self.retention_jobs.labels(namespace).inc(jobs)


class QueueMetrics:
    """A work queue's observer (``workqueue.QueueObserver``): adds, waits, retries and reconciles of one queue."""

    def __init__(self, metrics: Metrics, name: str) -> None:
        self.name = name
        self._adds = metrics.queue_adds.labels(name)
        self._latency = metrics.queue_latency.labels(name)
        self._retries = metrics.queue_retries.labels(name)
        self._time = metrics.reconcile_time.labels(name)
        self._results = {r: metrics.reconciles.labels(name, r) for r in ("success", "requeue", "error")}
        self._errors = metrics.reconcile_errors

    def added(self) -> None:
        self._adds.inc()

    def waited(self, seconds: float) -> None:
        self._latency.observe(seconds)

    def retried(self) -> None:
        self._retries.inc()

    def reconciled(self, seconds: float, result: str, error: BaseException | None = None) -> None:
        self._time.observe(seconds)
        self._results[result].inc()
        if error is not None:
            self._errors.labels(self.name, error_reason(error)).inc()


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


# -- the hooks: no-ops unless this replica's Metrics is attached ----------------------------------------------------
# A metric must never stop a job: a hook that fails (an object the counting did not foresee) is logged, not raised
# into the controller's step, which has already written its status.
_active: Metrics | None = None
_clients: weakref.WeakSet[Any] = weakref.WeakSet()  # the operator's other API clients (console, Lease)
log = logging.getLogger("commerce_jobs.metrics")


def track(api_client: Any) -> None:
    """An API client of the operator whose requests count too, once metrics are attached (or at once if they are)."""
    _clients.add(api_client)
    if _active is not None:
        _active.instrument(api_client)


def session_trace_config() -> aiohttp.TraceConfig:
    """Counts the requests of an aiohttp session (kopf's, the watch streams') in ``commerce_jobs_api_requests_total``,
    as ``instrument`` counts the kubernetes client's: kopf_handlers puts it on every session that it makes. A
    request's duration is until its response's headers (a watch's stream then lasts minutes), as for the kubernetes
    client's unparsed answers."""

    async def on_start(_: aiohttp.ClientSession, context: SimpleNamespace, __: aiohttp.TraceRequestStartParams) -> None:
        context.started = time.perf_counter()

    async def on_end(_: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestEndParams) -> None:
        api_request(params.method, str(params.url), str(params.response.status), time.perf_counter() - context.started)

    async def on_error(
        _: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestExceptionParams
    ) -> None:
        api_request(params.method, str(params.url), "error", time.perf_counter() - context.started)

    config = aiohttp.TraceConfig()
    config.on_request_start.append(on_start)
    config.on_request_end.append(on_end)
    config.on_request_exception.append(on_error)
    return config


def api_request(method: str, url: str, code: str, seconds: float) -> None:
    """A request sent through an aiohttp session: kopf's or a watch stream's (see session_trace_config)."""
    if _active is not None:
        try:
            _active.api_request(method, url, code, seconds)
        except Exception:
            log.exception("metrics: counting an API request failed")


def status_written(before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    if _active is not None:
        try:
            _active.status_written(before, after)
        except Exception:
            log.exception("metrics: counting a status write failed")


def retention_deleted(namespace: str, jobs: int) -> None:
    if _active is not None:
        _active.retention_deleted(namespace, jobs)


def template_resolved(fields: Mapping[str, Any]) -> None:
    """The fields that a job took from its CommerceJobTemplate: their commands may be labels."""
    if _active is not None:
        try:
            _active.labels.learn_tree(fields)
        except Exception:
            log.exception("metrics: learning a template's commands failed")
