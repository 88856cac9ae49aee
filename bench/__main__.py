"""Benchmarks of the operator against plain Kubernetes Jobs, on the real local control plane.

    python -m bench                 # sizes 100 and 1000
    python -m bench --short         # every phase at tiny sizes: what CI runs, so that the suite cannot rot
    python -m bench --phases backlog,scale --backlog 100,1000,10000 --scale 50000
    python -m bench --sizes 100,1000,5000 --rate 20 --seconds 60

Phases (--phases selects them; each one's results are written as soon as it ends), in one fresh cluster:
  sizes       per size N, rotating rounds of: native (2N plain batch/v1 Jobs at once, the Job controller and kwok
              only), chained (N pairs: a plain client creates each second Job when the first one's completion
              reaches its watch: the floor of "after success") and operator (N CommerceJobs with one dependent
              each); ratios with the spread of the rounds (the noise), CPU seconds per Job of the operator and of
              kube-controller-manager (/proc/PID/stat), and of every process of the machine's control plane (the
              floor), API requests per job (audit log); each round starts in an empty namespace (settle)
  steady      CommerceJobs at a steady rate: latency from creation to the Job, and from a Job's completion to its
              dependent
  present     N finished jobs present: restart to live and to Ready (and a plain LIST of them: the floor), new
              work after Ready, writes, RSS, retention's clean-up
  metrics     N CommerceJobs with and without --metrics (scraped every 5 s), alternating: the operator's CPU time
              and peak RSS either way (--only-metrics-cost runs just this)
  blocked     JMS #142: 100 to 10,000 jobs blocked on dependencies, and a stream of startable ones (bench/blocked.py)
  backlog     N jobs waiting in one queue with maxRunning 4: slot freed -> next Job (bench/backlog.py)
  scale       50,000 finished jobs present: RSS, restart to live, to Ready, new work after Ready
and reads the operator's API requests from the apiserver's audit log and its peak RSS from /proc. Every time is
reported with its baseline from the same run (a ratio), since the machine is shared and absolute times drift.
Results go to bench/results/<time>.json, and a table to stdout.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import json
import os
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

from bench import backlog, blocked
from bench.harness import BenchCluster, Scraper, percentile
from bench.profile import EventCounter, Profiler
from bench.profile import text as profile_text

RESULTS = Path(__file__).resolve().parent / "results"


def run_size(bench: BenchCluster, n: int, rounds: int) -> dict[str, Any]:
    """Three kinds of round, ``rounds`` times each, in a rotating order (the machine's drift then hits each alike):
    native (2N Jobs at once), chained (N pairs, each second Job created when the first one's completion reaches a
    plain client's watch) and operator (N CommerceJobs with one dependent each). The median of the per-round ratios
    is reported, with the spread of the native rounds beside it: what the noise alone can explain. CPU seconds per
    Job of the operator and of kube-controller-manager come from /proc/PID/stat around each round."""
    seconds: dict[str, list[float]] = {"native": [], "chained": [], "operator": []}
    cpu: dict[str, list[float]] = {"controller_manager_native": [], "controller_manager_operator": [], "operator": []}
    processes: dict[str, list[dict[str, float]]] = {k: [] for k in seconds}  # CPU seconds per job, by process
    busy: dict[str, list[float]] = {k: [] for k in seconds}  # cores busy on average during the round
    latencies: dict[str, float] = {}
    requests: Counter[str] = Counter()
    kinds = list(seconds)
    settling: list[float] = []
    for r in range(rounds):
        for kind in kinds[r % 3 :] + kinds[: r % 3]:
            settling.append(bench.settle())  # each round from an empty namespace: no earlier round's deletions
            kcm, own = bench.controller_manager_cpu_seconds(), bench.operator_cpu_seconds()
            before, started = bench.process_cpu_seconds(), time.monotonic()
            audit_before = bench.audit_position() if kind == "operator" else 0
            if kind == "native":
                seconds[kind].append(bench.run_native_jobs(2 * n, prefix=f"native-{n}-{r}"))
            elif kind == "chained":
                seconds[kind].append(bench.run_chained(n, prefix=f"chained-{n}-{r}"))
            else:
                elapsed, latencies = bench.run_commercejobs(n, prefix=f"cj-{n}-{r}")
                seconds[kind].append(elapsed)
            # Read before the audit log is (the bench's own reading of it is no cost of the round).
            after, wall = bench.process_cpu_seconds(), time.monotonic() - started
            used = {name: after[name] - before.get(name, 0.0) for name in after}
            processes[kind].append({name: x / (2 * n) for name, x in used.items()})
            busy[kind].append(sum(used.values()) / wall)
            if kind == "native":
                cpu["controller_manager_native"].append((bench.controller_manager_cpu_seconds() - kcm) / (2 * n))
            elif kind == "operator":
                cpu["controller_manager_operator"].append((bench.controller_manager_cpu_seconds() - kcm) / (2 * n))
                cpu["operator"].append((bench.operator_cpu_seconds() - own) / (2 * n))
                requests += bench.operator_requests(since=audit_before)
    writes = {k: v for k, v in requests.items() if k.split()[0] in ("create", "patch", "update", "delete")}
    commands = 2 * n * rounds
    native, chained, operator = seconds["native"], seconds["chained"], seconds["operator"]
    ratios = [o / b for o, b in zip(operator, native, strict=True)]
    ratios_chained = [o / c for o, c in zip(operator, chained, strict=True)]
    chained_native = [c / b for c, b in zip(chained, native, strict=True)]
    cpu_ratio = statistics.median(cpu["operator"]) / (statistics.median(cpu["controller_manager_native"]) or 1e-9)
    machine = {kind: _total(rounds_of_kind) for kind, rounds_of_kind in processes.items()}
    return {
        "size": n,
        "rounds": rounds,
        "native_seconds": [round(x, 2) for x in native],
        "chained_seconds": [round(x, 2) for x in chained],
        "operator_seconds": [round(x, 2) for x in operator],
        "ratios": [round(x, 2) for x in ratios],
        "ratio_operator_native": round(statistics.median(ratios), 2),
        "ratios_chained": [round(x, 2) for x in ratios_chained],
        "ratio_operator_chained": round(statistics.median(ratios_chained), 2),
        "ratio_chained_native": round(statistics.median(chained_native), 2),
        "noise": {
            "native_spread": _spread(native),
            "chained_spread": _spread(chained),
            "operator_spread": _spread(operator),
        },
        "cpu_seconds_per_job": {k: [round(x, 4) for x in v] for k, v in cpu.items()},
        "cpu_ratio_operator_controller_manager": round(cpu_ratio, 2),
        "cpu_controller_manager_native_spread": _spread(cpu["controller_manager_native"]),
        "machine_cpu_seconds_per_job": {k: _median_by_process(v) for k, v in processes.items()},
        "machine_cpu_ratio_operator_native": round(machine["operator"] / (machine["native"] or 1e-9), 2),
        "machine_cpu_ratio_operator_chained": round(machine["operator"] / (machine["chained"] or 1e-9), 2),
        "cores_busy": {k: round(statistics.median(v), 2) for k, v in busy.items()},
        "creation_to_job_ms": latencies,
        "requests_per_job": {k: round(v / commands, 2) for k, v in sorted(requests.items())},
        "writes_per_job": round(sum(writes.values()) / commands, 2),
        "operator_rss_mib": bench.operator_rss_mib(),
        "settle_seconds": [round(x, 1) for x in settling],
    }


def _median_by_process(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Each process's median CPU seconds per job over the rounds, and their sum ("total")."""
    names = sorted({name for r in rounds for name in r})
    medians = {name: statistics.median(r.get(name, 0.0) for r in rounds) for name in names}
    return {**{name: round(x, 4) for name, x in medians.items()}, "total": round(sum(medians.values()), 4)}


def _total(rounds: list[dict[str, float]]) -> float:
    """The median over the rounds of the whole machine's CPU seconds per job."""
    return statistics.median(sum(r.values()) for r in rounds)


def _spread(values: list[float]) -> float:
    """(max - min) / median of a set of rounds: a ratio that differs from 1 by less than this is within the noise."""
    if len(values) < 2:
        return 0.0
    return round((max(values) - min(values)) / (statistics.median(values) or 1e-9), 3)


def run_steady(bench: BenchCluster, rate: float, seconds: float) -> dict[str, Any]:
    """The operator's reactions at a steady rate, each as a ratio to the Job controller's reaction to the same Jobs in
    the same minutes (Job -> pod: a watch event, a decision, one create), since absolute times here move 3x with the
    machine's load. Goal (issue 14): within 2x at p50 and p99."""
    created, to_job, to_dependent, to_pod = bench.run_steady(rate, seconds)
    baseline = _stats(to_pod)
    result: dict[str, Any] = {
        "rate_per_second": rate,
        "seconds": seconds,
        "jobs": created,
        "creation_to_job_ms": _stats(to_job),
        "completion_to_dependent_ms": _stats(to_dependent),
        "job_controller_job_to_pod_ms": baseline,
    }
    for name in ("creation_to_job_ms", "completion_to_dependent_ms"):
        stats = result[name]
        result[name.replace("_ms", "_ratio_to_job_controller")] = {
            p: round(stats[p] / baseline[p], 2) for p in ("p50", "p99") if stats.get(p) and baseline.get(p)
        }
    return result


def run_present(bench: BenchCluster, n: int, cleanup: bool = True) -> dict[str, Any]:
    """N finished CommerceJobs present: a restart's time and writes, the memory it takes, and (with cleanup) the
    time retention takes to delete them all."""
    bench.wait_all_final()
    bench.stop_operator()
    bench.clear_commercejobs()
    began = time.monotonic()
    bench.populate_finished(n, prefix=f"done-{n}")
    populated = time.monotonic() - began
    audit = bench.audit_position()
    listing = bench.list_seconds()
    ready = bench.restart_operator()
    to_work = bench.time_to_first_job(f"probe-{n}")  # created once the operator is Ready
    restart_writes = bench.operator_writes(audit, exclude=f"probe-{n}")
    rss = bench.operator_rss_mib()
    result: dict[str, Any] = {
        "present": n,
        "populate_seconds": round(populated, 1),
        "plain_list_seconds": round(listing, 2),
        "restart_to_live_seconds": round(bench.live_seconds, 2),
        "restart_to_healthy_seconds": round(ready, 2),  # Ready: every stream listed, the workers run
        "restart_to_new_job_seconds": round(to_work, 2),  # after Ready
        "restart_writes": restart_writes,
        "operator_rss_mib": rss,
    }
    if cleanup:
        per_call, interval = 100, 1
        bench.restart_operator({"retention": {"maxRetentionSucceeded": "1s", "maxRetention": "1s",
                                              "perCall": per_call, "intervalSeconds": interval}})  # fmt: skip
        result["cleanup_seconds"] = round(bench.wait_deleted(f"done-{n}"), 1)
        result["cleanup_per_call"], result["cleanup_interval_seconds"] = per_call, interval
    else:
        bench.wait_all_final()
        bench.stop_operator()  # the bench's own paged delete, without the operator's work for each DELETED event
        bench.clear_commercejobs()
    bench.restart_operator()
    return result


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
    lines = [
        "size | native s | chained s | operator s | ratio vs native (native spread) | vs chained | chained/native | "
        "CPU s/job operator vs controller-manager (ratio) | writes/job | RSS MiB | create->Job p50/p99 ms"
    ]
    for r in results.get("sizes", []):
        lat, noise, cpu = r["creation_to_job_ms"], r["noise"], r["cpu_seconds_per_job"]
        native, chained, operator = ("/".join(map(str, r[f"{k}_seconds"])) for k in ("native", "chained", "operator"))
        lines.append(
            f"{r['size']} | {native} | {chained} | {operator} | {r['ratio_operator_native']} "
            f"(+-{noise['native_spread']:.0%}) | {r['ratio_operator_chained']} | {r['ratio_chained_native']} | "
            f"{statistics.median(cpu['operator']):.4f} vs {statistics.median(cpu['controller_manager_native']):.4f} "
            f"({r['cpu_ratio_operator_controller_manager']}) | {r['writes_per_job']} | {r['operator_rss_mib']} | "
            f"{lat.get('p50')}/{lat.get('p99')}"
        )
        machine, busy = r["machine_cpu_seconds_per_job"], r["cores_busy"]
        lines.append(
            f"{r['size']}: the whole machine's CPU s/job native {machine['native']['total']}, chained "
            f"{machine['chained']['total']}, operator {machine['operator']['total']} (ratio "
            f"{r['machine_cpu_ratio_operator_native']} / {r['machine_cpu_ratio_operator_chained']}); cores busy "
            f"{busy['native']} / {busy['chained']} / {busy['operator']}; kube-apiserver s/job "
            f"{machine['native'].get('kube-apiserver')} native, {machine['operator'].get('kube-apiserver')} operator"
        )
    steady = results.get("steady")
    if steady:
        a, b = steady["creation_to_job_ms"], steady["completion_to_dependent_ms"]
        lines.append(
            f"steady {steady['rate_per_second']}/s for {steady['seconds']} s ({steady['jobs']} jobs): "
            f"create->Job p50 {a.get('p50')} p95 {a.get('p95')} p99 {a.get('p99')} ms; "
            f"Job done->dependent p50 {b.get('p50')} p95 {b.get('p95')} p99 {b.get('p99')} ms"
        )
        c = steady.get("job_controller_job_to_pod_ms") or {}
        lines.append(
            f"  beside them, the Job controller's Job->pod p50 {c.get('p50')} p99 {c.get('p99')} ms: ratios "
            f"create->Job {steady.get('creation_to_job_ratio_to_job_controller')}, done->dependent "
            f"{steady.get('completion_to_dependent_ratio_to_job_controller')}"
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
    for p in [*results.get("present", []), *results.get("scale", [])]:
        cleanup = (
            f"; clean-up of all in {p['cleanup_seconds']} s ({p['cleanup_per_call']} per round, rounds "
            f"{p['cleanup_interval_seconds']} s apart)"
            if "cleanup_seconds" in p
            else ""
        )
        lines.append(
            f"{p['present']} finished present: RSS {p['operator_rss_mib']} MiB; restart: live in "
            f"{p.get('restart_to_live_seconds')} s, Ready in {p['restart_to_healthy_seconds']} s (a plain LIST: "
            f"{p.get('plain_list_seconds')} s), new work {p['restart_to_new_job_seconds']} s after Ready, "
            f"{p['restart_writes']} writes{cleanup}"
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


PHASES = ("sizes", "steady", "present", "metrics_cost", "blocked", "backlog", "scale")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--phases", default=",".join(PHASES), help=f"the phases to run, in this order (default: all of {PHASES})"
    )
    parser.add_argument("--sizes", default="100,1000", help="N of the throughput rounds (native, chained, operator)")
    parser.add_argument("--rounds", type=int, default=3, help="rotating native/chained/operator runs per size")
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--present", default="1000,10000", help="finished jobs present for restart/memory/clean-up")
    parser.add_argument("--scale", default="50000", help="finished jobs present: RSS, restart (no clean-up timed)")
    parser.add_argument("--backlog", default="100,1000,10000", help="CommerceJobs waiting in one queue (maxRunning 4)")
    parser.add_argument("--backlog-samples", type=int, default=100, help="slots freed and measured per backlog size")
    parser.add_argument(
        "--controller-manager-qps", type=int, default=200,
        help="the Job controller's client rate; Kubernetes' default (20) makes it, not the operator, the bottleneck",
    )  # fmt: skip
    parser.add_argument("--short", action="store_true", help="every phase at tiny sizes: a smoke run (CI)")
    parser.add_argument("--blocked", default="100,2000,10000", help="jobs blocked on dependencies (bench/blocked.py)")
    parser.add_argument("--only-blocked", action="store_true", help="run the blocked phase only (--phases blocked)")
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
    parser.add_argument(
        "--profile", default="", metavar="PHASES",
        help="profile the operator with py-spy during these phases (e.g. sizes,steady): a summary of where its CPU "
        "goes, to bench/results/<time>-profile-<phase>.txt and the results",
    )  # fmt: skip
    args = parser.parse_args(argv)
    profiled = {p.strip() for p in args.profile.split(",") if p.strip()}
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if args.only_blocked:
        phases = ["blocked"]
    if args.only_metrics_cost:
        phases = ["metrics_cost"]
    if unknown := set(phases) - set(PHASES):
        parser.error(f"unknown phases: {', '.join(sorted(unknown))} (known: {', '.join(PHASES)})")
    if not args.metrics_cost and "metrics_cost" in phases:
        phases.remove("metrics_cost")

    def ints(text: str, short: list[int]) -> list[int]:
        return short if args.short else [int(x) for x in text.split(",") if x]

    sizes, present, scale = ints(args.sizes, [20]), ints(args.present, [200]), ints(args.scale, [300])
    blocked_sizes, backlog_sizes = ints(args.blocked, [100, 1000]), ints(args.backlog, [20, 100])
    backlog_samples = 10 if args.short else args.backlog_samples
    rounds = 2 if args.short else args.rounds  # two, so that even the smoke run shows a spread
    rate, seconds = (10.0, 5.0) if args.short else (args.rate, args.seconds)
    metrics_size, metrics_rounds = (20, 2) if args.short else (args.metrics_cost, args.metrics_rounds)
    stream = (5.0, 10.0) if args.short else (10.0, 30.0)
    run: dict[str, Callable[[BenchCluster], Any]] = {
        "sizes": lambda bench: [run_size(bench, n, rounds) for n in sizes],
        "steady": lambda bench: run_steady(bench, rate, seconds),
        "present": lambda bench: [run_present(bench, n) for n in present],
        "metrics_cost": lambda bench: run_metrics_cost(bench, metrics_size, metrics_rounds, args.scrape_interval),
        "blocked": lambda bench: [blocked.run_blocked(bench, n, *stream) for n in blocked_sizes],
        "backlog": lambda bench: [backlog.run_backlog(bench, n, backlog_samples) for n in backlog_sizes],
        "scale": lambda bench: [run_present(bench, n, cleanup=False) for n in scale],
    }
    started = datetime.now(UTC)
    out = RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}{'-short' if args.short else ''}.json"
    results = Results(out, {
        "started": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": _cpus(), "python": platform.python_version(), "node": platform.node(),
                    "load_average_at_start": list(os.getloadavg())},
        "commit": _commit(),
        "controller_manager_qps": args.controller_manager_qps,
        "argv": sys.argv[1:] if argv is None else argv,
    })  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="commerce-jobs-bench-") as tmp,
        BenchCluster(Path(tmp), args.controller_manager_qps) as bench,
    ):
        for phase in phases:
            if phase in profiled:
                measure = functools.partial(_profiled, phase, run[phase], bench, results, Path(tmp))
            else:
                measure = functools.partial(run[phase], bench)
            results.phase(phase, functools.partial(_settled, bench, results, phase, measure))
    results.data["machine"]["load_average_at_end"] = list(os.getloadavg())
    results.write()
    print(table(results.data))
    if results.data.get("blocked"):
        print(blocked.table(results.data["blocked"]))
    if results.data.get("backlog"):
        print(backlog.table(results.data["backlog"]))
    print(f"results: {out}")
    if results.failed:
        print(f"failed phases: {', '.join(results.failed)} (their tracebacks are in the results)", file=sys.stderr)
        return 1
    return 0


