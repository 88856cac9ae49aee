"""The operator's Prometheus metrics: what its jobs, crontab tasks, queues and controllers do.

Three kinds of source, each as cheap as it can be:

- events that happen once (a job completes, an attempt starts or fails, a retention deletion, an API request) are
  counted when they happen, by hooks in the controller (``status_written``, ``retention_deleted``,
  ``template_resolved``) and in the work queues;
- states (jobs by state, queue occupancy, crontab tasks) are read from the controller's cache at scrape time by a
  custom collector, so they cost nothing between scrapes;
- process metrics (CPU, memory, file descriptors, GC) from prometheus-client's own collectors.

Only the Lease holder has a cache: a standby serves the process metrics and ``commerce_jobs_leader 0``. The hooks
are module functions that do nothing until a ``Metrics`` is active (metrics off, or a standby).

Label values stay bounded whatever users create (``LabelVocabulary``): a job's name is never a label; a queue is
its name only if the operator's configuration lists it (or it is ``default``), else ``other``; a command is its
name only if it is the command of a CommerceJobTemplate or of a CommerceCronJob (learned as they are used, at most
``MAX_LEARNED_COMMANDS``), else the allowlist pattern that it matched, else ``other``.
"""

from __future__ import annotations

import platform
import time
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from commerce_jobs import __version__, lifecycle, schedule

if TYPE_CHECKING:
    from commerce_jobs.config import OperatorConfig
    from commerce_jobs.controller import CommerceJobController
    from commerce_jobs.cron_controller import CronController
    from commerce_jobs.watchhealth import WatchHealth
    from commerce_jobs.workqueue import WorkQueue

OTHER = "other"
DEFAULT_QUEUE = "default"
MAX_LEARNED_COMMANDS = 100
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


# -- bounded labels -----------------------------------------------------------------------------------------------
class LabelVocabulary:
    """The values that the ``queue`` and ``command`` labels may take (see the module's docstring)."""

    def __init__(self, queues: Iterable[str], patterns: Iterable[str], cap: int = MAX_LEARNED_COMMANDS) -> None:
        self.queues = frozenset(queues) | {DEFAULT_QUEUE}
        self.patterns = tuple(patterns)
        self.cap = cap
        self.learned: set[str] = set()

    def queue(self, name: Any) -> str:
        return name if isinstance(name, str) and name in self.queues else OTHER

    def command(self, command: Any) -> str:
        if not isinstance(command, str):
            return OTHER
        if command in self.learned:
            return command
        return next((p for p in self.patterns if fnmatchcase(command, p)), OTHER)

    def learn(self, command: Any) -> None:
        """A command that a template or a crontab task names: it may be a label of its own, up to ``cap`` of them."""
        if isinstance(command, str) and command and len(self.learned) < self.cap:
            self.learned.add(command)

    def learn_tree(self, spec: Mapping[str, Any]) -> None:
        """The command of a template's fields and of its dependingJobs, at any depth."""
        self.learn(spec.get("command"))
        for item in spec.get("dependingJobs") or []:
            if isinstance(item, Mapping):
                self.learn_tree(item)


