"""The benchmarks' cluster: the local control plane with an audit log of the operator's requests, and the operator
running as a real process under its own ServiceAccount (so that its requests can be told from everyone else's)."""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import urllib3
import yaml
from kubernetes import client, config, watch

from commerce_jobs.devcluster.cluster import LocalCluster

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "bench"
OPERATOR_USER = f"system:serviceaccount:{NAMESPACE}:operator"
SIM = {"sim.commercejobs.dev/exit-code": "0"}
GROUP, VERSION = "commercejobs.dev", "v1alpha1"
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata", "users": [OPERATOR_USER]}, {"level": "None"}],
}


# What a busy apiserver answers for a while and then no more: a retry, not the end of the run (a 504 of a
# delete_collection of 1,000 jobs once ended a bench after 8 minutes, and every figure measured was lost).
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
PAGE = 500  # items per list call, and per page of a bulk delete


def retrying(call: Callable[..., Any], *args: Any, attempts: int = 8, **kwargs: Any) -> Any:
    """Calls the API, again after a transient failure (a 5xx, 429 or timeout), with a growing pause."""
    delay = 0.5
    for attempt in range(attempts):
        try:
            return call(*args, **kwargs)
        except client.ApiException as e:
            if e.status not in TRANSIENT_STATUS or attempt == attempts - 1:
                raise
        except (urllib3.exceptions.HTTPError, OSError):
            if attempt == attempts - 1:
                raise
        time.sleep(delay)  # back off: the apiserver is overloaded, asking at once would make it worse
        delay = min(delay * 2, 10.0)
    raise AssertionError("unreachable")


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = max(math.ceil(pct / 100 * len(ordered)) - 1, 0)
    return ordered[index]


class Recorder:
    """Watches a list call in a thread and records when each event reached us (a client-side clock)."""

    def __init__(self, list_fn: Callable[..., Any], on_event: Callable[[str, dict[str, Any], float], None]) -> None:
        self.list_fn = list_fn
        self.on_event = on_event
        self.stopped = threading.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(30)

    def _run(self) -> None:
        version = retrying(self.list_fn)["metadata"]["resourceVersion"]
        self.ready.set()
        while not self.stopped.is_set():
            try:
                for event in watch.Watch().stream(self.list_fn, resource_version=version, timeout_seconds=5):
                    obj = event["object"]
                    version = obj["metadata"]["resourceVersion"]
                    self.on_event(event["type"], obj, time.monotonic())
                    if self.stopped.is_set():
                        return
            except client.ApiException as e:
                if e.status == 410:
                    version = retrying(self.list_fn)["metadata"]["resourceVersion"]
                elif e.status not in TRANSIENT_STATUS:
                    raise
                else:
                    time.sleep(0.5)  # the apiserver is overloaded: watch again in a moment, from the same version
            except (urllib3.exceptions.HTTPError, OSError):
                time.sleep(0.5)  # a dropped stream: watch again from the last version seen, nothing is missed

    def stop(self) -> None:
        self.stopped.set()


