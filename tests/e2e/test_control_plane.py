"""Smoke tests of the real control plane: Jobs run through the Job controller, the scheduler and kwok, and their
pods' logs come back through the apiserver, as the operator will rely on."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from kubernetes import client

from commerce_jobs.devcluster.toolchain import pinned_versions
from tests.conftest import Cluster
from tests.kube import has_condition, wait_for

SIM = "sim.commercejobs.dev/"


def simulated_job(name: str, annotations: dict[str, str]) -> client.V1Job:
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1JobSpec(
            backoff_limit=0,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(annotations=annotations),
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    containers=[
                        client.V1Container(
                            name="console", image="shop:latest", command=["php", "bin/console", "silver:import"]
                        )
                    ],
                ),
            ),
        ),
    )


def finished(job: Any) -> bool:
    return has_condition("Complete")(job) or has_condition("Failed")(job)


def only_pod(core: client.CoreV1Api, namespace: str, job: str) -> client.V1Pod:
    pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
    assert len(pods) == 1, [p.metadata.name for p in pods]
    return pods[0]


def test_apiserver_reports_the_pinned_version(cluster: Cluster) -> None:
    if cluster.local is None:
        pytest.skip("the version is only pinned for the local control plane")
    version = client.VersionApi(cluster.api).get_code()
    assert version.git_version == pinned_versions()["KUBERNETES_VERSION"]


def test_rbac_is_enforced(cluster: Cluster, namespace: str) -> None:
    """A ServiceAccount without a binding may not list Jobs: RBAC authorizes requests, not an allow-all mode."""
    auth = client.AuthorizationV1Api(cluster.api)
    review = auth.create_subject_access_review(
        client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=f"system:serviceaccount:{namespace}:default",
                resource_attributes=client.V1ResourceAttributes(
                    namespace=namespace, verb="list", group="batch", resource="jobs"
                ),
            )
        )
    )
    assert review.status.allowed is False


@pytest.mark.usefixtures("simulated_cluster")
def test_job_whose_pod_succeeds_completes_and_serves_its_log(
    core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str
) -> None:
    batch.create_namespaced_job(namespace, simulated_job("import", {SIM + "output": "imported 3 products\ndone\n"}))

    job = wait_for(batch.list_namespaced_job, "import", finished, namespace=namespace)

    assert has_condition("Complete")(job)
    assert job.status.succeeded == 1
    pod = only_pod(core, namespace, "import")
    assert pod.status.phase == "Succeeded"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0
    assert core.read_namespaced_pod_log(pod.metadata.name, namespace) == "imported 3 products\ndone\n"


@pytest.mark.usefixtures("simulated_cluster")
def test_job_whose_pod_fails_reports_its_exit_code_and_log(
    core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str
) -> None:
    annotations = {SIM + "exit-code": "3", SIM + "output": "SQLSTATE[HY000] connection refused"}
    batch.create_namespaced_job(namespace, simulated_job("broken", annotations))

    job = wait_for(batch.list_namespaced_job, "broken", finished, namespace=namespace)

    assert has_condition("Failed")(job)
    pod = only_pod(core, namespace, "broken")
    assert pod.status.phase == "Failed"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 3
    # Output without a trailing newline comes back exactly as printed.
    assert core.read_namespaced_pod_log(pod.metadata.name, namespace) == "SQLSTATE[HY000] connection refused"


@pytest.mark.usefixtures("simulated_cluster")
def test_pod_runs_for_the_duration_that_it_asks_for(
    core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str
) -> None:
    batch.create_namespaced_job(namespace, simulated_job("slow", {SIM + "duration": "3s"}))

    job = wait_for(batch.list_namespaced_job, "slow", finished, namespace=namespace)

    assert has_condition("Complete")(job)
    terminated = only_pod(core, namespace, "slow").status.container_statuses[0].state.terminated
    assert terminated.finished_at - terminated.started_at >= timedelta(seconds=3)
