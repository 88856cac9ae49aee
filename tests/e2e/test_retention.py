"""Retention clean-up: the operator's loop and the one-shot `commerce-jobs clean-up`."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.cjobs import CommerceJobs, sim
from tests.conftest import Cluster
from tests.e2e.conftest import commerce_jobs
from tests.kube import wait_deleted

pytestmark = pytest.mark.usefixtures("simulated_cluster")
SHORT = {"maxRetention": "1s", "maxRetentionSucceeded": "1s"}


def names(cjobs: CommerceJobs) -> set[str]:
    return {o["metadata"]["name"] for o in cjobs.list()}


def test_the_operator_deletes_expired_jobs_with_their_jobs_and_pods_in_rounds_of_per_call(
    cjobs: CommerceJobs, core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str
) -> None:
    """The test operator deletes at most 2 trees a round, rounds 2 s apart (perCall 2, intervalSeconds 2)."""
    for i in range(5):
        cjobs.create(f"expiring-{i}", command="silver:import", retention=SHORT, podAnnotations=sim())
    cjobs.create("kept", command="silver:import", podAnnotations=sim())  # 1 hour: stays
    cjobs.create("running", command="silver:import", retention=SHORT, podAnnotations=sim(duration="10m"))
    cjobs.create(
        "parent", command="silver:import", retention=SHORT, podAnnotations=sim(),
        dependingJobs=[{"name": "child", "command": "silver:index", "podAnnotations": sim(duration="4s")}],
    )  # fmt: skip
    for name in [f"expiring-{i}" for i in range(5)] + ["kept", "parent-child"]:
        cjobs.wait_final(name)
    cjobs.wait_state("running", "Running")

    for name in [f"expiring-{i}" for i in range(5)] + ["parent", "parent-child"]:
        cjobs.wait_deleted(name)

    assert names(cjobs) == {"kept", "running"}
    # Their Jobs and pods go with them: the garbage collector follows the ownerReferences, in its own time (11 s for
    # one of them on a loaded machine), so each is waited for, not sampled.
    gone = {f"expiring-{i}" for i in range(5)} | {"parent", "parent-child"}
    for name in gone:
        wait_deleted(batch.list_namespaced_job, f"{name}-1", namespace=namespace)
    for pod in core.list_namespaced_pod(namespace).items:
        if pod.metadata.labels["commercejobs.dev/job-name"] in gone:
            wait_deleted(core.list_namespaced_pod, pod.metadata.name, namespace=namespace)
    pods = core.list_namespaced_pod(namespace).items
    assert {p.metadata.labels["commercejobs.dev/job-name"] for p in pods} == {"kept", "running"}


def test_clean_up_command_deletes_exactly_per_call_oldest_first_and_dry_run_deletes_nothing(
    cluster: Cluster, cjobs: CommerceJobs, namespace: str
) -> None:
    for i in range(4):
        cjobs.create(f"done-{i}", command="silver:import", podAnnotations=sim())
        cjobs.wait_final(f"done-{i}")
    cjobs.create("busy", command="silver:import", podAnnotations=sim(duration="10m"))
    cjobs.wait_state("busy", "Running")
    args = ["clean-up", "--max-retention=0s", "--per-call=2", f"--namespace={namespace}"]

    dry = commerce_jobs(cluster, *args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would delete 2 of 4 expired job tree(s)" in dry.stdout
    assert names(cjobs) == {"done-0", "done-1", "done-2", "done-3", "busy"}

    real = commerce_jobs(cluster, *args)
    assert real.returncode == 0, real.stderr
    assert f"deleted {namespace}/done-0" in real.stdout
    assert f"deleted {namespace}/done-1" in real.stdout
    assert "deleted 2 of 4 expired job tree(s)" in real.stdout
    assert names(cjobs) - {"done-0", "done-1"} == {"done-2", "done-3", "busy"}


def test_clean_up_refuses_a_bad_duration(cluster: Cluster) -> None:
    result = commerce_jobs(cluster, "clean-up", "--max-retention=a while")
    assert result.returncode == 2
    assert "'a while' is not a duration" in result.stderr
