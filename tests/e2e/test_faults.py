"""Faults (issue #7): SIGKILL at random moments, SIGTERM, kube-apiserver and etcd restarts, two replicas with a Lease,
two operators acting at once, and a liveness probe that follows the watches.

These tests stop and start control-plane processes, so they run on a control plane of their own (module-scoped),
never the session's. Each run checks the same guarantee: every CommerceJob reaches a final state, exactly one Job
exists per attempt, and each dependent was created once, by the parent that finished.

Short by default (CI); ``COMMERCE_JOBS_FAULTS=full`` runs a few hundred jobs and more kills.
``COMMERCE_JOBS_FAULTS_SEED`` replays the random kill moments of a run (each run prints its seed).
"""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config, watch

from commerce_jobs.devcluster.cluster import LocalCluster
from tests.cjobs import FINAL, GROUP, PLURAL, VERSION, CommerceJobs, sim, state
from tests.e2e.conftest import OPERATOR_CONFIG, REPO, _free_port
from tests.e2e.operator_process import OperatorProcess, stopped_after
from tests.kube import wait_for

FULL = os.environ.get("COMMERCE_JOBS_FAULTS") == "full"
pytestmark = [pytest.mark.faults, pytest.mark.timeout(1200 if FULL else 300)]
PARENTS = 150 if FULL else 16  # each with one dependent: 300 (full) or 32 CommerceJobs
KILLS = 8 if FULL else 3
RELEASE = NAMESPACE = "cj-faults"
LEASE = f"{RELEASE}-commerce-jobs"  # the chart's fullname: its Role allows this Lease only
ARTIFACTS = REPO / "test-artifacts" / "faults"


