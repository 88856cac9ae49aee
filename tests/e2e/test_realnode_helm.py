"""The chart's whole life on the real node (issue 20), and the PHP client in a job's pod (issue 17).

The chart's Deployment runs the operator's real image (built from the Dockerfile) on the real kubelet, its probes
are real, and `helm test` runs its hook Pod there; the jobs run the demo shop's real commands. In order, on one
release: `helm install --wait --rollback-on-failure`, `helm test`, a real Prometheus on the host's loopback that
scrapes the operator pod's /metrics while jobs run (issue 15), a killed operator container, `helm upgrade` (to a
user id that exists nowhere) while 50 jobs run, `helm rollback` to revision 1 while 50 more run, `helm uninstall`.
Apart: the same install of an operator that cannot start fails, with its last words where the user looks.

The module's name sorts after test_realnode_cluster_lifecycle.py, which needs the machine's real node to itself
before the session's real-node cluster starts (it would otherwise wait for this session's node until it gives up).

The session's real-node cluster has the CRDs from the tier's own release (tests.e2e.realnode.real_chart): these
releases are second releases, installed with --skip-crds as the README says.
"""

from __future__ import annotations

import functools
import os
import secrets
import signal
import subprocess
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from commerce_jobs.devcluster.images import ensure_images, node_images, write_oci_archive
from commerce_jobs.devcluster.realnode import RealNode
from commerce_jobs.jobbuild import ATTEMPT_LABEL, OWNER_LABEL
from tests.cjobs import FINAL, CommerceJobs, state
from tests.conftest import Cluster
from tests.e2e.prometheus import Sample, by, running_prometheus
from tests.e2e.realnode import ON_REAL_NODE, REPO, SHOP_IMAGE, OperatorFactory, processes_with, real_kubectl
from tests.kube import wait_deleted, wait_for

pytestmark = [pytest.mark.realnode, pytest.mark.timeout(900)]

CHART = REPO / "charts" / "commerce-jobs"
ROLE = REPO / "manifests" / "examples" / "rbac" / "shop-php-client.yaml"
OPERATOR_REPOSITORY = "localhost/commerce-jobs/operator"
RELEASE = "life"
RELEASE_NAMESPACE = "cj-life"
JOBS_NAMESPACE = "cj-life-jobs"  # the one namespace the release's operator watches
FULLNAME = f"{RELEASE}-commerce-jobs"
IMAGE_UID = 65532  # the Dockerfile's USER, and the chart's default runAsUser
QUEUE_LIMIT = 10  # defaultQueueMaxRunning: the 50 jobs run in waves, some always running
SLOW_SECONDS = 5


