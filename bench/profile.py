"""A sampling profile of the operator process while a phase runs (py-spy, pinned in pyproject's test extra), and its
summary: where the operator's CPU goes, by thread, by frame, and by the candidates of issue 14 for removing it.

py-spy attaches to the running process (no restart, no change to what is measured beyond its sampling, which runs
``--nonblocking``: the operator is never paused). Only samples of the thread that holds the GIL are kept (``--gil``):
a thread that waits for a socket, its queue or epoll is not working, and in CPython only the GIL's holder runs Python
code. So a share is of the Python work the operator did, and ``gil_busy`` is the fraction of the time the GIL was
held: 1.0 is the ceiling of this one process, however many cores the machine has.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes import client

if TYPE_CHECKING:
    from bench.harness import BenchCluster

MANAGED_BY = "app.kubernetes.io/managed-by=commerce-jobs"  # the operator's Job and pod streams select these

RATE = 100  # samples per second

# The candidates for less overhead (issue 14), as the frames that make them up; a sample counts for a candidate when
# any frame of its stack matches (inclusive). Matching is by the frame's "function (file)" text.
CANDIDATES: dict[str, tuple[str, ...]] = {
    "the operator's watch streams (watchstream.py: reading, orjson, the observe_* handlers)": (
        "commerce_jobs/watchstream.py",
    ),
    "kopf watch streams (reading, JSON decoding)": ("kopf/_cogs/clients/watching.py", "kopf/_cogs/clients/api.py"),
    "kopf event dispatch (queueing, processing, handler calls)": (
        "kopf/_core/reactor/",
        "kopf/_core/engines/",
        "kopf/_core/actions/",
        "kopf/_core/intents/",
    ),
    "JSON encoding and decoding (json module, any caller)": ("json/decoder.py", "json/encoder.py", "json/__init__.py"),
    "the kubernetes client's pydantic argument validation (own time)": ("leaf:pydantic/",),
    "pod events in the operator (observe_pod)": ("observe_pod (",),
    "Job events in the operator (observe_job)": ("observe_job (",),
    "CommerceJob events in the operator (observe_commercejob)": ("observe_commercejob (",),
    "Kubernetes API calls (kubernetes client, urllib3)": ("kubernetes/client/", "urllib3/"),
    "the on-loop API calls (jobcalls.py, aiohttp's client)": ("commerce_jobs/jobcalls.py", "aiohttp/client"),
    "Events (commerce_jobs/events.py)": ("commerce_jobs/events.py",),
    "asyncio's own loop and transports (own time only)": (
        "leaf:asyncio/base_events.py",
        "leaf:asyncio/events.py",
        "leaf:asyncio/selector_events.py",
        "leaf:selectors.py",
    ),
    "logging": ("logging/__init__.py",),
}


# Each sample goes to the first of these that a frame of its stack matches (an exclusive split, adding up to 100 %):
# what would be saved if that part went.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("retention's periodic plan over every job (controller._retention_loop)", ("_retention_loop (",)),
    ("watch streams (watchstream.py), with the operator's observe_* handlers in it", ("commerce_jobs/watchstream.py",)),
    ("kopf watch streams: reading and JSON decoding", ("kopf/_cogs/clients/watching.py",)),
    ("kopf event dispatch, with the operator's observe_* handlers in it", ("kopf/_core/reactor/",)),
    ("Events: sending (JobCalls.post_event, events.py)", ("JobCalls.post_event (", "commerce_jobs/events.py")),
    ("status patches (JobCalls.patch_status)", ("JobCalls.patch_status (",)),
    ("Job creates (JobCalls.create_job)", ("JobCalls.create_job (",)),
    ("output reads (JobCalls.log_tail)", ("JobCalls.log_tail (",)),
    ("the on-loop calls' requests (jobcalls.py, aiohttp)", ("commerce_jobs/jobcalls.py",)),
    ("other API calls, in threads (kubeapi.py)", ("commerce_jobs/kubeapi.py",)),
    ("the work queue and reconciles (workqueue.py, controller.py)", ("commerce_jobs/workqueue.py",
                                                                     "commerce_jobs/controller.py")),
    ("thread pool hand-offs (submit, worker wake-ups)", ("concurrent/futures/",)),
    ("asyncio's loop, transports, TLS", ("asyncio/", "selectors.py", "ssl.py")),
)  # fmt: skip


class Profiler:
    """py-spy recording one process until stopped; the raw (collapsed) stacks go to ``raw``."""

    def __init__(self, pid: int, raw: Path) -> None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            raise RuntimeError("py-spy is missing: pip install -e '.[test]' (pyproject pins it)")
        self.raw = raw
        self.began = time.monotonic()
        self.process = subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw", "--nolineno", "--threads",
             "--nonblocking", "--gil", "--output", str(raw)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def stop(self) -> dict[str, Any]:
        seconds = time.monotonic() - self.began
        self.process.send_signal(signal.SIGINT)  # py-spy writes its file on an interrupt
        try:
            output, _ = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
        if not self.raw.exists():
            raise RuntimeError(f"py-spy wrote no profile: {output.decode(errors='replace')[-2000:]}")
        return summarize(self.raw.read_text(), seconds)


def summarize(raw: str, seconds: float, top: int = 25) -> dict[str, Any]:
    """Shares of the samples: per thread kind, per frame (self and inclusive), per candidate."""
    total = 0
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    candidates: Counter[str] = Counter()
    parts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread, frames = frames[0], frames[1:]
        total += count
        threads[_thread_kind(thread)] += count
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
        for name, patterns in CANDIDATES.items():
            if any(_matches(p, frames) for p in patterns):
                candidates[name] += count
        parts[next((name for name, patterns in PARTS if any(_matches(p, frames) for p in patterns)), "other")] += count

    def shares(counter: Counter[str], n: int | None = None) -> list[tuple[str, float]]:
        return [(k, round(v / (total or 1), 3)) for k, v in counter.most_common(n)]

    return {
        "samples": total,
        "seconds": round(seconds, 1),
        "rate_per_second": RATE,
        "gil_busy": round(total / (RATE * seconds), 2) if seconds else 0.0,
        "threads": dict(shares(threads)),
        "candidates": dict(shares(candidates)),
        "parts": dict(shares(parts)),
        "top_self": shares(own, top),
        "top_inclusive": shares(inclusive, top),
    }


def _streams(summary: dict[str, Any]) -> list[str]:
    """The streams (kopf's or watchstream.py) read, decode and dispatch each event alike, whatever its resource: a
    stream's share of that time is about its share of the events."""
    events = summary.get("watch_events") or {}
    total = sum(events.values()) or 1
    streams = sum(share for part, share in summary["parts"].items() if part.startswith(("kopf", "watch streams")))
    return [
        f"{count:8d}  {stream} ({count / total:.0%} of events: ~{streams * count / total:.0%} of the operator's time)"
        for stream, count in events.items()
    ]


def _matches(pattern: str, frames: list[str]) -> bool:
    if pattern.startswith("leaf:"):
        return bool(frames) and pattern[5:] in frames[-1]
    return any(pattern in frame for frame in frames)


class EventCounter:
    """Counts the watch events of the operator's three streams (CommerceJobs, its Jobs, their pods) while a phase
    runs: the dispatch cost per event times these counts says what each stream costs."""

    def __init__(self, bench: BenchCluster) -> None:
        from bench.harness import NAMESPACE, Recorder

        core = client.CoreV1Api(bench.api)
        self.counts: Counter[str] = Counter()

        def counting(stream: str) -> Any:
            return lambda kind, obj, when: self.counts.update([stream])

        def pods(**kwargs: Any) -> Any:
            if kwargs.get("watch"):  # the watch asks for the raw stream itself (_preload_content=False)
                return core.list_namespaced_pod(NAMESPACE, label_selector=MANAGED_BY, **kwargs)
            return bench.api.sanitize_for_serialization(
                core.list_namespaced_pod(NAMESPACE, label_selector=MANAGED_BY, limit=1, **kwargs)
            )

        def jobs(**kwargs: Any) -> Any:
            return bench._list_jobs_raw(label_selector=MANAGED_BY, **kwargs)

        self.recorders = [
            Recorder(bench._list("commercejobs"), counting("commercejobs")),
            Recorder(jobs, counting("jobs")),
            Recorder(pods, counting("pods")),
        ]

    def stop(self) -> dict[str, int]:
        for recorder in self.recorders:
            recorder.stop()
        return dict(self.counts)


def _thread_kind(thread: str) -> str:
    """'thread (123): MainThread' -> the event loop; the API calls' pools; anything else by its name."""
    name = thread.split(":", 1)[-1].strip()
    if name == "MainThread":
        return "event loop (MainThread)"
    if name.startswith(("ThreadPoolExecutor", "asyncio_", "kubeapi")):
        return "API threads (blocking client calls)"
    return name.rstrip("0123456789_-") or name


def text(name: str, summary: dict[str, Any]) -> str:
    lines = [
        f"# profile of the operator during phase {name}: {summary['samples']} samples in {summary['seconds']} s "
        f"at {summary['rate_per_second']}/s (GIL holder only); GIL held {summary['gil_busy']:.0%} of the time",
        "",
        "## by thread",
        *(f"{share:6.1%}  {kind}" for kind, share in summary["threads"].items()),
        "",
        "## candidates (a sample counts for each candidate with a frame in its stack)",
        *(f"{share:6.1%}  {kind}" for kind, share in summary["candidates"].items()),
        "",
        "## exclusive split (each sample to the first part that its stack has): what removing a part would save",
        *(f"{share:6.1%}  {kind}" for kind, share in summary["parts"].items()),
        "",
        "## watch events received, per stream, and the stream's estimated share of the watch and dispatch time",
        *_streams(summary),
        "",
        "## top frames, own time",
        *(f"{share:6.1%}  {frame}" for frame, share in summary["top_self"]),
        "",
        "## top frames, inclusive",
        *(f"{share:6.1%}  {frame}" for frame, share in summary["top_inclusive"]),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Summarizes a raw profile again: python -m bench.profile RAW SECONDS PHASE [EVENTS_JSON]."""
    import json

    raw, seconds, phase = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    summary = summarize(Path(raw).read_text(), seconds)
    if len(sys.argv) > 4:
        summary["watch_events"] = json.loads(sys.argv[4])
    print(text(phase, summary), end="")


if __name__ == "__main__":
    main()
