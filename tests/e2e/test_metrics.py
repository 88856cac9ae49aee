"""A real Prometheus server (Debian's `prometheus` package) scrapes the operator under test (the `operator` fixture
passes --metrics) on loopback, and the test reads what it stored through Prometheus' HTTP API: the metrics of jobs
run on the real control plane, and label sets that stay bounded under generated hostile input.

The server itself (tests/e2e/prometheus.py) is shared with tests/e2e/test_realnode_helm.py, where it scrapes the
chart's operator pod on the real node.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commerce_jobs import crd
from tests.cjobs import CommerceJobs, sim
from tests.conftest import Cluster
from tests.e2e.conftest import REPO, kubectl_apply
from tests.e2e.prometheus import Prometheus, by, free_port, running_prometheus

pytestmark = pytest.mark.usefixtures("simulated_cluster")


@pytest.fixture(scope="module")
def prometheus(operator: subprocess.Popen[bytes], metrics_port: int, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Prometheus]:  # fmt: skip
    with running_prometheus([f"127.0.0.1:{metrics_port}"], tmp_path_factory.mktemp("prometheus"),
                            REPO / "test-artifacts" / "prometheus.log") as server:  # fmt: skip
        yield server


def test_prometheus_sees_the_jobs_their_queue_and_their_completions(
    prometheus: Prometheus, cjobs: CommerceJobs, cluster: Cluster, namespace: str
) -> None:
    ns = f'namespace="{namespace}"'
    waits = 'sum(commerce_jobs_queue_wait_seconds_{}{{queue="serial"}}) or vector(0)'
    waits_before, waited_before = prometheus.value(waits.format("count")), prometheus.value(waits.format("sum"))
    assert prometheus.value("sum(commerce_jobs_leader)") == 1
    assert prometheus.value('commerce_jobs_queue_limit{queue="serial"}') == 1  # the test operator's configuration
    # A template's command is a label of its own; any other command is the allowlist pattern it matched ([!_]*).
    template = {"apiVersion": "commercejobs.dev/v1alpha1", "kind": "CommerceJobTemplate",
                "metadata": {"name": "export"}, "spec": {"command": "silver:export", "queue": "serial"}}  # fmt: skip
    assert kubectl_apply(cluster, namespace, yaml.safe_dump(template)).returncode == 0

    # Three jobs of 4 s each in the serial queue (maxRunning 1), one of which fails, and one from the template. (A
    # command that no template of the other tests has: the operator would have learned it as a label of its own.)
    for name, code in (("import-1", 0), ("import-2", 1), ("import-3", 0)):
        cjobs.create(name, command="silver:metrics-import", queue="serial",
                     podAnnotations=sim(exit_code=code, duration="4s"))  # fmt: skip
    cjobs.create("export-1", templateRef={"name": "export"}, podAnnotations=sim(duration="4s"))

    # While they run: one runs, the others wait, and the longest wait grows.
    prometheus.until('commerce_jobs_queue_running{queue="serial"} == 1 and on() '
                     'commerce_jobs_queue_waiting{queue="serial"} >= 2', bool)  # fmt: skip
    prometheus.until('commerce_jobs_queue_oldest_waiting_seconds{queue="serial"} > 2', bool)
    running = prometheus.until(f'sum by (state) (commerce_jobs_jobs{{{ns}, queue="serial"}})',
                               lambda s: by(s, "state").get("Running") == 1)  # fmt: skip
    assert by(running, "state").get("Pending", 0) + by(running, "state").get("Running") <= 4

    for name in ("import-1", "import-2", "import-3", "export-1"):
        cjobs.wait_final(name, timeout=120)
    completions = prometheus.until(
        f"sum by (command, state) (commerce_jobs_job_completions_total{{{ns}}})",
        lambda s: sum(x["value"] for x in s) == 4,
    )
    assert {(s["metric"]["command"], s["metric"]["state"]): s["value"] for s in completions} == {
        ("[!_]*", "Finished"): 2, ("[!_]*", "Failed"): 1, ("silver:export", "Finished"): 1,
    }  # fmt: skip
    jobs = prometheus.until(f'sum by (state) (commerce_jobs_jobs{{{ns}, queue="serial"}})',
                            lambda s: by(s, "state") == {"Finished": 3, "Failed": 1})  # fmt: skip
    assert by(jobs, "state") == {"Finished": 3, "Failed": 1}
    prometheus.until('commerce_jobs_queue_running{queue="serial"} == 0 and on() '
                     'commerce_jobs_queue_waiting{queue="serial"} == 0', bool)  # fmt: skip
    # Each job waited in the queue once: the second for one run of 4 s, the third for two, the fourth for three.
    prometheus.until(f'sum(commerce_jobs_queue_wait_seconds_count{{queue="serial"}}) - {waits_before} == 4', bool)
    assert prometheus.value(waits.format("sum")) - waited_before >= (1 + 2 + 3) * 3
    attempts = by(prometheus.query(f"sum by (result) (commerce_jobs_attempts_total{{{ns}}})"), "result")
    assert attempts == {"started": 4, "succeeded": 3, "failed": 1}
    durations = prometheus.value('sum(commerce_jobs_job_duration_seconds_sum{queue="serial", state="Finished"})')
    assert durations >= 3 * 3  # three Finished runs of about 4 s (the simulated pods' timing is coarse)
    # The controller's own metrics moved too.
    assert prometheus.value('sum(commerce_jobs_api_requests_total{verb="create", resource="jobs"})') >= 4
    # kopf's own LIST and WATCH of the CommerceJobs (through its aiohttp session) are in the same counter.
    for verb in ("list", "watch"):
        kopfs = f'sum(commerce_jobs_api_requests_total{{verb="{verb}", resource="commercejobs", code="200"}})'
        assert prometheus.value(kopfs) >= 1
    assert prometheus.value('sum(commerce_jobs_reconcile_total{controller="commercejobs", result="success"})') > 0
    assert prometheus.value('min(commerce_jobs_watch_healthy{resource="commercejobs"})') == 1
    assert prometheus.value("max(process_resident_memory_bytes)") > 10 * 2**20


JOB_NAME = st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True)
COMMAND = st.one_of(st.from_regex(crd.CONSOLE_COMMAND, fullmatch=True).filter(lambda c: len(c) <= 60),
                    st.sampled_from(["silver:import", "_outside:allowlist"]))  # fmt: skip
QUEUE = st.one_of(st.from_regex(crd.DNS_LABEL, fullmatch=True).filter(lambda q: len(q) <= 63), st.just("serial"))


@settings(max_examples=1, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(jobs=st.lists(st.tuples(JOB_NAME, COMMAND, QUEUE), min_size=25, max_size=25, unique_by=lambda j: j[0]))
def test_label_sets_stay_bounded_under_generated_jobs(
    prometheus: Prometheus, cjobs: CommerceJobs, namespace: str, jobs: list[tuple[str, str, str]]
) -> None:
    for name, command, queue in jobs:
        cjobs.create(name, command=command, queue=queue, podAnnotations=sim())
    for name, _, _ in jobs:
        cjobs.wait_final(name, timeout=120)
    ns = f'namespace="{namespace}"'
    prometheus.until(f"sum(commerce_jobs_job_completions_total{{{ns}}})", lambda s: bool(s) and s[0]["value"] == 25)
    series = prometheus.query(f'{{__name__=~"commerce_jobs_.+", {ns}}}')
    queues = {s["metric"]["queue"] for s in series if "queue" in s["metric"]}
    commands = {s["metric"]["command"] for s in series if "command" in s["metric"]}
    assert queues <= {"serial", "default", "other"}
    # The allowlist's pattern or other; a generated command never, unless a template of another test made
    # silver:import (one of the commands drawn) a label of its own.
    assert commands <= {"[!_]*", "other", "silver:import"}
    names = {name for name, _, _ in jobs}
    assert not [s for s in series if names & set(s["metric"].values())], "a job's name became a label"
    # Per metric, at most one series per bounded label combination: 25 jobs made no more series than 3 jobs would.
    per_metric: dict[str, int] = {}
    for s in series:
        per_metric[s["metric"]["__name__"]] = per_metric.get(s["metric"]["__name__"], 0) + 1
    # queues x commands x (Finished, Failed)
    assert per_metric["commerce_jobs_job_completions_total"] <= 3 * len(commands) * 2
    assert per_metric["commerce_jobs_jobs"] <= 3 * 2  # queues x states


def test_the_metrics_endpoint_answers_in_the_text_format(operator: subprocess.Popen[bytes], metrics_port: int) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    assert "# TYPE commerce_jobs_job_completions_total counter" in text
    assert "commerce_jobs_leader 1.0" in text


def _metrics_text(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return str(response.read().decode())
    except OSError:
        return None  # not listening yet


def test_only_the_lease_holder_has_job_metrics_and_a_standby_says_leader_0(
    operator: subprocess.Popen[bytes], cluster: Cluster, namespace: str, tmp_path: Any
) -> None:
    """Two replicas with --leader-election (the admin's credentials, a Lease of their own in the test's namespace)."""
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
           "COMMERCE_JOBS_CONFIG": str(REPO / "test-artifacts" / "config.yaml")}  # fmt: skip
    replicas: list[tuple[subprocess.Popen[bytes], int]] = []
    try:
        for index in range(2):
            port = free_port()
            log = (tmp_path / f"replica-{index}.log").open("wb")
            replicas.append((subprocess.Popen(
                [sys.executable, "-m", "commerce_jobs", "run", "--leader-election", f"--lease-namespace={namespace}",
                 "--lease-name=metrics-replicas", "-A", f"--metrics=127.0.0.1:{port}"],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            ), port))  # fmt: skip
            # The first takes the Lease before the second starts: then which one holds it is known.
            wanted = "commerce_jobs_leader 1.0" if index == 0 else "commerce_jobs_leader 0.0"
            deadline = time.monotonic() + 60
            while wanted not in (_metrics_text(port) or ""):
                assert replicas[-1][0].poll() is None, (tmp_path / f"replica-{index}.log").read_text()[-3000:]
                assert time.monotonic() < deadline, f"replica {index}: no {wanted!r} within 60s"
                time.sleep(0.2)  # a process starting: nothing to watch but its port
        holder, standby = (_metrics_text(port) or "" for _, port in replicas)
        assert 'commerce_jobs_queue_limit{queue="serial"} 1.0' in holder  # read from its configuration and cache
        assert 'commerce_jobs_workqueue_depth{name="commercejobs"}' in holder
        assert "process_resident_memory_bytes" in standby
        assert "commerce_jobs_build_info{" in standby
        for name in ("commerce_jobs_queue_limit{", "commerce_jobs_queue_running{", "commerce_jobs_workqueue_depth{"):
            assert name not in standby  # a standby has no cache
    finally:
        for process, _ in replicas:
            process.terminate()
        for process, _ in replicas:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