@dataclass
class Faults:
    local: LocalCluster
    api: client.ApiClient
    operator_kubeconfig: Path
    config: Path


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faults]:
    """A control plane of this module's own, with the chart installed; the operators run under its ServiceAccount."""
    if os.environ.get("KUBECONFIG"):
        pytest.skip("stops and starts control-plane processes: only on a local control plane of its own")
    local = LocalCluster(tmp_path_factory.mktemp("faults-control-plane"))
    try:
        local.up(build=True)
        helm = local.toolchain.path("helm")
        result = subprocess.run(
            [str(helm), "upgrade", "--install", RELEASE, str(REPO / "charts" / "commerce-jobs"),
             f"--namespace={NAMESPACE}", "--create-namespace", f"--kubeconfig={local.kubeconfig}", "--wait",
             "--timeout=3m", "--set=jobDefaults.image=registry.example.com/shop:e2e"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        token = local.kubectl("create", "token", LEASE, f"--namespace={NAMESPACE}", "--duration=2h").stdout.strip()
        kubeconfig = yaml.safe_load(local.kubeconfig.read_text())
        kubeconfig["users"] = [{"name": LEASE, "user": {"token": token}}]
        for context in kubeconfig["contexts"]:
            context["context"]["user"] = LEASE
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        operator_kubeconfig = ARTIFACTS / "operator.kubeconfig"
        operator_kubeconfig.write_text(yaml.safe_dump(kubeconfig))
        operator_kubeconfig.chmod(0o600)
        operator_config = ARTIFACTS / "config.yaml"
        operator_config.write_text(yaml.safe_dump(OPERATOR_CONFIG))
        api = config.new_client_from_config(config_file=str(local.kubeconfig))
        yield Faults(local, api, operator_kubeconfig, operator_config)
    finally:
        local.down()


@pytest.fixture
def ns(faults: Faults) -> Iterator[str]:
    core = client.CoreV1Api(faults.api)
    name = f"cj-faults-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for(core.list_namespaced_service_account, "default", lambda _: True, namespace=name)
    yield name
    core.delete_namespace(name)


@pytest.fixture
def graph_ns(faults: Faults) -> Iterator[str]:
    """A second namespace: the dependsOn graphs of the SIGKILL test, apart from its parents."""
    core = client.CoreV1Api(faults.api)
    name = f"cj-graphs-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for(core.list_namespaced_service_account, "default", lambda _: True, namespace=name)
    yield name
    core.delete_namespace(name)


class Operator(OperatorProcess):
    """One `commerce-jobs run` process under the chart's ServiceAccount, with its liveness endpoint."""

    def __init__(self, faults: Faults, name: str, *args: str) -> None:
        self.port = _free_port()
        self.log_path = ARTIFACTS / f"{name}.log"
        self.name = name
        scope = [] if any(a.startswith("--namespace") for a in args) else ["-A"]
        argv = [sys.executable, "-m", "commerce_jobs", "run", *scope, f"--liveness=http://127.0.0.1:{self.port}/healthz",
                *args]  # fmt: skip
        env = {**os.environ, "KUBECONFIG": str(faults.operator_kubeconfig), "COMMERCE_JOBS_CONFIG": str(faults.config)}
        with self.log_path.open("wb") as log:
            log.write(f"--- {' '.join(args)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)

    def probe(self) -> tuple[int, Any]:
        """The liveness endpoint's answer, as the kubelet reads it: (HTTP status, body); 0 when nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, None
        except OSError:
            return 0, None

    def wait_probe(self, wanted: set[int], timeout: float = 90) -> tuple[int, Any]:
        # An HTTP endpoint has no watch: it is polled, as the kubelet does (with a shorter period).
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            status, body = self.probe()
            if status in wanted:
                return status, body
            time.sleep(0.2)
        raise AssertionError(f"{self.name}: probe not in {wanted} after {timeout}s:\n{self.log()[-4000:]}")

    def wait_acting(self) -> None:
        """Until kopf's own probe answers (its watches run): a standby answers {"leader": false} instead."""
        deadline = time.monotonic() + 90
        while True:
            _, body = self.wait_probe({200}, timeout=max(1.0, deadline - time.monotonic()))
            if isinstance(body, dict) and "watches" in body:
                return
            time.sleep(0.2)


@pytest.fixture
def operators() -> Iterator[list[Operator]]:
    """Every operator a test started; stopped after it, whatever happened."""
    yield from stopped_after([])


def start(operators: list[Operator], faults: Faults, name: str, *args: str) -> Operator:
    op = Operator(faults, name, *args)
    operators.append(op)
    return op


def leader_args(**timings: float) -> list[str]:
    extra = [f"--lease-{k.replace('_', '-')}={v}" for k, v in timings.items()]
    return ["--leader-election", f"--lease-namespace={NAMESPACE}", f"--lease-name={LEASE}", *extra]


def create_parents(faults: Faults, ns: str, count: int, duration: str = "1s") -> set[str]:
    """``count`` parents with one dependent each; every fourth fails its first attempt and retries. Returns the names
    of every CommerceJob that must exist in the end."""
    cjobs = CommerceJobs(faults.api, ns)
    names = set()
    for i in range(count):
        name = f"p{i:03d}"
        retried = i % 4 == 0
        pod = sim(duration=duration, exit_code_attempt_1="1") if retried else sim(duration=duration)
        cjobs.create(
            name, command="app:import", params=[str(i)], podAnnotations=pod,
            **({"maxRetries": 1, "retryBackoffSeconds": 1} if retried else {}),
            dependingJobs=[{"name": "index", "command": "app:index", "podAnnotations": sim()}],
        )  # fmt: skip
        names |= {name, f"{name}-index"}
    return names


def wait_all_final(
    faults: Faults, ns: str, expected: set[str], timeout: float = 600 if FULL else 150
) -> dict[str, dict[str, Any]]:
    """Returns every CommerceJob of the namespace once all ``expected`` exist and are final, and each parent lists
    its dependent's final state (list, then watch)."""
    custom = client.CustomObjectsApi(faults.api)
    list_fn = functools.partial(custom.list_namespaced_custom_object, GROUP, VERSION, ns, PLURAL)
    seen: dict[str, dict[str, Any]] = {}

    def followed(name: str) -> bool:
        """A parent's status.dependents follows its dependent's state (it is written soon after that ends)."""
        if name.endswith("-index"):
            return True
        child = f"{name}-index"
        listed = (seen[name].get("status") or {}).get("dependents")
        return child not in seen or listed == [{"name": child, "state": state(seen[child])}]

    def done() -> bool:
        return expected <= seen.keys() and all(state(seen[n]) in FINAL and followed(n) for n in expected)

    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        listed = list_fn()
        seen = {o["metadata"]["name"]: o for o in listed["items"]}
        if done():
            return seen
        stream = watch.Watch().stream(list_fn, resource_version=listed["metadata"]["resourceVersion"],
                                      timeout_seconds=max(1, int(min(remaining, 60))))  # fmt: skip
        try:
            for event in stream:
                obj = event["object"]
                if event["type"] == "DELETED":
                    seen.pop(obj["metadata"]["name"], None)
                elif event["type"] in ("ADDED", "MODIFIED"):
                    seen[obj["metadata"]["name"]] = obj
                if done():
                    return seen
        except client.ApiException as e:
            if e.status != 410:
                raise
    missing = sorted(n for n in expected if state(seen.get(n, {})) not in FINAL)
    jobs = client.BatchV1Api(faults.api).list_namespaced_job(ns).items
    details = {n: ((seen.get(n) or {}).get("status"), [(j.metadata.name, j.status.to_dict()) for j in jobs
               if j.metadata.labels.get("commercejobs.dev/job-name") == n]) for n in missing[:5]}  # fmt: skip
    raise AssertionError(f"{len(missing)} CommerceJob(s) not final after {timeout}s: {missing[:20]}\n{details}")


def assert_each_attempt_once(faults: Faults, ns: str, expected: set[str]) -> int:
    """No CommerceJob lost or extra, all Finished; Jobs exactly <cjob>-1..<cjob>-<attempts>, each owned by its
    CommerceJob; each dependent created by its finished parent. Returns the number of Jobs."""
    cjobs = wait_all_final(faults, ns, expected)
    assert set(cjobs) == expected
    assert {n: state(o) for n, o in cjobs.items() if state(o) != "Finished"} == {}
    jobs = client.BatchV1Api(faults.api).list_namespaced_job(ns).items
    by_owner: dict[str, list[client.V1Job]] = {}
    for job in jobs:
        by_owner.setdefault(job.metadata.labels["commercejobs.dev/job-name"], []).append(job)
    for name, cjob in cjobs.items():
        attempts = cjob["status"]["attempts"]
        mine = by_owner.get(name, [])
        assert sorted(j.metadata.name for j in mine) == sorted(f"{name}-{a}" for a in range(1, attempts + 1)), name
        assert {j.metadata.owner_references[0].uid for j in mine} == {cjob["metadata"]["uid"]}, name
        if not name.endswith("-index"):
            assert attempts == (2 if int(name[1:]) % 4 == 0 else 1), name
            child = cjobs[f"{name}-index"]
            assert cjob["status"]["dependents"] == [{"name": f"{name}-index", "state": "Finished"}]
            assert child["metadata"]["ownerReferences"][0]["uid"] == cjob["metadata"]["uid"]
            assert child["metadata"]["creationTimestamp"] >= cjob["status"]["completionTime"][:19]
    assert len(jobs) == sum(o["status"]["attempts"] for o in cjobs.values())
    return len(jobs)


GRAPHS = 24 if FULL else 6  # dependsOn graphs of 5 jobs each, next to the parents in the SIGKILL test


def create_graphs(faults: Faults, ns: str, count: int) -> set[str]:
    """``count`` graphs a -> (b, c) -> d -> e (spec.dependsOn). In every third c fails, so d and e are canceled; in
    the one after, a fails its first attempt and is retried (its dependents wait). Returns every job's name."""
    cjobs = CommerceJobs(faults.api, ns)
    names: set[str] = set()
    for k in range(count):
        g = f"g{k:02d}"
        a_retried = k % 3 == 2
        cjobs.create(f"{g}-a", command="app:import", podAnnotations=sim(duration="1s", exit_code_attempt_1="1")
                     if a_retried else sim(duration="1s"), **({"maxRetries": 1, "retryBackoffSeconds": 1}
                     if a_retried else {}))  # fmt: skip
        cjobs.create(f"{g}-b", command="app:index", dependsOn=[f"{g}-a"], podAnnotations=sim(duration="1s"))
        cjobs.create(f"{g}-c", command="app:prices", dependsOn=[f"{g}-a"],
                     podAnnotations=sim(exit_code=3) if k % 3 == 1 else sim())  # fmt: skip
        cjobs.create(f"{g}-d", command="app:swap", dependsOn=[f"{g}-b", f"{g}-c"], podAnnotations=sim())
        cjobs.create(f"{g}-e", command="app:report", dependsOn=[f"{g}-d"], podAnnotations=sim())
        names |= {f"{g}-{x}" for x in "abcde"}
    return names


def assert_graphs_ran_in_order_each_job_once(faults: Faults, ns: str, expected: set[str]) -> int:
    """Every job final; a job ran (one Job per attempt) only after each of its dependencies Finished; below a failed
    one, every job Canceled (DependencyFailed) once, without a Job. Returns the number of Jobs."""
    cjobs = wait_all_final(faults, ns, expected)
    assert set(cjobs) == expected
    jobs = client.BatchV1Api(faults.api).list_namespaced_job(ns).items
    by_owner: dict[str, list[client.V1Job]] = {}
    for job in jobs:
        by_owner.setdefault(job.metadata.labels["commercejobs.dev/job-name"], []).append(job)
    canceled_events: dict[str, int] = {}
    for event in client.CoreV1Api(faults.api).list_namespaced_event(ns).items:
        if event.reason in ("Canceled", "DependencyFailed"):
            canceled_events[event.involved_object.name] = canceled_events.get(event.involved_object.name, 0) + 1
    for name, cjob in cjobs.items():
        k, role = int(name[1:3]), name[-1]
        failing = k % 3 == 1
        wanted = {"a": "Finished", "b": "Finished", "c": "Failed" if failing else "Finished",
                  "d": "Canceled" if failing else "Finished", "e": "Canceled" if failing else "Finished"}  # fmt: skip
        assert state(cjob) == wanted[role], (name, cjob.get("status"))
        mine = sorted(j.metadata.name for j in by_owner.get(name, []))
        attempts = cjob["status"].get("attempts") or 0
        assert mine == [f"{name}-{a}" for a in range(1, attempts + 1)], name
        if state(cjob) == "Canceled":
            assert (cjob["status"]["reason"], mine) == ("DependencyFailed", []), name
            assert canceled_events.get(name, 0) <= 1, name  # never canceled twice
            continue
        for dependency in cjob["spec"].get("dependsOn") or []:
            (first, *_) = sorted(by_owner[name], key=lambda j: j.metadata.creation_timestamp)
            done = cjobs[dependency]["status"]["completionTime"]
            assert first.metadata.creation_timestamp.strftime("%Y-%m-%dT%H:%M:%SZ") >= done, (name, dependency)
    return len(jobs)


def lease(faults: Faults) -> client.V1Lease:
    return client.CoordinationV1Api(faults.api).read_namespaced_lease(LEASE, NAMESPACE)


def wait_lease(faults: Faults, predicate: Any, timeout: float = 60) -> client.V1Lease:
    leases = client.CoordinationV1Api(faults.api)
    return wait_for(leases.list_namespaced_lease, LEASE, predicate, timeout=timeout, namespace=NAMESPACE)


# -- the tests ----------------------------------------------------------------------------------------------------
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
    faults: Faults, ns: str, graph_ns: str, operators: list[Operator]
) -> None:
    # Not cryptography: reproducible kill moments.
    seed = int(os.environ.get("COMMERCE_JOBS_FAULTS_SEED") or random.randrange(2**32))  # noqa: S311
    rng = random.Random(seed)  # noqa: S311
    moments = [round(rng.uniform(0.0, 3.0), 2) for _ in range(KILLS)]
    print(f"\nSIGKILL seed={seed} (COMMERCE_JOBS_FAULTS_SEED={seed} replays it); kills after {moments}s of work")
    expected = create_parents(faults, ns, PARENTS)
    graphs = create_graphs(faults, graph_ns, GRAPHS)
    for i, moment in enumerate(moments):
        op = start(operators, faults, f"sigkill-{i}", "--standalone")
        op.wait_acting()
        time.sleep(moment)  # the random moment itself, not a wait for a condition
        op.kill()
    last = start(operators, faults, "sigkill-last", "--standalone")
    last.wait_acting()
    jobs = assert_each_attempt_once(faults, ns, expected)
    print(f"{len(expected)} CommerceJobs, {jobs} Jobs, {KILLS} SIGKILLs: none lost, none twice")
    jobs = assert_graphs_ran_in_order_each_job_once(faults, graph_ns, graphs)
    print(f"dependsOn: {len(graphs)} CommerceJobs in {GRAPHS} graphs, {jobs} Jobs: each in order, once")


def test_sigterm_stops_cleanly_releases_the_lease_and_the_next_one_resumes(
    faults: Faults, ns: str, operators: list[Operator]
) -> None:
    first = start(operators, faults, "sigterm-first", *leader_args())
    first.wait_acting()
    expected = create_parents(faults, ns, 6, duration="3s")
    CommerceJobs(faults.api, ns).wait_state("p001", "Running")
    began = time.monotonic()
    first.proc.send_signal(signal.SIGTERM)
    code = first.proc.wait(timeout=30)  # the pod's default terminationGracePeriodSeconds
    stopped = time.monotonic() - began
    assert code == 0
    assert "released" in first.log()
    assert not lease(faults).spec.holder_identity  # given up: the next replica needs no lease duration to wait
    print(f"\nSIGTERM: stopped in {stopped:.2f}s with exit code 0, Lease released")
    second = start(operators, faults, "sigterm-second", *leader_args())
    began = time.monotonic()
    second.wait_acting()
    print(f"the next operator acted {time.monotonic() - began:.2f}s after its start")
    assert_each_attempt_once(faults, ns, expected)


def test_two_replicas_only_the_lease_holder_acts_and_the_other_takes_over(
    faults: Faults, ns: str, operators: list[Operator]
) -> None:
    first = start(operators, faults, "replica-a", *leader_args())
    first.wait_acting()
    holder = lease(faults).spec.holder_identity
    second = start(operators, faults, "replica-b", *leader_args())
    assert second.wait_probe({200}) == (200, {"leader": False})  # standing by, and alive for the kubelet
    expected = create_parents(faults, ns, 10, duration="3s")
    CommerceJobs(faults.api, ns).wait_state("p001", "Running")
    assert "Started" not in second.log()  # the standby did nothing
    first.kill()
    killed = time.monotonic()
    taken = wait_lease(faults, lambda lz: lz.spec.holder_identity not in (None, holder), timeout=60)
    failover = time.monotonic() - killed
    second.wait_acting()
    acting = time.monotonic() - killed
    assert taken.spec.lease_transitions >= 1
    print(f"\nfailover: Lease taken {failover:.1f}s after the SIGKILL, the standby acted after {acting:.1f}s")
    assert_each_attempt_once(faults, ns, expected)


def test_two_operators_acting_at_once_still_run_each_attempt_once(
    faults: Faults, ns: str, operators: list[Operator]
) -> None:
    """Split brain (both --standalone): the Job names and the resourceVersion preconditions keep the guarantee."""
    a = start(operators, faults, "split-a", "--standalone")
    b = start(operators, faults, "split-b", "--standalone")
    a.wait_acting()
    b.wait_acting()
    expected = create_parents(faults, ns, PARENTS)
    jobs = assert_each_attempt_once(faults, ns, expected)
    assert "Started" in a.log()  # both did act
    assert "Started" in b.log()
    print(f"\nsplit brain: {len(expected)} CommerceJobs, {jobs} Jobs, each attempt once")


def test_apiserver_and_etcd_restarts_the_probe_follows_the_watches_and_nothing_is_lost(
    faults: Faults, ns: str, operators: list[Operator]
) -> None:
    op = start(operators, faults, "restarts", "--standalone", "--watch-failure-grace=2")
    # A Lease holder (of a namespace with no jobs, so that it does not act with the other) that cannot renew.
    holder = start(operators, faults, "restarts-holder", "--namespace=default",
                   *leader_args(duration=6, renew_deadline=4, retry_period=1))  # fmt: skip
    op.wait_acting()
    holder.wait_acting()
    expected = create_parents(faults, ns, 10, duration="3s")
    CommerceJobs(faults.api, ns).wait_state("p001", "Running")

    faults.local.stop_process("kube-apiserver", timeout=0)  # a crash: SIGKILL
    down = time.monotonic()
    op.wait_probe({500}, timeout=60)  # the watches are down: the probe fails, the process lives
    failing = time.monotonic() - down
    # Unable to renew for the renew deadline: it stops acting at once (it exits; its pod would restart).
    assert holder.proc.wait(timeout=60) == 3
    assert "stopping at once" in holder.log()
    faults.local.start_process("kube-apiserver")
    up = time.monotonic()
    op.wait_acting()  # healthy again by itself: the watches reconnected (from a 410 Gone: a new watch cache)
    print(
        f"\napiserver down: probe failing after {failing:.1f}s (grace 2s); healthy {time.monotonic() - up:.1f}s "
        f"after the apiserver was ready again"
    )

    faults.local.stop_process("etcd", timeout=0)
    faults.local.start_process("etcd")  # waits until the apiserver is ready again
    op.wait_acting()
    assert_each_attempt_once(faults, ns, expected)
    assert op.proc.poll() is None