def _settled(bench: BenchCluster, results: Results, phase: str, measure: Callable[[], Any]) -> Any:
    """A phase, once the earlier phases' objects are gone (see BenchCluster.settle)."""
    results.data.setdefault("settle_seconds", {})[phase] = round(bench.settle(), 1)
    return measure()


def _profiled(phase: str, run: Callable[[BenchCluster], Any], bench: BenchCluster, results: Results, tmp: Path) -> Any:
    """Runs a phase with py-spy on the operator (until the phase ends, or restarts the operator), and writes the
    profile's summary beside the results."""
    if bench.operator is None:
        raise RuntimeError("no operator to profile")
    counter = EventCounter(bench)  # the watch events that the operator's streams receive, per stream
    profiler = Profiler(bench.operator.pid, tmp / f"profile-{phase}.raw")
    try:
        value = run(bench)
    finally:
        summary = profiler.stop()
        summary["watch_events"] = counter.stop()
        results.data.setdefault("profiles", {})[phase] = summary
        results.path.with_name(f"{results.path.stem}-profile-{phase}.txt").write_text(profile_text(phase, summary))
        raw = profiler.raw.read_bytes() if profiler.raw.exists() else b""  # the samples, to summarize again
        results.path.with_name(f"{results.path.stem}-profile-{phase}.raw.gz").write_bytes(gzip.compress(raw))
    return value


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
