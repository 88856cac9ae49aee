"""JMSJobQueueBundle's issue #142, as a benchmark: thousands of jobs blocked on dependencies, and a stream of jobs that
can start.

JMS looked for a startable job with one query per blocked job, on every loop: with about 2,000 blocked jobs a loop took
about 70 s. Here a blocked job is not looked at until a dependency of it ends (the index wakes exactly its waiters),
and it does not compete for its queue. So the time from a job's start condition to its Job must not grow with the
number of blocked jobs. For each number of blocked jobs (all in the stream's queue, at a higher priority, waiting for
a gate job that waits for its executeAfter), this measures:

  startable   creation -> Job of a job that can start at once (its start condition is its creation)
  dependent   dependency Finished -> Job, for pairs (a short job, and a job whose dependsOn names it)
  cascade     the gate is canceled: seconds until every blocked job is Canceled (DependencyFailed), and the writes
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.harness import GROUP, NAMESPACE, SIM, VERSION, BenchCluster, Recorder, percentile

QUEUE = "shop"
QUEUE_LIMIT = 100  # well above the stream's need: the queue's admission runs, its limit is not what is measured


def _create(bench: BenchCluster, name: str, **spec: Any) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CommerceJob", "metadata": {"name": name},
            "spec": {"command": "silver:import", "queue": QUEUE, "podAnnotations": SIM, **spec}}  # fmt: skip
    bench.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "commercejobs", body)


class _States:
    """When (client clock) each CommerceJob was first seen in each (state, reason), from a watch."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], dict[str, float]] = {}  # (state, reason) -> name -> time
        self.lock = threading.Lock()

    def on_event(self, kind: str, obj: dict[str, Any], when: float) -> None:
        status = obj.get("status") or {}
        key = (str(status.get("state") or ""), str(status.get("reason") or ""))
        with self.lock:
            self.seen.setdefault(key, {}).setdefault(obj["metadata"]["name"], when)

    def times(self, prefix: str, state: str, reason: str | None = None) -> list[float]:
        """The first time each job of the prefix was seen in this state (with this reason)."""
        with self.lock:
            buckets = [names for (s, r), names in self.seen.items() if s == state and reason in (None, r)]
            first: dict[str, float] = {}
            for names in buckets:
                for name, when in names.items():
                    if name.startswith(prefix) and when < first.get(name, float("inf")):
                        first[name] = when
        return list(first.values())

    def wait(self, prefix: str, state: str, count: int, reason: str | None = None, timeout: float = 1800) -> float:
        """Until ``count`` jobs of the prefix were seen so; returns when the last of them was."""
        deadline = time.monotonic() + timeout
        while len(times := self.times(prefix, state, reason)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{prefix}*: {len(times)} of {count} seen {state} {reason or ''}")
            time.sleep(0.5)  # a benchmark's coarse poll of a bulk outcome; the times come from the watch
        return max(times)

    def first(self, name: str, state: str) -> float | None:
        with self.lock:
            times = [names[name] for (s, _), names in self.seen.items() if s == state and name in names]
        return min(times) if times else None


def run_blocked(bench: BenchCluster, blocked: int, rate: float, seconds: float) -> dict[str, Any]:
    bench.wait_all_final()
    bench.clear_commercejobs()
    bench.restart_operator({"queues": {QUEUE: {"maxRunning": QUEUE_LIMIT}}})
    states = _States()
    job_seen: dict[str, float] = {}
    cjob_recorder = Recorder(bench._list("commercejobs"), states.on_event)
    job_recorder = Recorder(bench._list_jobs_raw, lambda kind, job, when: job_seen.setdefault(job["metadata"]["name"],
                                                                                             when))  # fmt: skip
    try:
        gate, prefix = f"gate-{blocked}", f"blocked-{blocked}-"
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        _create(bench, gate, executeAfter=tomorrow)
        audit = bench.audit_position()
        began = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: _create(bench, f"{prefix}{i}", dependsOn=[gate], priority=10), range(blocked)))
        setup = states.wait(prefix, "Pending", blocked, reason="WaitingForDependencies") - began
        setup_writes = bench.operator_writes(audit, exclude=gate)

        startable, dependent = _stream(bench, states, job_seen, blocked, rate, seconds)
        rss = bench.operator_rss_mib()

        audit = bench.audit_position()
        began = time.monotonic()
        bench.custom.patch_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "commercejobs", gate,
                                                    {"spec": {"cancel": True}})  # fmt: skip
        cascade = states.wait(prefix, "Canceled", blocked, reason="DependencyFailed") - began
        cascade_writes = bench.operator_writes(audit, exclude=gate)
    finally:
        cjob_recorder.stop()
        job_recorder.stop()
    bench.wait_all_final()
    bench.clear_commercejobs()
    bench.restart_operator()
    return {
        "blocked": blocked,
        "blocked_setup_seconds": round(setup, 1),
        "writes_per_blocked_job": round(setup_writes / blocked, 2),
        "stream": {"rate_per_second": rate, "seconds": seconds},
        "startable_creation_to_job_ms": _stats(startable),
        "dependency_finished_to_job_ms": _stats(dependent),
        "operator_rss_mib": rss,
        "cascade_cancel_seconds": round(cascade, 2),
        "cascade_writes_per_job": round(cascade_writes / blocked, 2),
    }


def _stream(
    bench: BenchCluster, states: _States, job_seen: dict[str, float], blocked: int, rate: float, seconds: float
) -> tuple[list[float], list[float]]:
    """Each tick: one job that can start, and a pair (a short job, then one that waits for it)."""
    total = int(rate * seconds)
    created: dict[str, float] = {}
    start = time.monotonic()
    for i in range(total):
        if (delay := start + i / rate - time.monotonic()) > 0:
            time.sleep(delay)  # the load generator's own pacing
        free, first, then = f"free-{blocked}-{i}", f"first-{blocked}-{i}", f"then-{blocked}-{i}"
        _create(bench, free)
        created[free] = time.monotonic()
        _create(bench, first)
        _create(bench, then, dependsOn=[first])
    states.wait(f"then-{blocked}-", "Finished", total, timeout=600)
    states.wait(f"free-{blocked}-", "Finished", total, timeout=600)
    startable = [(job_seen[f"{name}-1"] - t) * 1000 for name, t in created.items() if f"{name}-1" in job_seen]
    dependent = []
    for i in range(total):
        finished = states.first(f"first-{blocked}-{i}", "Finished")
        job = job_seen.get(f"then-{blocked}-{i}-1")
        if finished is not None and job is not None:
            dependent.append((job - finished) * 1000)
    return startable, dependent


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {"p50": round(percentile(values, 50), 1), "p95": round(percentile(values, 95), 1),
            "p99": round(percentile(values, 99), 1), "max": round(max(values), 1), "count": len(values)}  # fmt: skip


def table(results: list[dict[str, Any]]) -> str:
    lines = ["blocked | startable create->Job p50/p99 ms | dependency Finished->Job p50/p99 ms | writes/blocked | "
             "cascade cancel s (writes/job) | RSS MiB"]  # fmt: skip
    for r in results:
        a, b = r["startable_creation_to_job_ms"], r["dependency_finished_to_job_ms"]
        lines.append(
            f"{r['blocked']} | {a.get('p50')}/{a.get('p99')} | {b.get('p50')}/{b.get('p99')} | "
            f"{r['writes_per_blocked_job']} | {r['cascade_cancel_seconds']} ({r['cascade_writes_per_job']}) | "
            f"{r['operator_rss_mib']}"
        )
    return "\n".join(lines)
