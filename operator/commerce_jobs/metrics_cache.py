"""The gauges read from the controller's cache when Prometheus scrapes (a custom collector): jobs by state, queue
occupancy, crontab tasks, work queue depth and watch health. They cost nothing between scrapes; a scrape walks the
cache once.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from commerce_jobs import lifecycle, schedule
from commerce_jobs.api_names import COMMERCECRONJOB, COMMERCECRONJOBS, COMMERCEJOBS
from commerce_jobs.fields import spec_of, status_of
from commerce_jobs.metrics_labels import DEFAULT_QUEUE, LabelVocabulary, owner, timestamp

if TYPE_CHECKING:
    from commerce_jobs.controller import CommerceJobController
    from commerce_jobs.cron_controller import CronController
    from commerce_jobs.metrics import Metrics
    from commerce_jobs.watchhealth import WatchHealth


def _now() -> datetime:
    """The scrape's clock (a test sets it, so that ages are exact however long the run has lasted)."""
    return datetime.now(UTC)


class CacheCollector:
    """The gauges read from the controller's cache at scrape time (on the event loop's thread, like every reader of
    the cache, so a scrape sees one consistent state)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        controller = self.metrics.controller
        if controller is None:
            return
        now = _now()
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
        # The admission's own view: the jobs that hold a slot, and those that could start now but wait for one.
        for queue, holders, waiters in controller.admission.queues():
            label = labels.queue(queue)
            running[label] += len(holders)
            for key in waiters:
                job = controller.view.get(key)
                if job is None:
                    continue
                waiting[label] += 1
                created = lifecycle.parse_time(job["metadata"].get("creationTimestamp")) or now
                after = lifecycle.parse_time(spec_of(job).get("executeAfter"))
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
        depth.add_metric([COMMERCEJOBS], len(controller.queue))
        if self.metrics.crons is not None:
            depth.add_metric([COMMERCECRONJOBS], len(self.metrics.crons.queue))
        yield depth


def _scan(
    controller: CommerceJobController, labels: LabelVocabulary
) -> tuple[Tally[tuple[str, str, str]], dict[tuple[str, str], float]]:
    """One pass over the cache (10,000s of jobs): jobs by (namespace, queue, state), and the newest success of each
    crontab task's runs (it may be newer than the CronJob's lastSuccessfulTime: a run that succeeded on a retry)."""
    counts: Tally[tuple[str, str, str]] = Tally()
    succeeded: dict[tuple[str, str], float] = {}
    for (namespace, _), job in controller.view.items():
        status = status_of(job)
        state = status.get("state") or lifecycle.PENDING
        counts[(namespace, labels.queue(spec_of(job).get("queue", DEFAULT_QUEUE)), state)] += 1
        if state == lifecycle.FINISHED and job["metadata"].get("ownerReferences"):
            cron = owner(job["metadata"], COMMERCECRONJOB)
            completed = timestamp(status.get("completionTime")) if cron else None
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
        spec, status = spec_of(task), status_of(task)
        ids = [namespace, name]
        last_schedule = timestamp(status.get("lastScheduleTime"))
        if last_schedule is not None:
            families["schedule"].add_metric(ids, last_schedule)
        last_success = max(timestamp(status.get("lastSuccessfulTime")) or 0.0, succeeded.get((namespace, name), 0))
        if last_success:
            families["success"].add_metric(ids, last_success)
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        families["ready"].add_metric(ids, 1 if ready else 0)
        families["suspended"].add_metric(ids, 1 if spec.get("suspend") else 0)
        created = timestamp(task["metadata"].get("creationTimestamp")) or now.timestamp()
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