def api_route(method: str, url: str) -> tuple[str, str]:
    """(verb, resource) of a request to the apiserver, as Kubernetes' audit log names them: names of objects and
    namespaces are dropped, so the labels are bounded by the resources that the code calls."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    if segments[:1] == ["api"]:
        segments = segments[2:]
    elif segments[:1] == ["apis"]:
        segments = segments[3:]
    else:
        return method.lower(), OTHER
    if len(segments) >= 2 and segments[0] == "namespaces" and len(segments) > 2:
        segments = segments[2:]  # the namespace's objects, not the namespace itself
    resource = segments[0] if segments else OTHER
    named = len(segments) >= 2
    if len(segments) >= 3:
        resource = f"{resource}/{segments[2]}"
    method = method.upper()
    if method == "GET":
        verb = "get" if named else ("watch" if parse_qs(parts.query).get("watch") == ["true"] else "list")
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete" if named else
                "deletecollection"}.get(method, method.lower())  # fmt: skip
    return verb, resource


def error_reason(error: BaseException) -> str:
    """A failed reconcile's reason label: the exception's class, and the HTTP status of an API error."""
    status = getattr(error, "status", None)
    return f"{type(error).__name__}:{status}" if isinstance(status, int) else type(error).__name__


def _timestamp(value: Any) -> float | None:
    try:
        parsed = lifecycle.parse_time(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return parsed.timestamp() if parsed else None


def _owner(meta: Mapping[str, Any], kind: str) -> str | None:
    return next((str(r.get("name")) for r in meta.get("ownerReferences") or [] if r.get("kind") == kind), None)


# -- the metrics --------------------------------------------------------------------------------------------------
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
        self.api_requests = Counter("commerce_jobs_api_requests", "Requests of the operator's Kubernetes client",
                                    ["verb", "resource", "code"], registry=r)  # fmt: skip
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
        self.observe_queue(controller.queue, "commercejobs")
        self.observe_queue(crons.queue, "commercecronjobs")
        self.instrument(controller.api.core.api_client)
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
            verb, resource = api_route(method, url)
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
                self.api_latency.labels(verb, resource).observe(time.perf_counter() - started)
                self.api_requests.labels(verb, resource, code).inc()

        request.instrumented = True  # type: ignore[attr-defined]
        rest.request = request

    # -- what the controller reports ------------------------------------------------------------------------------
    def status_written(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
        """A CommerceJob's status was written: count the attempt that started or ended, and the final state."""
        old, new = before.get("status") or {}, after.get("status") or {}
        meta, spec = after.get("metadata") or {}, after.get("spec") or {}
        cron = _owner(meta, "CommerceCronJob")
        if cron and self.crons is not None:
            task = self.crons.crons.get((meta.get("namespace", ""), cron))
            if task is not None and (task.get("spec") or {}).get("command") == spec.get("command"):
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
                created, started = _timestamp(meta.get("creationTimestamp")), _timestamp(new.get("startTime"))
                if created is not None and started is not None:
                    self.queue_wait.labels(queue).observe(max(started - created, 0.0))
        elif new.get("reason") == "RetryBackoff" and not was_backing_off:
            self.attempts.labels(namespace, queue, command, "failed").inc()
        state = new.get("state")
        if state in lifecycle.FINAL_STATES and old.get("state") not in lifecycle.FINAL_STATES:
            self.completions.labels(namespace, queue, command, state).inc()
            if new_attempts and not was_backing_off:
                self.attempts.labels(namespace, queue, command, ATTEMPT_RESULTS[state]).inc()
            started = _timestamp(new.get("startTime") or old.get("startTime"))
            ended = _timestamp(new.get("completionTime"))
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


