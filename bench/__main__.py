"""Benchmarks of the operator against plain Kubernetes Jobs, on the real local control plane.

    python -m bench                 # sizes 100 and 1000
    python -m bench --short         # size 20: what CI runs, so that the suite cannot rot
    python -m bench --sizes 100,1000,5000 --rate 20 --seconds 60

Each size runs, in one fresh cluster:
  native      2N plain batch/v1 Jobs, created at once, with the same simulated pods: the Job controller and kwok only
  operator    N CommerceJobs with one dependent each (2N commands), created at once, until all are Finished
  steady      CommerceJobs at a steady rate: latency from creation to the Job, and from a Job's completion to its
              dependent
  blocked     JMS #142: 100 to 10,000 jobs blocked on dependencies, and a stream of startable ones (bench/blocked.py)
  metrics     N CommerceJobs with and without --metrics (scraped every 5 s), alternating: the operator's CPU time
              and peak RSS either way (--only-metrics-cost runs just this)
and reads the operator's API requests from the apiserver's audit log and its peak RSS from /proc. Every time is
reported with its baseline from the same run (a ratio), since the machine is shared and absolute times drift.
Results go to bench/results/<time>.json, and a table to stdout.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import blocked
from bench.harness import BenchCluster, Scraper, percentile

RESULTS = Path(__file__).resolve().parent / "results"


def run_size(bench: BenchCluster, n: int, rounds: int) -> dict[str, Any]:
    """Native and operator runs alternate, ``rounds`` times each: the machine's drift then hits both alike, and the
    median of the per-round ratios is reported."""
    native: list[float] = []
    operator: list[float] = []
    latencies: dict[str, float] = {}
    requests: Counter[str] = Counter()
    for r in range(rounds):
        native.append(bench.run_native_jobs(2 * n, prefix=f"native-{n}-{r}"))
        audit_before = bench.audit_position()
        seconds, latencies = bench.run_commercejobs(n, prefix=f"cj-{n}-{r}")
        operator.append(seconds)
        requests += bench.operator_requests(since=audit_before)
    writes = {k: v for k, v in requests.items() if k.split()[0] in ("create", "patch", "update", "delete")}
    commands = 2 * n * rounds
    ratios = [o / b for o, b in zip(operator, native, strict=True)]
    return {
        "size": n,
        "rounds": rounds,
        "native_seconds": [round(x, 2) for x in native],
        "operator_seconds": [round(x, 2) for x in operator],
        "ratios": [round(x, 2) for x in ratios],
        "ratio_operator_native": round(statistics.median(ratios), 2),
        "creation_to_job_ms": latencies,
        "requests_per_job": {k: round(v / commands, 2) for k, v in sorted(requests.items())},
        "writes_per_job": round(sum(writes.values()) / commands, 2),
        "operator_rss_mib": bench.operator_rss_mib(),
    }


def run_steady(bench: BenchCluster, rate: float, seconds: float) -> dict[str, Any]:
    created, to_job, to_dependent = bench.run_steady(rate, seconds)
    return {
        "rate_per_second": rate,
        "seconds": seconds,
        "jobs": created,
        "creation_to_job_ms": _stats(to_job),
        "completion_to_dependent_ms": _stats(to_dependent),
    }


def run_present(bench: BenchCluster, n: int) -> dict[str, Any]:
    """N finished CommerceJobs present: a restart's time and writes, the memory it takes, and their clean-up."""
    bench.wait_all_final()
    bench.stop_operator()
    bench.clear_commercejobs()
    bench.populate_finished(n, prefix=f"done-{n}")
    audit = bench.audit_position()
    healthy = bench.restart_operator()
    to_work = bench.time_to_first_job(f"probe-{n}")  # its own Job comes after the backlog of n keys
    restart_writes = bench.operator_writes(audit, exclude=f"probe-{n}")
    rss = bench.operator_rss_mib()
    per_call, interval = 100, 1
    bench.restart_operator({"retention": {"maxRetentionSucceeded": "1s", "maxRetention": "1s",
                                          "perCall": per_call, "intervalSeconds": interval}})  # fmt: skip
    cleanup = bench.wait_deleted(f"done-{n}")
    bench.restart_operator()
    return {
        "present": n,
        "restart_to_healthy_seconds": round(healthy, 2),
        "restart_to_new_job_seconds": round(to_work, 2),
        "restart_writes": restart_writes,
        "operator_rss_mib": rss,
        "cleanup_seconds": round(cleanup, 1),
        "cleanup_per_call": per_call,
        "cleanup_interval_seconds": interval,
    }