def helm(cluster: Cluster, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    assert cluster.local is not None
    argv = [str(cluster.local.toolchain.path("helm")), f"--kubeconfig={cluster.kubeconfig}", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def chart_values(tag: str, watched: str) -> list[str]:
    """The release's values: the operator's image as imported on the node (never pulled), the demo shop as the jobs'
    image, the operator and the jobs on the real node (kwok's node would only simulate them)."""
    return [
        f"--set=image.repository={OPERATOR_REPOSITORY}", f"--set=image.tag={tag}", "--set=image.pullPolicy=Never",
        f"--set=watchNamespaces={{{watched}}}", f"--set=jobDefaults.image={SHOP_IMAGE}",
        "--set=jobDefaults.workingDir=/app", f"--set-json=jobDefaults.nodeSelector={_json(ON_REAL_NODE)}",
        f"--set-json=nodeSelector={_json(ON_REAL_NODE)}", f"--set=defaultQueueMaxRunning={QUEUE_LIMIT}",
        "--set=logFormat=plain",
    ]  # fmt: skip


def _json(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))


# --- the operator's image on the node --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def operator_archive(real_node: RealNode) -> tuple[str, Path]:
    """The operator's image built from this checkout's Dockerfile (or reused), imported into the node's containerd:
    its ref and its OCI archive."""
    (image,) = [image for image in node_images() if image.name == "operator"]
    started = time.monotonic()
    ((ref, archive),) = ensure_images(images=[image])
    real_node.import_image(archive, ref)
    print(f"\noperator image {ref} ready on the node in {time.monotonic() - started:.1f}s")
    return ref, archive


@pytest.fixture(scope="module")
def operator_image(operator_archive: tuple[str, Path]) -> str:
    return operator_archive[0]


@pytest.fixture(scope="module")
def broken_operator_image(
    operator_archive: tuple[str, Path], real_node: RealNode, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The same image with the ENTRYPOINT of issue 12's defect (`commerce-jobs run`, to which the chart's args add
    a second `run`): it exits 2 at start, with argparse's complaint as its last words."""
    layout = tmp_path_factory.mktemp("broken-operator") / "layout"
    with tarfile.open(operator_archive[1]) as tar:
        tar.extractall(layout, filter="data")
    subprocess.run(
        ["umoci", "config", "--image", f"{layout}:dev", "--tag", "broken-entrypoint",
         "--config.entrypoint=commerce-jobs", "--config.entrypoint=run"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    ref = f"{OPERATOR_REPOSITORY}:broken-entrypoint"
    out = layout.parent / "broken.oci.tar"
    write_oci_archive(layout, "broken-entrypoint", ref, out)
    real_node.import_image(out, ref)
    return ref


# --- the operator's pod and process ----------------------------------------------------------------------------------


def operator_pod(core: client.CoreV1Api, namespace: str = RELEASE_NAMESPACE) -> client.V1Pod:
    pods = core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/instance={RELEASE}").items
    live = [p for p in pods if p.metadata.deletion_timestamp is None and "-test" not in p.metadata.name]
    assert len(live) == 1, [p.metadata.name for p in live]
    return live[0]


def is_ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def operator_process() -> int:
    """The pid, seen from the node, of the release's operator: its container's `commerce-jobs run` process."""
    pids = processes_with("commerce-jobs", f"--lease-name={FULLNAME}")
    assert len(pids) == 1, pids
    return pids[0]


def process_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid in /proc/{pid}/status")


def root_mount_options(pid: int) -> list[str]:
    """The mount options of `/` in the process's own mount namespace (its container's root file system)."""
    for line in Path(f"/proc/{pid}/mounts").read_text().splitlines():
        fields = line.split()
        if fields[1] == "/":
            return fields[3].split(",")
    raise AssertionError(f"no / in /proc/{pid}/mounts")


def assert_runs_restricted(uid: int) -> None:
    pid = operator_process()
    assert process_uid(pid) == uid
    assert "ro" in root_mount_options(pid)


# --- jobs ------------------------------------------------------------------------------------------------------------


def jobs_by_attempt(batch: client.BatchV1Api, namespace: str) -> Counter[tuple[str, str]]:
    """How many Jobs each (CommerceJob, attempt) has."""
    jobs = batch.list_namespaced_job(namespace, label_selector=OWNER_LABEL).items
    return Counter((j.metadata.labels[OWNER_LABEL], j.metadata.labels[ATTEMPT_LABEL]) for j in jobs)


def start_batch(cjobs: CommerceJobs, prefix: str, slow: int, failing: int) -> dict[str, tuple[str, int]]:
    """`slow` jobs of `shop:slow` (exit 0) and `failing` ones of `silver:erp:resend-orders` (exit 3): name ->
    (the final state their command gives, its exit code)."""
    expected: dict[str, tuple[str, int]] = {}
    for i in range(slow + failing):
        name = f"{prefix}-{i:02d}"
        if i % 5 == 4 and failing:
            failing -= 1
            cjobs.create(name, command="silver:erp:resend-orders", params=["--env=prod"])
            expected[name] = ("Failed", 3)
        else:
            cjobs.create(name, command="shop:slow", params=[f"--seconds={SLOW_SECONDS}"])
            expected[name] = ("Finished", 0)
    return expected


class StateCounter:
    """Counts the jobs of a batch by state, as a watch sees them, in a thread: how many ran during a helm command."""

    def __init__(self, cjobs: CommerceJobs, names: set[str]) -> None:
        self.cjobs, self.names = cjobs, names
        self.states: dict[str, str | None] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from kubernetes import watch

        from tests.cjobs import GROUP, PLURAL, VERSION

        list_fn = functools.partial(
            self.cjobs.custom.list_namespaced_custom_object, GROUP, VERSION, self.cjobs.namespace, PLURAL
        )
        while not self.stop.is_set():
            listed = list_fn()
            with self.lock:
                for obj in listed["items"]:
                    self.states[obj["metadata"]["name"]] = state(obj)
            stream = watch.Watch().stream(list_fn, resource_version=listed["metadata"]["resourceVersion"],
                                          timeout_seconds=5)  # fmt: skip
            for event in stream:
                obj = event["object"]
                with self.lock:
                    self.states[obj["metadata"]["name"]] = state(obj)
                if self.stop.is_set():
                    break

    def count(self, wanted: str) -> int:
        with self.lock:
            return sum(1 for name, s in self.states.items() if name in self.names and s == wanted)

    def wait(self, predicate: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out; states: {Counter(self.states.values())}"
            time.sleep(0.2)  # reads the watch thread's counts

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def check_batch(
    cjobs: CommerceJobs, batch: client.BatchV1Api, expected: dict[str, tuple[str, int]], what: str
) -> dict[str, int]:
    """Every job of the batch ended in the state its command gives, with its exit code, in one attempt and one
    Job. Prints and returns the counts."""
    final = {name: cjobs.wait_final(name, timeout=300) for name in expected}
    per_attempt = jobs_by_attempt(batch, cjobs.namespace)
    got = {name: (state(obj), (obj.get("status") or {}).get("exitCode")) for name, obj in final.items()}
    counts = {
        "jobs": len(expected),
        "Finished": sum(1 for s, _ in got.values() if s == "Finished"),
        "Failed (exit 3)": sum(1 for s, c in got.values() if s == "Failed" and c == 3),
        "Canceled": sum(1 for s, _ in got.values() if s == "Canceled"),
        "other": sum(1 for name, g in got.items() if g != expected[name]),
        "attempts > 1": sum(1 for obj in final.values() if int(obj["status"].get("attempts") or 0) != 1),
        "Jobs": sum(n for (owner, _), n in per_attempt.items() if owner in expected),
        "attempts with 2+ Jobs": sum(1 for (owner, _), n in per_attempt.items() if owner in expected and n > 1),
    }
    print(f"\n{what}: " + ", ".join(f"{key}: {value}" for key, value in counts.items()))
    assert {name: g for name, g in got.items() if g != expected[name]} == {}
    assert counts["attempts > 1"] == 0
    assert counts["Jobs"] == len(expected)
    assert counts["attempts with 2+ Jobs"] == 0
    return counts


# --- fixtures of the release ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def release_namespaces(real_node_cluster: Cluster, real_chart: str) -> Iterator[None]:
    """The release's namespace and the one its operator watches (CRDs: the tier's own release installed them)."""
    core = client.CoreV1Api(real_node_cluster.api)
    for name in (RELEASE_NAMESPACE, JOBS_NAMESPACE):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for(core.list_namespaced_service_account, "default", lambda _: True, namespace=JOBS_NAMESPACE)
    yield
    helm(real_node_cluster, "uninstall", RELEASE, f"--namespace={RELEASE_NAMESPACE}", "--wait", "--ignore-not-found")
    for name in (RELEASE_NAMESPACE, JOBS_NAMESPACE):
        core.delete_namespace(name)


@pytest.fixture
def core(real_node_cluster: Cluster) -> client.CoreV1Api:
    return client.CoreV1Api(real_node_cluster.api)


@pytest.fixture
def batch(real_node_cluster: Cluster) -> client.BatchV1Api:
    return client.BatchV1Api(real_node_cluster.api)


@pytest.fixture
def life_jobs(real_node_cluster: Cluster) -> CommerceJobs:
    return CommerceJobs(real_node_cluster.api, JOBS_NAMESPACE)


# --- the lifecycle ---------------------------------------------------------------------------------------------------


def test_install_waits_for_a_working_operator_and_helm_test_runs_a_job_on_the_node(
    real_node_cluster: Cluster, operator_image: str, release_namespaces: None, core: client.CoreV1Api
) -> None:
    started = time.monotonic()
    installed = helm(
        real_node_cluster, "install", RELEASE, str(CHART), f"--namespace={RELEASE_NAMESPACE}", "--skip-crds",
        "--wait", "--rollback-on-failure", "--timeout=3m", *chart_values("dev", JOBS_NAMESPACE),
    )  # fmt: skip
    install_seconds = time.monotonic() - started
    assert installed.returncode == 0, installed.stdout + installed.stderr
    print(f"\nhelm install --wait --rollback-on-failure: {install_seconds:.1f}s (minReadySeconds 10 included)")

    pod = operator_pod(core)
    assert is_ready(pod)
    (container,) = pod.spec.containers
    assert container.image == operator_image
    assert container.readiness_probe.http_get.path == "/readyz"
    assert pod.status.container_statuses[0].restart_count == 0
    # The image's own user (the chart's default runAsUser), a read-only root file system.
    assert_runs_restricted(IMAGE_UID)

    started = time.monotonic()
    tested = helm(real_node_cluster, "test", RELEASE, f"--namespace={RELEASE_NAMESPACE}", "--timeout=5m")
    test_seconds = time.monotonic() - started
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "Phase:          Succeeded" in tested.stdout or "Phase: Succeeded" in " ".join(tested.stdout.split())
    print(f"helm test: {test_seconds:.1f}s (its Pod and the CommerceJob `list` in the shop's image, on the node)")
    # Its hook objects are gone (hook-succeeded), and so is its CommerceJob.
    hook_pods = core.list_namespaced_pod(RELEASE_NAMESPACE, label_selector="app.kubernetes.io/name=commerce-jobs-test")
    assert hook_pods.items == []


def metrics_endpoint(real_node_cluster: Cluster, pod: client.V1Pod) -> str:
    """host:port of the release's metrics Service, from its EndpointSlice (as Prometheus' Kubernetes discovery finds
    its targets) once the endpoint is the operator pod and ready."""
    discovery = client.DiscoveryV1Api(real_node_cluster.api)
    endpoints = wait_for(
        discovery.list_namespaced_endpoint_slice, "",
        lambda s: [(e.addresses, e.conditions.ready) for e in s.endpoints or []] == [([pod.status.pod_ip], True)],
        timeout=60, namespace=RELEASE_NAMESPACE, label_selector=f"kubernetes.io/service-name={FULLNAME}-metrics",
    )  # fmt: skip
    (port,) = [p.port for p in endpoints.ports if p.name == "metrics"]
    return f"{pod.status.pod_ip}:{port}"


def test_a_real_prometheus_scrapes_the_operator_pod_and_sees_its_jobs_and_queue(
    real_node_cluster: Cluster, release_namespaces: None, core: client.CoreV1Api, batch: client.BatchV1Api,
    life_jobs: CommerceJobs, tmp_path: Path,
) -> None:  # fmt: skip
    """Issue 15 on the real node: Prometheus (Debian's server, on the host's loopback) scrapes the chart's operator
    pod at its metrics Service's endpoint (the pod's IP on the CNI bridge, port 8082, the chart's default), while
    real commands run, and its HTTP API shows the Lease, the completions, the queue gauges and kopf's requests."""
    target = metrics_endpoint(real_node_cluster, operator_pod(core))
    assert target.endswith(":8082")
    started = time.monotonic()
    with running_prometheus([target], tmp_path, REPO / "test-artifacts" / "prometheus-realnode.log") as prometheus:
        (leader,) = prometheus.query("commerce_jobs_leader")
        assert (leader["metric"]["instance"], leader["value"]) == (target, 1)
        assert prometheus.value('commerce_jobs_queue_limit{queue="default"}') == QUEUE_LIMIT
        ns = f'namespace="{JOBS_NAMESPACE}"'
        completions = f"sum by (state) (commerce_jobs_job_completions_total{{{ns}}})"
        attempts = f"sum by (result) (commerce_jobs_attempts_total{{{ns}}})"
        # The release's `helm test` job counted already: what this test adds is the difference.
        completed_before = by(prometheus.query(completions), "state")
        attempts_before = by(prometheus.query(attempts), "result")

        expected = {}
        for i in range(3):
            life_jobs.create(f"prom-{i}", command="shop:slow", params=["--seconds=8"])
            expected[f"prom-{i}"] = ("Finished", 0)
        life_jobs.create("prom-failing", command="silver:erp:resend-orders", params=["--env=prod"])
        expected["prom-failing"] = ("Failed", 3)
        # While the slow ones run in their containers: the default queue has them (its limit is 10: none waits).
        prometheus.until('commerce_jobs_queue_running{queue="default"} >= 3 and on() '
                         'commerce_jobs_queue_waiting{queue="default"} == 0', bool, timeout=120)  # fmt: skip
        prometheus.until(f'commerce_jobs_jobs{{{ns}, queue="default", state="Running"}} >= 3', bool)
        check_batch(life_jobs, batch, expected, "jobs scraped by Prometheus")

        def delta(samples: list[Sample], before: dict[str, float], label: str) -> dict[str, float]:
            now = by(samples, label)
            return {k: v - before.get(k, 0) for k, v in now.items() if v != before.get(k, 0)}

        completed = prometheus.until(
            completions, lambda s: delta(s, completed_before, "state") == {"Finished": 3, "Failed": 1}
        )
        added = delta(prometheus.query(attempts), attempts_before, "result")
        assert added == {"started": 4, "succeeded": 3, "failed": 1}
        prometheus.until('commerce_jobs_queue_running{queue="default"} == 0', bool)
        jobs = by(prometheus.query(f'sum by (state) (commerce_jobs_jobs{{{ns}, queue="default"}})'), "state")
        assert jobs.get("Finished", 0) >= 3, jobs  # the cache also has the namespace's earlier jobs, if any
        assert jobs.get("Failed", 0) >= 1, jobs
        # The operator's API requests: its client's creates, and kopf's own LIST and WATCH of the CommerceJobs.
        requests = 'sum(commerce_jobs_api_requests_total{{verb="{}", resource="{}", code="{}"}})'
        assert prometheus.value(requests.format("create", "jobs", "201")) >= 4
        assert prometheus.value(requests.format("list", "commercejobs", "200")) >= 1
        assert prometheus.value(requests.format("watch", "commercejobs", "200")) >= 1
        assert prometheus.value('min(commerce_jobs_watch_healthy{resource="commercejobs"})') == 1
        assert prometheus.value("process_resident_memory_bytes") > 10 * 2**20
    print(
        f"\nPrometheus scraped {target} (the operator pod) for {time.monotonic() - started:.1f}s: leader 1, "
        f"completions {delta(completed, completed_before, 'state')}, attempts {added}, jobs by state {jobs}"
    )


def test_a_killed_operator_container_restarts_and_its_running_jobs_finish_once(
    real_node_cluster: Cluster, release_namespaces: None, core: client.CoreV1Api, batch: client.BatchV1Api,
    life_jobs: CommerceJobs,
) -> None:  # fmt: skip
    before = operator_pod(core)
    restarts = before.status.container_statuses[0].restart_count
    expected = {}
    for i in range(3):
        life_jobs.create(f"kill-{i}", command="shop:slow", params=["--seconds=15"])
        expected[f"kill-{i}"] = ("Finished", 0)
    for name in expected:
        life_jobs.wait_state(name, "Running", timeout=120)

    killed = time.monotonic()
    os.kill(operator_process(), signal.SIGKILL)

    after = wait_for(
        core.list_namespaced_pod, before.metadata.name,
        lambda p: p.status.container_statuses[0].restart_count == restarts + 1 and is_ready(p),
        timeout=120, namespace=RELEASE_NAMESPACE,
    )  # fmt: skip
    print(f"\noperator container killed: restarted and Ready again after {time.monotonic() - killed:.1f}s")
    last = after.status.container_statuses[0].last_state.terminated
    assert last.exit_code == 137, last
    check_batch(life_jobs, batch, expected, "killed operator, jobs started before")


def test_upgrade_while_50_jobs_run_loses_nothing_and_runs_under_a_uid_that_exists_nowhere(
    real_node_cluster: Cluster, release_namespaces: None, core: client.CoreV1Api, batch: client.BatchV1Api,
    life_jobs: CommerceJobs,
) -> None:  # fmt: skip
    """The changed value: the operator's user id, one that exists nowhere (as OpenShift assigns): the pod restarts
    under it, Ready, and runs the jobs."""
    uid = 1_000_000_000 + secrets.randbelow(1_000_000_000)
    expected = start_batch(life_jobs, "up", slow=40, failing=10)
    watcher = StateCounter(life_jobs, set(expected))
    try:
        watcher.wait(lambda: watcher.count("Running") >= 3, timeout=120)
        running_at_start = watcher.count("Running")
        started = time.monotonic()
        upgraded = helm(
            real_node_cluster, "upgrade", RELEASE, str(CHART), f"--namespace={RELEASE_NAMESPACE}", "--reuse-values",
            f"--set=podSecurityContext.runAsUser={uid}", f"--set=podSecurityContext.runAsGroup={uid}",
            "--wait", "--rollback-on-failure", "--timeout=3m",
        )  # fmt: skip
        upgrade_seconds = time.monotonic() - started
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        not_final = sum(1 for name in expected if watcher.states.get(name) not in FINAL)
    finally:
        watcher.close()
    print(f"\nhelm upgrade: {upgrade_seconds:.1f}s; {running_at_start} jobs Running when it started, "
          f"{not_final} not final when it returned")  # fmt: skip
    assert not_final > 0
    assert is_ready(operator_pod(core))
    assert_runs_restricted(uid)
    check_batch(life_jobs, batch, expected, "upgrade with 50 jobs")


def test_rollback_to_the_first_revision_while_50_jobs_run_loses_nothing(
    real_node_cluster: Cluster, release_namespaces: None, core: client.CoreV1Api, batch: client.BatchV1Api,
    life_jobs: CommerceJobs,
) -> None:  # fmt: skip
    expected = start_batch(life_jobs, "back", slow=40, failing=10)
    watcher = StateCounter(life_jobs, set(expected))
    try:
        watcher.wait(lambda: watcher.count("Running") >= 3, timeout=120)
        running_at_start = watcher.count("Running")
        started = time.monotonic()
        rolled = helm(real_node_cluster, "rollback", RELEASE, "1", f"--namespace={RELEASE_NAMESPACE}", "--wait",
                      "--timeout=3m")  # fmt: skip
        rollback_seconds = time.monotonic() - started
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        not_final = sum(1 for name in expected if watcher.states.get(name) not in FINAL)
    finally:
        watcher.close()
    print(f"\nhelm rollback to 1: {rollback_seconds:.1f}s; {running_at_start} jobs Running when it started, "
          f"{not_final} not final when it returned")  # fmt: skip
    assert not_final > 0
    history = yaml.safe_load(
        helm(real_node_cluster, "history", RELEASE, f"--namespace={RELEASE_NAMESPACE}", "--output=yaml").stdout
    )
    assert [h["revision"] for h in history][-1] == 3
    assert history[-1]["description"] == "Rollback to 1"
    assert is_ready(operator_pod(core))
    assert_runs_restricted(IMAGE_UID)  # revision 1's user again
    check_batch(life_jobs, batch, expected, "rollback with 50 jobs")


def test_uninstall_keeps_the_crds_and_the_jobs_and_leaves_no_job_without_an_owner(
    real_node_cluster: Cluster, release_namespaces: None, core: client.CoreV1Api, batch: client.BatchV1Api,
    life_jobs: CommerceJobs,
) -> None:  # fmt: skip
    life_jobs.create("last", command="shop:slow", params=["--seconds=10"])
    running = life_jobs.wait_state("last", "Running", timeout=120)
    kept = {obj["metadata"]["name"]: obj["metadata"]["uid"] for obj in life_jobs.list()}

    removed = helm(real_node_cluster, "uninstall", RELEASE, f"--namespace={RELEASE_NAMESPACE}", "--wait")
    assert removed.returncode == 0, removed.stdout + removed.stderr

    apps = client.AppsV1Api(real_node_cluster.api)
    assert apps.list_namespaced_deployment(RELEASE_NAMESPACE).items == []
    for crd in ("commercejobs", "commercejobtemplates", "commercecronjobs"):
        real_kubectl(real_node_cluster, "get", f"crd/{crd}.commercejobs.dev")
    assert {obj["metadata"]["name"]: obj["metadata"]["uid"] for obj in life_jobs.list()} == kept
    # Every Job is owned by a CommerceJob that is still there; the one that ran goes on to its end.
    jobs = batch.list_namespaced_job(JOBS_NAMESPACE).items
    owners = [[(o.kind, o.uid) for o in j.metadata.owner_references or []] for j in jobs]
    assert all(o and o[0][0] == "CommerceJob" and o[0][1] in kept.values() for o in owners), owners
    job_name = running["status"]["jobName"]
    done = wait_for(batch.list_namespaced_job, job_name, lambda j: (j.status.succeeded or 0) == 1, timeout=120,
                    namespace=JOBS_NAMESPACE)  # fmt: skip
    assert done.metadata.owner_references[0].uid == kept["last"]
    print(f"\nhelm uninstall: {len(kept)} CommerceJobs and {len(jobs)} Jobs kept, each Job owned by its CommerceJob")


# --- an operator that cannot start -----------------------------------------------------------------------------------


BROKEN_RELEASE = "broken"
BROKEN_NAMESPACE = "cj-life-broken"


@pytest.fixture
def broken_namespace(real_node_cluster: Cluster, real_chart: str) -> Iterator[str]:
    core = client.CoreV1Api(real_node_cluster.api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=BROKEN_NAMESPACE)))
    yield BROKEN_NAMESPACE
    helm(real_node_cluster, "uninstall", BROKEN_RELEASE, f"--namespace={BROKEN_NAMESPACE}", "--ignore-not-found")
    core.delete_namespace(BROKEN_NAMESPACE)


def test_install_of_an_operator_that_cannot_start_fails_with_its_last_words(
    real_node_cluster: Cluster, broken_operator_image: str, broken_namespace: str, core: client.CoreV1Api
) -> None:
    timeout = 40
    started = time.monotonic()
    install = subprocess.Popen(
        [str(real_node_cluster.local.toolchain.path("helm")), f"--kubeconfig={real_node_cluster.kubeconfig}",  # type: ignore[union-attr]
         "install", BROKEN_RELEASE, str(CHART), f"--namespace={broken_namespace}", "--skip-crds", "--wait",
         "--rollback-on-failure", f"--timeout={timeout}s", *chart_values("broken-entrypoint", broken_namespace)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # What the user sees while helm waits: the pod's last state, with the container's last words.
        crashed = wait_for(
            core.list_namespaced_pod, "",
            lambda p: bool(p.status.container_statuses and p.status.container_statuses[0].last_state.terminated),
            timeout=timeout, namespace=broken_namespace,
        )  # fmt: skip
        described = real_kubectl(real_node_cluster, "describe", "pod", crashed.metadata.name,
                                 f"--namespace={broken_namespace}").stdout  # fmt: skip
        _, stderr = install.communicate(timeout=timeout + 60)
    finally:
        if install.poll() is None:
            install.kill()
            install.wait()
    seconds = time.monotonic() - started
    print(f"\nhelm install of a broken operator failed after {seconds:.1f}s: {stderr.strip()[-300:]}")
    last = crashed.status.container_statuses[0].last_state.terminated
    assert last.exit_code == 2
    assert "unrecognized arguments: run" in last.message
    described = " ".join(described.split())
    assert "Last State: Terminated" in described
    assert "unrecognized arguments: run" in described
    assert install.returncode != 0
    assert seconds < timeout + 45
    assert "context deadline exceeded" in stderr or "timed out" in stderr or "not ready" in stderr.lower(), stderr
    # --rollback-on-failure removed the failed install.
    status = helm(real_node_cluster, "status", BROKEN_RELEASE, f"--namespace={broken_namespace}")
    assert status.returncode != 0
    assert "not found" in status.stderr
    wait_deleted(core.list_namespaced_pod, crashed.metadata.name, timeout=60, namespace=broken_namespace)


# --- the PHP client in a job's pod (issue 17) ------------------------------------------------------------------------


def test_a_php_job_starts_a_job_tree_through_its_service_account_and_a_refusal_reaches_its_output(
    real_node_cluster: Cluster, start_real_operator: OperatorFactory, real_namespace: str, core: client.CoreV1Api
) -> None:
    """`shop:start-import` (clients/php/examples/StartImportCommand.php, in the demo shop's image) runs as a
    CommerceJob under the ServiceAccount `shop`, which has only the example Role; from its pod it starts the import
    with its indexing as a dependent, through https://10.96.0.1 (the kubernetes Service), and waits for them."""
    cjobs = start_real_operator(
        real_namespace, allowedCommands=["shop:start-import", "silver:import", "ibexa:commerce:index-econtent-job"]
    )
    core.create_namespaced_service_account(
        real_namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="shop"))
    )
    role = ROLE.read_text().replace("namespace: shop", f"namespace: {real_namespace}")
    applied = subprocess.run(
        [str(real_node_cluster.local.toolchain.path("kubectl")), f"--kubeconfig={real_node_cluster.kubeconfig}",  # type: ignore[union-attr]
         "apply", "--server-side", "-f", "-"], input=role, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr

    cjobs.create("php-start", command="shop:start-import", params=["--timeout=180"], serviceAccountName="shop")
    refusing = ["--import-command=doctrine:database:drop", "--timeout=120"]
    cjobs.create("php-refused", command="shop:start-import", params=refusing, serviceAccountName="shop")
    started = cjobs.wait_final("php-start", timeout=240)
    refused = cjobs.wait_final("php-refused", timeout=240)

    assert (state(started), started["status"]["exitCode"]) == ("Finished", 0), started["status"]
    lines = started["status"]["output"].splitlines()
    child = lines[0].split("/")[1].split(":")[0]
    assert lines[0] == f"Started CommerceJob {real_namespace}/{child}: silver:import"
    assert f"{child}: Finished, exit code 0" in lines
    assert f"{child}-index: Finished, exit code 0" in lines
    # The tree that the PHP code started, as the API has it: the import, and its dependent after it.
    imported, index = cjobs.get(child), cjobs.get(f"{child}-index")
    assert (state(imported), state(index)) == ("Finished", "Finished")
    assert index["status"]["startTime"] >= imported["status"]["completionTime"]
    assert "Imported 1250 products" in imported["status"]["output"]
    # The pod ran under the shop's ServiceAccount, on the real node.
    pod = core.list_namespaced_pod(real_namespace, label_selector=f"{OWNER_LABEL}=php-start").items[0]
    assert pod.spec.service_account_name == "shop"
    assert pod.spec.node_selector == ON_REAL_NODE

    assert (state(refused), refused["status"]["exitCode"]) == ("Failed", 1), refused["status"]
    output = refused["status"]["output"]
    assert "CommandNotAllowedException: the operator refused to run the CommerceJob" in output
    assert "spec.command 'doctrine:database:drop' is not allowed" in output
