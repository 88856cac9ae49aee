"""A queue backlog, in the shape of JMSJobQueueBundle's issue #142 (a loop of 70 s with many jobs waiting): N
CommerceJobs wait in one queue with ``maxRunning: 4``; each time a slot frees, how long until the next Job exists.

Four holder jobs (their pods run for an hour) take the queue's slots; then the N jobs are created, and the phase waits
until the operator has marked every one of them Queued, so that the measurement sees a settled backlog, not the
operator's work on its creation. The holders are then canceled, and the backlog runs: each job's pod runs ~1 s, its
end frees its slot for the next job (priority, then creation order). Slots free one after the other, each to exactly
one next job, so the k-th slot to free (a job seen final through a watch) is matched with the k-th backlog Job to be
created (seen through a watch): that difference is the operator's reaction to a freed slot, which must not grow with
the number waiting (the holders' four cancels, a burst of four frees at once, are reported apart). ``samples`` frees
are measured (at most half the backlog, so that it stays about N), then the rest is deleted.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.blocked import _States, _stats
from bench.harness import GROUP, NAMESPACE, SIM, VERSION, BenchCluster, Recorder, retrying

QUEUE = "backlog"
MAX_RUNNING = 4
FINAL = ("Finished", "Failed", "Canceled", "Terminated", "Incomplete")


def _create(bench: BenchCluster, name: str, duration: str) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CommerceJob", "metadata": {"name": name},
            "spec": {"command": "silver:import", "queue": QUEUE,
                     "podAnnotations": {**SIM, "sim.commercejobs.dev/duration": duration}}}  # fmt: skip
    retrying(bench.custom.create_namespaced_custom_object, GROUP, VERSION, NAMESPACE, "commercejobs", body)


def run_backlog(bench: BenchCluster, waiting: int, samples: int) -> dict[str, Any]:
    bench.wait_all_final()
    bench.clear_commercejobs()
    bench.restart_operator({"queues": {QUEUE: {"maxRunning": MAX_RUNNING}}})
    samples = max(1, min(samples, waiting // 2))
    states = _States()
    job_seen: dict[str, float] = {}
    job_done: dict[str, float] = {}
    lock = threading.Lock()

    def on_job(kind: str, job: dict[str, Any], when: float) -> None:
        name = job["metadata"]["name"]
        with lock:
            job_seen.setdefault(name, when)
            if any(c.get("type") == "Complete" and c.get("status") == "True"
                   for c in (job.get("status") or {}).get("conditions") or []):  # fmt: skip
                job_done.setdefault(name, when)

    cjob_recorder = Recorder(bench._list("commercejobs"), states.on_event)
    job_recorder = Recorder(bench._list_jobs_raw, on_job)
    holders, prefix = [f"holder-{waiting}-{i}" for i in range(MAX_RUNNING)], f"backlog-{waiting}-"
    try:
        for name in holders:
            _create(bench, name, "1h")
        states.wait(f"holder-{waiting}-", "Running", MAX_RUNNING, timeout=300)
        began = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: _create(bench, f"{prefix}{i:05d}", "1s"), range(waiting)))
        states.wait(prefix, "Pending", waiting, reason="Queued", timeout=3600)
        setup = time.monotonic() - began
        rss_queued = bench.operator_rss_mib()
        for name in holders:  # the first four slots free
            retrying(bench.custom.patch_namespaced_custom_object, GROUP, VERSION, NAMESPACE, "commercejobs", name,
                     {"spec": {"cancel": True}})  # fmt: skip
        deadline = time.monotonic() + 600 + samples
        while _created(job_seen, lock, prefix) < samples + MAX_RUNNING and time.monotonic() < deadline:
            time.sleep(0.5)  # a benchmark's coarse poll of a bulk outcome; the times come from the watches
        held = _first_final(states, f"holder-{waiting}-")
        frees = _first_final(states, prefix)
        with lock:
            created = sorted(t for name, t in job_seen.items() if name.startswith(prefix))
            done = sorted(t for name, t in job_done.items() if name.startswith(prefix))
    finally:
        cjob_recorder.stop()
        job_recorder.stop()
    # The k-th slot to free goes to the k-th job to start. The four holders' cancels free four slots at once (a
    # burst, reported apart); after them, each slot frees when a backlog job's status says Finished. A Job's
    # completion precedes that by the operator's reaction to the Job, so "Job complete -> next Job" is both.
    burst = [(c - f) * 1000 for f, c in zip(held, created[:MAX_RUNNING], strict=False)]
    slot_to_job = [(c - f) * 1000 for f, c in zip(frees, created[MAX_RUNNING:], strict=False)][:samples]
    done_to_job = [(c - d) * 1000 for d, c in zip(done, created[MAX_RUNNING:], strict=False)][:samples]
    bench.stop_operator()  # the rest of the backlog goes without the operator's work for each DELETED event
    bench.clear_commercejobs()
    bench.restart_operator()
    return {
        "waiting": waiting,
        "max_running": MAX_RUNNING,
        "samples": len(slot_to_job),
        "setup_seconds": round(setup, 1),
        "slot_freed_to_next_job_ms": _stats(slot_to_job),
        "holders_canceled_to_first_jobs_ms": [round(x, 1) for x in burst],
        "job_complete_to_next_job_ms": _stats(done_to_job),
        "operator_rss_mib": rss_queued,
    }


def _first_final(states: _States, prefix: str) -> list[float]:
    """When each job of the prefix was first seen in any final state, in order (one time per job)."""
    by_name: dict[str, float] = {}
    with states.lock:
        for (state, _), names in states.seen.items():
            if state in FINAL:
                for name, when in names.items():
                    if name.startswith(prefix) and when < by_name.get(name, float("inf")):
                        by_name[name] = when
    return sorted(by_name.values())


def _created(job_seen: dict[str, float], lock: threading.Lock, prefix: str) -> int:
    with lock:
        return sum(1 for name in job_seen if name.startswith(prefix))


def table(results: list[dict[str, Any]]) -> str:
    lines = [f"backlog (maxRunning {MAX_RUNNING}) | slot freed -> next Job p50/p99/max ms | Job complete -> next Job "
             "p50/p99 ms | samples | RSS MiB"]  # fmt: skip
    for r in results:
        a, b = r["slot_freed_to_next_job_ms"], r["job_complete_to_next_job_ms"]
        lines.append(
            f"{r['waiting']} | {a.get('p50')}/{a.get('p99')}/{a.get('max')} | {b.get('p50')}/{b.get('p99')} | "
            f"{r['samples']} | {r['operator_rss_mib']}"
        )
    return "\n".join(lines)