def run_metrics_cost(bench: BenchCluster, n: int, rounds: int, scrape_interval: float) -> dict[str, Any]:
    """The operator's CPU time and peak RSS for the same N CommerceJobs (with one dependent each), with and without
    --metrics (scraped every ``scrape_interval`` s), alternating in one cluster; each round starts a fresh process,
    so VmHWM is that round's peak."""
    modes: dict[str, dict[str, list[float]]] = {m: {"cpu_seconds": [], "rss_mib": [], "seconds": []}
                                                for m in ("without", "with")}  # fmt: skip
    scrape_ms: list[float] = []
    series = 0
    for r in range(rounds):
        order = ("without", "with") if r % 2 == 0 else ("with", "without")
        for mode in order:
            bench.wait_all_final()
            bench.restart_operator(metrics=mode == "with")
            scraper = Scraper(bench.metrics_port, scrape_interval) if bench.metrics_port else None
            cpu = bench.operator_cpu_seconds()
            seconds, _ = bench.run_commercejobs(n, prefix=f"metrics-{mode}-{n}-{r}")
            if scraper is not None:
                scraper.stop()
                scrape_ms += scraper.milliseconds
                series = scraper.series
            modes[mode]["cpu_seconds"].append(round(bench.operator_cpu_seconds() - cpu, 2))
            modes[mode]["rss_mib"].append(bench.operator_rss_mib())
            modes[mode]["seconds"].append(round(seconds, 2))
    bench.restart_operator()
    median = {m: {k: statistics.median(v) for k, v in values.items()} for m, values in modes.items()}
    return {
        "size": n,
        "rounds": rounds,
        "scrape_interval_seconds": scrape_interval,
        **modes,
        "cpu_ratio": round(median["with"]["cpu_seconds"] / (median["without"]["cpu_seconds"] or 1), 3),
        "rss_difference_mib": round(median["with"]["rss_mib"] - median["without"]["rss_mib"], 1),
        "scrape_ms": _stats(scrape_ms),
        "series": series,
    }


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50": round(percentile(values, 50), 1),
        "p95": round(percentile(values, 95), 1),
        "p99": round(percentile(values, 99), 1),
        "mean": round(statistics.fmean(values), 1),
    }


def table(results: dict[str, Any]) -> str:
    lines = ["size | native s | operator s | median ratio | writes/job | RSS MiB | create->Job p50/p99 ms"]
    for r in results.get("sizes", []):
        lat = r["creation_to_job_ms"]
        native, operator = "/".join(map(str, r["native_seconds"])), "/".join(map(str, r["operator_seconds"]))
        lines.append(
            f"{r['size']} | {native} | {operator} | {r['ratio_operator_native']} | "
            f"{r['writes_per_job']} | {r['operator_rss_mib']} | {lat.get('p50')}/{lat.get('p99')}"
        )
    steady = results.get("steady")
    if steady:
        a, b = steady["creation_to_job_ms"], steady["completion_to_dependent_ms"]
        lines.append(
            f"steady {steady['rate_per_second']}/s for {steady['seconds']} s ({steady['jobs']} jobs): "
            f"create->Job p50 {a.get('p50')} p95 {a.get('p95')} p99 {a.get('p99')} ms; "
            f"Job done->dependent p50 {b.get('p50')} p95 {b.get('p95')} p99 {b.get('p99')} ms"
        )
    cost = results.get("metrics_cost")
    if cost:
        lines.append(
            f"metrics, {cost['size']} CommerceJobs x {cost['rounds']} rounds: operator CPU s "
            f"{'/'.join(map(str, cost['without']['cpu_seconds']))} without, "
            f"{'/'.join(map(str, cost['with']['cpu_seconds']))} with (median ratio {cost['cpu_ratio']}); "
            f"peak RSS MiB {'/'.join(map(str, cost['without']['rss_mib']))} without, "
            f"{'/'.join(map(str, cost['with']['rss_mib']))} with; a scrape (every {cost['scrape_interval_seconds']} s, "
            f"{cost['series']} series) p50 {cost['scrape_ms'].get('p50')} ms, p99 {cost['scrape_ms'].get('p99')} ms"
        )
    for p in results.get("present", []):
        lines.append(
            f"{p['present']} finished present: RSS {p['operator_rss_mib']} MiB; restart healthy in "
            f"{p['restart_to_healthy_seconds']} s, new work after {p['restart_to_new_job_seconds']} s, "
            f"{p['restart_writes']} writes; clean-up of all in {p['cleanup_seconds']} s "
            f"({p['cleanup_per_call']} per round, rounds {p['cleanup_interval_seconds']} s apart)"
        )
    return "\n".join(lines)


