"""Memory that the operator frees (issue 13): 1,000 CommerceJobs, in every state a job can be in, created and then
deleted, leave no entry behind in any cache, index or queue of the operator.

The operator under test is a `commerce-jobs run` process of its own, scoped to this test's namespace, so that its
caches hold this test's objects only. `kill -USR1 <pid>` makes it log the sizes of its caches (a diagnostic that the
README documents); the test reads that line from the process's output.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, watch

from tests.cjobs import GROUP, PLURAL, VERSION, CommerceJobs, sim, state
from tests.conftest import Cluster
from tests.e2e.conftest import OPERATOR_CONFIG, REPO, _free_port, _wait_healthy

pytestmark = [pytest.mark.usefixtures("simulated_cluster"), pytest.mark.timeout(1200)]
JOBS = 1000
SIZES = re.compile(r"cache sizes: (\{.*\})")


class ScopedOperator:
    """`commerce-jobs run --namespace NS` under the chart's ServiceAccount; its output goes to a log file, and each
    line is also handed to the test."""

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        directory = REPO / "test-artifacts"
        directory.mkdir(exist_ok=True)
        config = directory / "memory-config.yaml"
        config.write_text(yaml.safe_dump(OPERATOR_CONFIG))
        self.log_path = directory / "memory-operator.log"
        self.lines: queue.Queue[str] = queue.Queue()
        port = _free_port()
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "COMMERCE_JOBS_CONFIG": str(config)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "commerce_jobs", "run", "--standalone", f"--namespace={namespace}",
             f"--liveness=http://127.0.0.1:{port}/healthz"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        _wait_healthy(self.proc, port, self.log_path)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.log_path.open("wb") as log:
            for raw in self.proc.stdout:
                log.write(raw)
                log.flush()
                self.lines.put(raw.decode(errors="replace"))

    def sizes(self, timeout: float = 30) -> dict[str, int]:
        """The sizes of the operator's caches, as it logs them on SIGUSR1."""
        while not self.lines.empty():
            self.lines.get_nowait()
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                match = SIZES.search(self.lines.get(timeout=remaining))
            except queue.Empty:
                break
            if match:
                sizes: dict[str, int] = json.loads(match.group(1))
                return sizes
        raise TimeoutError(f"the operator logged no cache sizes within {timeout}s (see {self.log_path})")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._reader.join(timeout=10)


@pytest.fixture
def scoped_operator(cluster: Cluster, operator_kubeconfig: Path, namespace: str) -> Iterator[ScopedOperator]:
    operator = ScopedOperator(operator_kubeconfig, namespace)
    yield operator
    operator.stop()


def wait_objects(
    list_fn: Callable[..., Any], done: Callable[[dict[str, Any]], bool], timeout: float = 600
) -> dict[str, Any]:
    """The objects of a list call by name, once ``done`` holds for them all (a list, then a watch)."""
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    while (remaining := deadline - time.monotonic()) > 0:
        listed = list_fn()
        items, version = (listed["items"], listed["metadata"]["resourceVersion"]) if isinstance(listed, dict) else (
            listed.items, listed.metadata.resource_version)  # fmt: skip
        seen = {_name(o): o for o in items}
        if done(seen):
            return seen
        try:
            for event in watch.Watch().stream(list_fn, resource_version=version,
                                              timeout_seconds=max(1, int(min(remaining, 60)))):  # fmt: skip
                if event["type"] == "DELETED":
                    seen.pop(_name(event["object"]), None)
                elif event["type"] in ("ADDED", "MODIFIED"):
                    seen[_name(event["object"])] = event["object"]
                if done(seen):
                    return seen
        except client.ApiException as e:
            if e.status != 410:
                raise
    raise TimeoutError(f"not reached in {timeout}s; {len(seen)} objects, e.g. {sorted(seen)[:10]}")