class CacheCollector:
    """The gauges read from the controller's cache at scrape time (on the event loop's thread, like every reader of
    the cache, so a scrape sees one consistent state)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        controller = self.metrics.controller
        if controller is None:
            return
        now = datetime.now(UTC)
        labels = self.metrics.labels
        counts, succeeded = _scan(controller, labels)
        yield _jobs(counts)
        yield from self._queues(controller, labels, now)
        if self.metrics.crons is not None:
            yield from _crons(self.metrics.crons, succeeded, now)
        yield from self._work_queues(controller)
        if self.metrics.watch_health is not None:
            yield from _watches(self.metrics.watch_health, time.monotonic())
        dropped = GaugeMetricFamily("commerce_jobs_events_dropped", "Kubernetes Events dropped (the send queue was "
                                    "full) since the operator started")  # fmt: skip
        dropped.add_metric([], controller.events.dropped)
        yield dropped

    def _queues(self, controller: CommerceJobController, labels: LabelVocabulary, now: datetime) -> Iterator[Metric]:
        config = self.metrics.config
        names = sorted(labels.queues)
        running: Tally[str] = Tally(dict.fromkeys(names, 0))
        waiting: Tally[str] = Tally(dict.fromkeys(names, 0))
        oldest: dict[str, float] = dict.fromkeys(names, 0.0)
        for queue, keys in controller.live_by_queue.items():
            label = labels.queue(queue)
            for key in keys:
                job = controller.cjobs.get(key)
                if job is None:
                    continue
                spec, status = job.get("spec") or {}, job.get("status") or {}
                state = status.get("state")
                if state == lifecycle.RUNNING or key in controller.admitted:
                    running[label] += 1
                elif state in (None, lifecycle.PENDING) and not spec.get("cancel"):
                    created = lifecycle.parse_time(job["metadata"].get("creationTimestamp")) or now
                    after = lifecycle.parse_time(spec.get("executeAfter"))
                    if after is not None and after > now:
                        continue  # waits for its time, not for its queue
                    waiting[label] += 1
                    since = max(created, after) if after else created
                    oldest[label] = max(oldest.get(label, 0.0), (now - since).total_seconds())
        family_running = GaugeMetricFamily("commerce_jobs_queue_running", "Jobs of the queue that run (or were just "
                                           "admitted)", labels=["queue"])  # fmt: skip
        family_waiting = GaugeMetricFamily("commerce_jobs_queue_waiting", "Jobs of the queue that wait for a slot",
                                           labels=["queue"])  # fmt: skip
        family_oldest = GaugeMetricFamily("commerce_jobs_queue_oldest_waiting_seconds",
                                          "How long the queue's longest-waiting job has waited (0: none waits)",
                                          labels=["queue"])  # fmt: skip
        family_limit = GaugeMetricFamily("commerce_jobs_queue_limit", "The queue's maxRunning (queues with a limit)",
                                         labels=["queue"])  # fmt: skip
        for name in sorted(set(running) | set(waiting)):
            family_running.add_metric([name], running[name])
            family_waiting.add_metric([name], waiting[name])
            family_oldest.add_metric([name], round(oldest.get(name, 0.0), 3))
        for name in names:
            limit = config.queue_limit(name)
            if limit is not None:
                family_limit.add_metric([name], limit)
        yield from (family_running, family_waiting, family_oldest, family_limit)

    def _work_queues(self, controller: CommerceJobController) -> Iterator[Metric]:
        depth = GaugeMetricFamily("commerce_jobs_workqueue_depth", "Keys waiting in a controller's work queue",
                                  labels=["name"])  # fmt: skip
        depth.add_metric(["commercejobs"], len(controller.queue))
        if self.metrics.crons is not None:
            depth.add_metric(["commercecronjobs"], len(self.metrics.crons.queue))
        yield depth


def _scan(
    controller: CommerceJobController, labels: LabelVocabulary
) -> tuple[Tally[tuple[str, str, str]], dict[tuple[str, str], float]]:
    """One pass over the cache (10,000s of jobs): jobs by (namespace, queue, state), and the newest success of each
    crontab task's runs (it may be newer than the CronJob's lastSuccessfulTime: a run that succeeded on a retry)."""
    counts: Tally[tuple[str, str, str]] = Tally()
    succeeded: dict[tuple[str, str], float] = {}
    for (namespace, _), job in controller.cjobs.items():
        status = job.get("status") or {}
        state = status.get("state") or lifecycle.PENDING
        counts[(namespace, labels.queue((job.get("spec") or {}).get("queue", DEFAULT_QUEUE)), state)] += 1
        if state == lifecycle.FINISHED and job["metadata"].get("ownerReferences"):
            cron = _owner(job["metadata"], "CommerceCronJob")
            completed = _timestamp(status.get("completionTime")) if cron else None
            if cron and completed is not None:
                key = (namespace, cron)
                succeeded[key] = max(succeeded.get(key, 0.0), completed)
    return counts, succeeded


def _jobs(counts: Tally[tuple[str, str, str]]) -> Metric:
    family = GaugeMetricFamily("commerce_jobs_jobs", "CommerceJobs in the operator's cache, by state",
                               labels=["namespace", "queue", "state"])  # fmt: skip
    for key, count in sorted(counts.items()):
        family.add_metric(list(key), count)
    return family


def _crons(crons: CronController, succeeded: dict[tuple[str, str], float], now: datetime) -> Iterator[Metric]:
    families = {
        "schedule": GaugeMetricFamily("commerce_jobs_cron_last_schedule_timestamp_seconds",
                                      "When the crontab task's CronJob last started a run", labels=["namespace",
                                      "name"]),
        "success": GaugeMetricFamily("commerce_jobs_cron_last_success_timestamp_seconds",
                                     "When a run of the crontab task last succeeded", labels=["namespace", "name"]),
        "next": GaugeMetricFamily("commerce_jobs_cron_next_schedule_timestamp_seconds",
                                  "When the crontab task runs next", labels=["namespace", "name"]),
        "missed": GaugeMetricFamily("commerce_jobs_cron_missed_schedules",
                                    "Scheduled times since the last success (or the creation), at most 100",
                                    labels=["namespace", "name"]),
        "ready": GaugeMetricFamily("commerce_jobs_cron_ready", "1 when the task's CronJob is in step (Ready=True)",
                                   labels=["namespace", "name"]),
        "suspended": GaugeMetricFamily("commerce_jobs_cron_suspended", "1 when the task is suspended",
                                       labels=["namespace", "name"]),
    }  # fmt: skip
    for (namespace, name), task in sorted(crons.crons.items()):
        spec, status = task.get("spec") or {}, task.get("status") or {}
        ids = [namespace, name]
        last_schedule = _timestamp(status.get("lastScheduleTime"))
        if last_schedule is not None:
            families["schedule"].add_metric(ids, last_schedule)
        last_success = max(_timestamp(status.get("lastSuccessfulTime")) or 0.0, succeeded.get((namespace, name), 0))
        if last_success:
            families["success"].add_metric(ids, last_success)
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        families["ready"].add_metric(ids, 1 if ready else 0)
        families["suspended"].add_metric(ids, 1 if spec.get("suspend") else 0)
        created = _timestamp(task["metadata"].get("creationTimestamp")) or now.timestamp()
        since = datetime.fromtimestamp(max(last_success, created), UTC)
        try:
            upcoming = schedule.next_run(str(spec.get("schedule", "")), spec.get("timeZone"), now)
            missed = schedule.missed_since(str(spec.get("schedule", "")), spec.get("timeZone"), since, now)
        except schedule.ScheduleError:
            continue  # refused by Kubernetes too: Ready=False says why
        if upcoming is not None:
            families["next"].add_metric(ids, upcoming.timestamp())
        families["missed"].add_metric(ids, missed)
    yield from families.values()


def _watches(health: WatchHealth, now: float) -> Iterator[Metric]:
    """kopf's LIST and WATCH requests, by resource, as watchhealth traces them."""
    healthy = GaugeMetricFamily("commerce_jobs_watch_healthy", "0 while a resource's watch fails or hangs past its "
                                "grace period (the liveness probe's signal)", labels=["resource"])  # fmt: skip
    requests = CounterMetricFamily("commerce_jobs_watch_requests", "LIST and WATCH requests of kopf, by result",
                                   labels=["resource", "verb", "code"])  # fmt: skip
    restarts = CounterMetricFamily("commerce_jobs_watch_restarts", "Watch streams opened again (kopf reopens them "
                                   "every few minutes, and after each failure)", labels=["resource"])  # fmt: skip
    failing = {resource for resource, _ in health.failing_resources(now)}
    for resource in sorted(health.resources()):
        healthy.add_metric([resource], 0 if resource in failing else 1)
    for (resource, verb, code), count in sorted(health.requests.items()):
        requests.add_metric([resource, verb, code], count)
    for resource, count in sorted(health.restarts.items()):
        restarts.add_metric([resource], count)
    yield from (healthy, requests, restarts)


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


# -- the hooks: no-ops unless this replica's Metrics is attached ----------------------------------------------------
_active: Metrics | None = None


def status_written(before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    if _active is not None:
        _active.status_written(before, after)


def retention_deleted(namespace: str, jobs: int) -> None:
    if _active is not None:
        _active.retention_deleted(namespace, jobs)


def template_resolved(fields: Mapping[str, Any]) -> None:
    """The fields that a job took from its CommerceJobTemplate: their commands may be labels."""
    if _active is not None:
        _active.labels.learn_tree(fields)