class Results:
    """The run's results file, written again as soon as each phase ends: a later failure (a 504, a timeout) never
    loses a finished phase. A phase that fails is recorded with its error, and the run goes on to the next one."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data
        self.failed: list[str] = []
        self.write()

    def phase(self, name: str, run: Callable[[], Any]) -> None:
        began = time.monotonic()
        print(f"-- {name}", flush=True)
        try:
            self.data[name] = run()
        except Exception:  # any failure of one phase: recorded, and the next phase runs
            self.failed.append(name)
            self.data.setdefault("errors", {})[name] = traceback.format_exc()
            traceback.print_exc()
        self.data.setdefault("phase_seconds", {})[name] = round(time.monotonic() - began, 1)
        self.write()

    def write(self) -> None:
        self.path.parent.mkdir(exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n")
        tmp.replace(self.path)  # whole or not at all, even if the run is killed while writing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--rounds", type=int, default=3, help="alternating native/operator runs per size")
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--present", default="1000,10000", help="finished jobs present for restart/memory/clean-up")
    parser.add_argument(
        "--controller-manager-qps", type=int, default=200,
        help="the Job controller's client rate; Kubernetes' default (20) makes it, not the operator, the bottleneck",
    )  # fmt: skip
    parser.add_argument("--short", action="store_true", help="size 20, 10/s for 5 s: a smoke run")
    parser.add_argument("--blocked", default="100,2000,10000", help="jobs blocked on dependencies (bench/blocked.py)")
    parser.add_argument("--only-blocked", action="store_true", help="run the blocked phase only")
    parser.add_argument(
        "--metrics-cost",
        type=int,
        default=500,
        metavar="N",
        help="N CommerceJobs with and without --metrics, for the operator's CPU and RSS (0: skip)",
    )
    parser.add_argument("--metrics-rounds", type=int, default=4, help="rounds of each (alternating)")
    parser.add_argument("--scrape-interval", type=float, default=5.0, help="seconds between scrapes of /metrics")
    parser.add_argument("--only-metrics-cost", action="store_true", help="run only the metrics cost")
    args = parser.parse_args(argv)
    blocked_sizes = [100, 1000] if args.short else [int(s) for s in args.blocked.split(",")]
    sizes = [20] if args.short else [int(s) for s in args.sizes.split(",")]
    present = [200] if args.short else [int(s) for s in args.present.split(",")]
    rate, seconds = (10.0, 5.0) if args.short else (args.rate, args.seconds)
    started = datetime.now(UTC)
    out = RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}{'-short' if args.short else ''}.json"
    results = Results(out, {
        "started": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": _cpus(), "python": platform.python_version(), "node": platform.node()},
        "commit": _commit(),
        "controller_manager_qps": args.controller_manager_qps,
        "argv": sys.argv[1:] if argv is None else argv,
    })  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="commerce-jobs-bench-") as tmp,
        BenchCluster(Path(tmp), args.controller_manager_qps) as bench,
    ):
        if not (args.only_metrics_cost or args.only_blocked):
            rounds = 1 if args.short else args.rounds
            results.phase("sizes", lambda: [run_size(bench, n, rounds) for n in sizes])
            results.phase("steady", lambda: run_steady(bench, rate, seconds))
            results.phase("present", lambda: [run_present(bench, n) for n in present])
        metrics_size, metrics_rounds = (20, 2) if args.short else (args.metrics_cost, args.metrics_rounds)
        if metrics_size and not args.only_blocked:
            results.phase(
                "metrics_cost", lambda: run_metrics_cost(bench, metrics_size, metrics_rounds, args.scrape_interval)
            )
        if not args.only_metrics_cost:
            stream = (5.0, 10.0) if args.short else (10.0, 30.0)
            results.phase("blocked", lambda: [blocked.run_blocked(bench, n, *stream) for n in blocked_sizes])
    print(table(results.data))
    if results.data.get("blocked"):
        print(blocked.table(results.data["blocked"]))
    print(f"results: {out}")
    if results.failed:
        print(f"failed phases: {', '.join(results.failed)} (their tracebacks are in the results)", file=sys.stderr)
        return 1
    return 0


def _commit() -> str:
    """The commit measured, with "+dirty" when the work tree had changes."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=RESULTS.parent, check=False).stdout

    return git("rev-parse", "--short", "HEAD").strip() + ("+dirty" if git("status", "--porcelain").strip() else "")


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    sys.exit(main())