def retried(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A request that a busy apiserver may time out (504; a bulk delete of 1,000 objects does on a loaded machine)
    and that may be sent again."""
    for attempt in range(5):
        try:
            return call(*args, **kwargs)
        except client.ApiException as e:
            if e.status not in (500, 503, 504) or attempt == 4:
                raise
    raise AssertionError("unreachable")


def _name(obj: Any) -> str:
    return str(obj["metadata"]["name"] if isinstance(obj, dict) else obj.metadata.name)


def create_every_kind_of_job(cjobs: CommerceJobs, first: int, count: int) -> dict[str, set[str]]:
    """CommerceJobs number ``first`` to ``first + count - 1``, of ten kinds in turn; returns their names by kind."""
    tonight = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    missing_secret = {"waiting-reason": "CreateContainerConfigError", "waiting-message": 'secret "db" not found',
                      "killed-exit-code": "137"}  # fmt: skip
    kinds: list[tuple[str, dict[str, Any]]] = [
        ("finished", {"podAnnotations": sim()}),
        ("finished", {"podAnnotations": sim(output="imported\n")}),
        ("finished", {"podAnnotations": sim(), "queue": "imports"}),
        ("failed", {"podAnnotations": sim(exit_code=2)}),
        ("parent", {"podAnnotations": sim(), "dependingJobs": [{"name": "index", "command": "silver:index"}]}),
        ("retried", {"podAnnotations": sim(exit_code=1, **{"exit-code-attempt-2": "0"}), "maxRetries": 1,
                     "retryBackoffSeconds": 1}),
        ("running", {"podAnnotations": sim(duration="10m", **{"killed-exit-code": "0"})}),
        ("serial", {"podAnnotations": sim(duration="10m"), "queue": "serial"}),  # one runs, the others wait
        ("scheduled", {"executeAfter": tonight}),
        ("stuck", {"podAnnotations": sim(**missing_secret), "maxRetries": 2, "retryBackoffSeconds": 30}),
    ]  # fmt: skip
    groups: dict[str, set[str]] = {}
    numbers = range(first, first + count)
    for i in numbers:
        kind, _ = kinds[i % len(kinds)]
        groups.setdefault(kind, set()).add(f"{kind}-{i:04d}")

    def create(i: int) -> None:
        kind, spec = kinds[i % len(kinds)]
        try:
            retried(cjobs.create, f"{kind}-{i:04d}", command="silver:import", params=[str(i)], **spec)
        except client.ApiException as e:
            if e.status != 409:  # created by a try whose answer was lost
                raise

    with concurrent.futures.ThreadPoolExecutor(8) as pool:  # as a burst of users and CronJobs would
        list(pool.map(create, numbers))
    return groups


def test_a_thousand_jobs_created_and_deleted_leave_nothing_in_the_operators_caches(
    cluster: Cluster, scoped_operator: ScopedOperator, namespace: str
) -> None:
    cjobs = CommerceJobs(cluster.api, namespace)
    custom, batch, core = client.CustomObjectsApi(cluster.api), client.BatchV1Api(cluster.api), client.CoreV1Api(
        cluster.api)  # fmt: skip
    list_cjobs = functools.partial(custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL)
    began = time.monotonic()
    # 100 jobs, ten of each kind, reach their states; then 900 more come in a burst, and all are deleted at once:
    # most of them on their way, which is when late events come (a job's Job and pod events after its deletion).
    groups = create_every_kind_of_job(cjobs, 0, 100)

    def busy(seen: dict[str, Any]) -> bool:
        """Short jobs ended (a parent's dependent too), long ones run, one job of the serial queue runs and the
        others wait, scheduled ones wait, stuck ones wait for their retry."""

        def status(name: str) -> dict[str, Any]:
            return dict((seen.get(name) or {}).get("status") or {})

        def every(kind: str, wanted: Callable[[str], bool]) -> bool:
            return all(wanted(n) for n in groups[kind])

        def is_(*states: str) -> Callable[[str], bool]:
            return lambda name: status(name).get("state") in states

        return (
            all(every(kind, is_("Finished", "Failed")) for kind in ("finished", "failed", "retried"))
            and every("parent", lambda name: status(f"{name}-index").get("state") == "Finished")
            and every("running", is_("Running"))
            and sum(status(n).get("state") == "Running" for n in groups["serial"]) == 1
            and every("scheduled", is_("Pending"))
            and every("stuck", lambda name: status(name).get("reason") == "RetryBackoff")
        )

    seen = wait_objects(list_cjobs, busy)
    print(f"\n{len(seen)} CommerceJobs in their states after {time.monotonic() - began:.0f}s")
    serial_slot = next(n for n in groups["serial"] if state(seen[n]) == "Running")
    create_every_kind_of_job(cjobs, 100, JOBS - 100)
    print(f"{JOBS} created after {time.monotonic() - began:.0f}s; sizes: {scoped_operator.sizes()}")

    retried(custom.delete_collection_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
            body={"propagationPolicy": "Background"})  # fmt: skip
    wait_objects(list_cjobs, lambda objs: not objs)
    wait_objects(functools.partial(batch.list_namespaced_job, namespace), lambda objs: not objs)
    wait_objects(functools.partial(core.list_namespaced_pod, namespace), lambda objs: not objs)
    print(f"all deleted after {time.monotonic() - began:.0f}s (the running {serial_slot} held the serial slot)")

    # Empty, once the last late events are in (they follow the deletions within moments).
    deadline = time.monotonic() + 60
    while any((sizes := scoped_operator.sizes()).values()) and time.monotonic() < deadline:
        time.sleep(1)  # asked again: the sizes are the operator's to log, there is nothing to watch
    assert {k: v for k, v in sizes.items() if v} == {}, sizes

    # The slot of the serial job that ran when it was deleted is free again.
    cjobs.create("after", command="silver:import", queue="serial", podAnnotations=sim())
    assert state(cjobs.wait_final("after")) == "Finished"