class BenchCluster:
    def __init__(self, directory: Path, controller_manager_qps: int | None = None) -> None:
        self.directory = directory
        policy = directory / "audit-policy.yaml"
        directory.mkdir(parents=True, exist_ok=True)
        policy.write_text(yaml.safe_dump(AUDIT_POLICY))
        self.cluster = LocalCluster(
            directory / "cluster", audit_policy=policy, controller_manager_qps=controller_manager_qps
        )
        self.operator: subprocess.Popen[bytes] | None = None
        self.metrics_port: int | None = None  # the operator's /metrics, when it was started with --metrics
        self.live_seconds = 0.0  # the last start: seconds until its liveness probe answered 200

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def __enter__(self) -> BenchCluster:
        self.cluster.up(build=True)
        kubectl = self.cluster.kubectl
        kubectl("apply", "--server-side", f"--filename={REPO / 'crds'}")
        kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/commercejobs.commercejobs.dev")
        kubectl("create", "namespace", NAMESPACE)
        kubectl("create", "serviceaccount", "operator", f"--namespace={NAMESPACE}")
        kubectl("create", "clusterrolebinding", "bench-operator", "--clusterrole=cluster-admin",
                f"--serviceaccount={NAMESPACE}:operator")  # fmt: skip
        self.api = config.new_client_from_config(config_file=str(self.cluster.kubeconfig))
        self.custom = client.CustomObjectsApi(self.api)
        self.batch = client.BatchV1Api(self.api)
        self._wait_default_account()
        self._start_operator()
        return self

    def __exit__(self, *_: object) -> None:
        if self.operator is not None:
            self.operator.terminate()
            self.operator.wait(30)
        self.cluster.down()

    def _wait_default_account(self) -> None:
        core = client.CoreV1Api(self.api)
        for _ in range(100):
            if core.list_namespaced_service_account(NAMESPACE, field_selector="metadata.name=default").items:
                return
            time.sleep(0.1)  # the ServiceAccount controller creates it within moments; nothing to watch for

    def restart_operator(self, settings: dict[str, Any] | None = None, metrics: bool = False) -> float:
        """Stops the operator and starts it again (with these settings, and /metrics or not); returns the seconds
        until it is Ready (every stream listed, the workers run); ``live_seconds`` says when its liveness probe
        first answered."""
        if self.operator is not None:
            self.operator.terminate()
            self.operator.wait(30)
        start = time.monotonic()
        self._start_operator(settings, metrics)
        return time.monotonic() - start

    def list_seconds(self, plural: str = "commercejobs", page: int = PAGE) -> float:
        """Seconds for a plain client to read every object in pages, without using them: the apiserver's part of a
        restart's LIST, the floor under the operator's time to Ready."""
        start = time.monotonic()
        token: str | None = None
        while True:
            response = retrying(self.custom.list_namespaced_custom_object, GROUP, VERSION, NAMESPACE, plural,
                                limit=page, _continue=token, _preload_content=False)  # fmt: skip
            token = orjson.loads(response.data)["metadata"].get("continue")
            if not token:
                return time.monotonic() - start

    def stop_operator(self) -> None:
        if self.operator is not None:
            self.operator.terminate()
            self.operator.wait(30)
            self.operator = None

    def populate_finished(self, count: int, prefix: str, output_bytes: int = 1024) -> None:
        """Creates finished CommerceJobs as the operator would have left them, with an output each."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        output = ("x" * 79 + "\n") * (output_bytes // 80)

        def one(i: int) -> None:
            name = f"{prefix}-{i}"
            try:
                retrying(self.custom.create_namespaced_custom_object, GROUP, VERSION, NAMESPACE, "commercejobs", {
                    "apiVersion": f"{GROUP}/{VERSION}", "kind": "CommerceJob", "metadata": {"name": name},
                    "spec": {"command": "silver:import", "params": ["tmp"]},
                })  # fmt: skip
            except client.ApiException as e:
                if e.status != 409:  # a retried create whose first try did go through
                    raise
            status = {"state": "Finished", "attempts": 1, "exitCode": 0, "startTime": now, "completionTime": now,
                      "output": output, "reason": "Completed", "message": "silver:import succeeded",
                      "conditions": [{"type": "Succeeded", "status": "True", "reason": "Completed",
                                      "message": "silver:import succeeded", "lastTransitionTime": now}]}  # fmt: skip
            retrying(self.custom.patch_namespaced_custom_object_status,
                     GROUP, VERSION, NAMESPACE, "commercejobs", name, {"status": status})  # fmt: skip

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, range(count)))

    def time_to_first_job(self, name: str) -> float:
        """Seconds from creating one CommerceJob until its Job exists: how long a (re)started operator takes to
        get through its backlog to new work."""
        seen = threading.Event()

        def on_job(kind: str, job: dict[str, Any], _: float) -> None:
            if job["metadata"]["name"] == f"{name}-1":
                seen.set()

        recorder = Recorder(self._list_jobs_raw, on_job)
        start = time.monotonic()
        self._create_cjob(name)
        seen.wait(1800)
        recorder.stop()
        return time.monotonic() - start

    def commercejobs(self, page: int = PAGE) -> Iterator[dict[str, Any]]:
        """Every CommerceJob, listed in pages (50,000 in one answer would time out on a busy apiserver)."""
        token: str | None = None
        while True:
            listing = retrying(self.custom.list_namespaced_custom_object, GROUP, VERSION, NAMESPACE, "commercejobs",
                               limit=page, _continue=token)  # fmt: skip
            yield from listing["items"]
            token = listing["metadata"].get("continue")
            if not token:
                return

    def wait_all_final(self, timeout: float = 3600) -> None:
        """Until every CommerceJob is final, so that the next measurement sees no earlier work."""
        final = {"Finished", "Failed", "Terminated", "Canceled", "Incomplete"}
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if all((o.get("status") or {}).get("state") in final for o in self.commercejobs()):
                return
            time.sleep(1)  # a benchmark's coarse poll of a bulk outcome
        raise TimeoutError("CommerceJobs still running")

    def clear_commercejobs(self, prefix: str = "") -> int:
        """Deletes every CommerceJob (whose name starts with prefix) of earlier phases, so that a phase times only its
        own jobs (retention deletes the oldest first). Paged, and each delete retried: never one delete_collection of
        everything, which a busy apiserver answers with a 504. Returns how many were deleted."""
        deleted = 0
        with ThreadPoolExecutor(8) as pool:
            while True:
                names = [o["metadata"]["name"] for o in itertools.islice(self._deletable(prefix), PAGE)]
                if not names:
                    break
                deleted += sum(pool.map(self._delete_commercejob, names))
        self.wait_deleted(prefix)
        return deleted

    def settle(self, timeout: float = 1800) -> float:
        """Deletes every CommerceJob and plain Job of earlier rounds and waits until the garbage collector has removed
        every Job and pod: the next round then starts from an empty namespace, not beside thousands of deletions
        (which slowed each later round, and made a phase after `sizes` time the collector's work). Seconds taken."""
        start = time.monotonic()
        self.clear_commercejobs()
        core = client.CoreV1Api(self.api)
        with ThreadPoolExecutor(8) as pool:
            # Deleted in the background, a Job goes at once (its pods after it): each first page is a new one.
            while time.monotonic() - start < timeout:
                page = retrying(self.batch.list_namespaced_job, NAMESPACE, limit=PAGE).items
                names = [j.metadata.name for j in page if not j.metadata.deletion_timestamp]
                if not names:
                    break
                list(pool.map(self._delete_job, names))
        while time.monotonic() - start < timeout:
            jobs = retrying(self.batch.list_namespaced_job, NAMESPACE, limit=1).items
            pods = retrying(core.list_namespaced_pod, NAMESPACE, limit=1).items
            if not jobs and not pods:
                return time.monotonic() - start
            time.sleep(1)  # a benchmark's coarse poll of the garbage collector's bulk work
        raise TimeoutError("Jobs or pods of earlier rounds still exist")

    def _delete_job(self, name: str) -> None:
        try:
            retrying(self.batch.delete_namespaced_job, name, NAMESPACE, propagation_policy="Background")
        except client.ApiException as e:
            if e.status != 404:
                raise

    def _deletable(self, prefix: str) -> Iterator[dict[str, Any]]:
        for o in self.commercejobs():
            if o["metadata"]["name"].startswith(prefix) and not o["metadata"].get("deletionTimestamp"):
                yield o

    def _delete_commercejob(self, name: str) -> int:
        try:
            retrying(self.custom.delete_namespaced_custom_object, GROUP, VERSION, NAMESPACE, "commercejobs", name)
        except client.ApiException as e:
            if e.status != 404:  # gone already (the operator's retention, or an earlier try that did go through)
                raise
            return 0
        return 1

    def wait_deleted(self, prefix: str, timeout: float = 3600) -> float:
        """Seconds until no CommerceJob whose name starts with prefix is left."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if not any(o["metadata"]["name"].startswith(prefix) for o in self.commercejobs()):
                return time.monotonic() - start
            time.sleep(1)  # a benchmark's coarse poll of a bulk outcome; each deletion is the operator's doing
        raise TimeoutError(f"{prefix}* still exist")

    def _start_operator(self, extra: dict[str, Any] | None = None, metrics: bool = False) -> None:
        token = self.cluster.kubectl("create", "token", "operator", f"--namespace={NAMESPACE}", "--duration=8h")
        kubeconfig = yaml.safe_load(self.cluster.kubeconfig.read_text())
        kubeconfig["users"] = [{"name": "operator", "user": {"token": token.stdout.strip()}}]
        for context in kubeconfig["contexts"]:
            context["context"]["user"] = "operator"
        path = self.directory / "operator.kubeconfig"
        path.write_text(yaml.safe_dump(kubeconfig))
        settings = self.directory / "operator.yaml"
        settings.write_text(
            yaml.safe_dump({"jobDefaults": {"image": "registry.example.com/shop:bench"}, **(extra or {})})
        )
        with closing(socket.socket()) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "KUBECONFIG": str(path), "COMMERCE_JOBS_CONFIG": str(settings)}
        log = (self.directory / "operator.log").open("wb")
        self.metrics_port = _free_port() if metrics else None
        serve_metrics = [f"--metrics=127.0.0.1:{self.metrics_port}"] if metrics else []
        self.operator = subprocess.Popen(
            [sys.executable, "-m", "commerce_jobs", "run", "--standalone", "-A",
             f"--liveness=http://127.0.0.1:{port}/healthz", *serve_metrics],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        started = time.monotonic()
        self.live_seconds = self._wait_probe(port, "healthz", started)
        self._wait_probe(port, "readyz", started)

    def _wait_probe(self, port: int, path: str, started: float, timeout: float = 120) -> float:
        """Polls a probe (an HTTP endpoint has nothing to watch) until it answers 200; the seconds since ``started``."""
        while time.monotonic() < started + timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=2):
                    return time.monotonic() - started
            except OSError:
                time.sleep(0.05)  # not listening, or not ready yet
        raise RuntimeError(f"the operator did not answer /{path} with 200 within {timeout} s")

    # -- measurements ------------------------------------------------------------------------------------------
    def _list(self, plural: str) -> Callable[..., Any]:
        return functools.partial(self.custom.list_namespaced_custom_object, GROUP, VERSION, NAMESPACE, plural)

    def run_native_jobs(self, count: int, prefix: str) -> float:
        done: set[str] = set()
        finished = threading.Event()

        def on_job(kind: str, job: dict[str, Any], _: float) -> None:
            name = job["metadata"]["name"]
            if name.startswith(prefix) and _complete(job):
                done.add(name)
                if len(done) >= count:
                    finished.set()

        return self._timed_jobs([f"{prefix}-{i}" for i in range(count)], on_job, finished)

    def run_chained(self, n: int, prefix: str) -> float:
        """The floor of "a dependent after success", without the operator: N first Jobs at once, and a plain client
        that creates each one's second Job when the first one's completion reaches it through a watch. Seconds until
        every second Job is complete."""
        done: set[str] = set()
        chained: set[str] = set()
        finished = threading.Event()
        lock = threading.Lock()
        pool = ThreadPoolExecutor(8)  # a client's few workers, as the operator has: the watch thread never waits

        def on_job(kind: str, job: dict[str, Any], _: float) -> None:
            name = job["metadata"]["name"]
            if not name.startswith(prefix) or not _complete(job):
                return
            with lock:
                if name.endswith("-a") and name not in chained:
                    chained.add(name)
                    pool.submit(retrying, self.batch.create_namespaced_job, NAMESPACE, _native_job(name[:-2] + "-b"))
                elif name.endswith("-b"):
                    done.add(name)
                    if len(done) >= n:
                        finished.set()

        elapsed = self._timed_jobs([f"{prefix}-{i}-a" for i in range(n)], on_job, finished)
        pool.shutdown(wait=True)
        return elapsed

    def _timed_jobs(
        self, names: list[str], on_job: Callable[[str, dict[str, Any], float], None], finished: threading.Event
    ) -> float:
        """Seconds from creating plain Jobs called ``names`` until ``on_job``, fed by a Job watch, sets ``finished``."""
        recorder = Recorder(self._list_jobs_raw, on_job)
        start = time.monotonic()
        for name in names:
            self.batch.create_namespaced_job(NAMESPACE, _native_job(name))
        finished.wait(3600)
        elapsed = time.monotonic() - start
        recorder.stop()
        return elapsed

    def _list_jobs_raw(self, **kwargs: Any) -> Any:
        if kwargs.get("watch"):
            kwargs["_preload_content"] = False
            return self.batch.list_namespaced_job(NAMESPACE, **kwargs)
        return self.batch.api_client.sanitize_for_serialization(self.batch.list_namespaced_job(NAMESPACE, **kwargs))

    def _list_pods_raw(self, **kwargs: Any) -> Any:
        core = client.CoreV1Api(self.api)
        if kwargs.get("watch"):
            kwargs["_preload_content"] = False
            return core.list_namespaced_pod(NAMESPACE, **kwargs)
        return self.api.sanitize_for_serialization(core.list_namespaced_pod(NAMESPACE, **kwargs))

    def run_commercejobs(self, n: int, prefix: str) -> tuple[float, dict[str, float]]:
        finished: set[str] = set()
        all_done = threading.Event()
        created_at: dict[str, float] = {}
        job_seen: dict[str, float] = {}

        def on_cjob(kind: str, obj: dict[str, Any], _: float) -> None:
            name = obj["metadata"]["name"]
            if name.startswith(prefix) and (obj.get("status") or {}).get("state") == "Finished":
                finished.add(name)
                if len(finished) >= 2 * n:
                    all_done.set()

        def on_job(kind: str, job: dict[str, Any], when: float) -> None:
            job_seen.setdefault(job["metadata"]["name"], when)

        cjob_recorder = Recorder(self._list("commercejobs"), on_cjob)
        job_recorder = Recorder(self._list_jobs_raw, on_job)
        start = time.monotonic()
        for i in range(n):
            name = f"{prefix}-{i}"
            self._create_cjob(name)
            created_at[name] = time.monotonic()
        all_done.wait(3600)
        elapsed = time.monotonic() - start
        cjob_recorder.stop()
        job_recorder.stop()
        waits = [(job_seen[f"{k}-1"] - t) * 1000 for k, t in created_at.items() if f"{k}-1" in job_seen]
        stats = {"p50": round(percentile(waits, 50), 1), "p99": round(percentile(waits, 99), 1)} if waits else {}
        return elapsed, stats

    def _create_cjob(self, name: str) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "CommerceJob", "metadata": {"name": name},
            "spec": {"command": "silver:import", "params": ["tmp"], "podAnnotations": SIM,
                     "dependingJobs": [{"name": "index", "command": "ibexa:commerce:index-econtent-job",
                                        "podAnnotations": SIM}]},
        }  # fmt: skip
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "commercejobs", body)

    def run_steady(
        self, rate: float, seconds: float, prefix: str = "steady"
    ) -> tuple[int, list[float], list[float], list[float]]:
        """CommerceJobs (with one dependent each) created at ``rate`` for ``seconds``. Returns how many, and in ms:
        creation -> its Job seen (the operator's reaction), Job complete -> dependent seen, and beside them the Job
        controller's reaction to the same Jobs in the same minutes (Job seen -> its pod seen): the baseline."""
        created_at: dict[str, float] = {}
        pod_seen: dict[str, float] = {}  # by the name of the pod's Job
        job_seen: dict[str, float] = {}
        job_done: dict[str, float] = {}
        dependent_seen: dict[str, float] = {}
        complete = threading.Event()
        total = int(rate * seconds)

        def on_job(kind: str, job: dict[str, Any], when: float) -> None:
            name = job["metadata"]["name"]
            job_seen.setdefault(name, when)
            if _complete(job):
                job_done.setdefault(name, when)

        def on_cjob(kind: str, obj: dict[str, Any], when: float) -> None:
            name = obj["metadata"]["name"]
            if name.startswith(f"{prefix}-") and name.endswith("-index"):
                dependent_seen.setdefault(name, when)
                if len(dependent_seen) >= total:
                    complete.set()

        def on_pod(kind: str, pod: dict[str, Any], when: float) -> None:
            job = ((pod.get("metadata") or {}).get("labels") or {}).get("batch.kubernetes.io/job-name")
            if job:
                pod_seen.setdefault(job, when)

        job_recorder = Recorder(self._list_jobs_raw, on_job)
        pod_recorder = Recorder(self._list_pods_raw, on_pod)
        cjob_recorder = Recorder(self._list("commercejobs"), on_cjob)
        start = time.monotonic()
        for i in range(total):
            due = start + i / rate
            if (delay := due - time.monotonic()) > 0:
                time.sleep(delay)  # the load generator's own pacing
            name = f"{prefix}-{i}"
            self._create_cjob(name)
            created_at[name] = time.monotonic()
        complete.wait(600)
        job_recorder.stop()
        pod_recorder.stop()
        cjob_recorder.stop()
        to_job = [(job_seen[f"{k}-1"] - t) * 1000 for k, t in created_at.items() if f"{k}-1" in job_seen]
        to_pod = [
            (pod_seen[job] - t) * 1000 for job, t in job_seen.items() if job.startswith(prefix) and job in pod_seen
        ]
        to_dependent = [
            (dependent_seen[f"{k}-index"] - job_done[f"{k}-1"]) * 1000
            for k in created_at
            if f"{k}-index" in dependent_seen and f"{k}-1" in job_done
        ]
        return total, to_job, to_dependent, to_pod

    def audit_position(self) -> int:
        log = self.cluster.audit_log
        return log.stat().st_size if log.exists() else 0

    def operator_writes(self, since: int, exclude: str = "") -> int:
        writes = 0
        for request, count in self.operator_requests(since, exclude).items():
            if request.split()[0] in ("create", "patch", "update", "delete"):
                writes += count
        return writes

    def operator_requests(self, since: int, exclude: str = "") -> Counter[str]:
        counts: Counter[str] = Counter()
        with self.cluster.audit_log.open() as f:
            f.seek(since)
            for line in f:
                event = json.loads(line)
                # A streamed response (a log, a watch) is audited when it starts and when it ends: count it once.
                if event.get("stage") != "ResponseComplete" or event.get("user", {}).get("username") != OPERATOR_USER:
                    continue
                ref = event.get("objectRef") or {}
                if exclude and (ref.get("name") or "").startswith(exclude):
                    continue
                resource = ref.get("resource", event.get("requestURI", "?"))
                if ref.get("subresource"):
                    resource += "/" + ref["subresource"]
                counts[f"{event['verb']} {resource}"] += 1
        return counts

    def operator_cpu_seconds(self) -> float:
        """User and system CPU time of the operator's process so far."""
        return cpu_seconds(self.operator.pid) if self.operator is not None else 0.0

    def controller_manager_cpu_seconds(self) -> float:
        """The same for kube-controller-manager (its Job controller does for a Job what the operator does for a
        CommerceJob: a watch event, a decision, a create)."""
        return cpu_seconds(int(self.cluster.status()["processes"]["kube-controller-manager"]["pid"]))

    def process_cpu_seconds(self) -> dict[str, float]:
        """CPU time so far of every process that a round makes busy: the control plane's (etcd, kube-apiserver, the
        controller manager, the scheduler, kwok), the operator's and the bench's own (its clients and watches).
        Their sum per job, beside the native round's, is the whole machine's cost of a CommerceJob: on 2 cores that
        are busy, the floor of the time ratio."""
        pids = {name: int(p["pid"]) for name, p in self.cluster.status()["processes"].items()}
        if self.operator is not None:
            pids["operator"] = self.operator.pid
        pids["bench"] = os.getpid()
        return {name: cpu_seconds(pid) for name, pid in pids.items()}

    def operator_rss_mib(self) -> float:
        if self.operator is None:
            return 0.0
        for line in Path(f"/proc/{self.operator.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
        return 0.0


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (/proc/PID/stat, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _complete(job: dict[str, Any]) -> bool:
    return any(c.get("type") == "Complete" and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])  # fmt: skip


def _native_job(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"annotations": SIM},
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": "console", "image": "registry.example.com/shop:bench",
                                     "command": ["php", "bin/console", "silver:import", "tmp"]}]},
        }},
    }  # fmt: skip


def _free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Scraper:
    """Scrapes the operator's /metrics every ``interval`` seconds, as Prometheus would, while a round runs: the cost
    of the metrics includes the collectors that read the cache at scrape time."""

    def __init__(self, port: int, interval: float) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.interval = interval
        self.milliseconds: list[float] = []
        self.series = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def scrape(self) -> None:
        started = time.monotonic()
        with urllib.request.urlopen(self.url, timeout=10) as response:  # noqa: S310  loopback
            text = response.read().decode()
        self.milliseconds.append((time.monotonic() - started) * 1000)
        self.series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.scrape()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.scrape()  # one more with everything in the cache
