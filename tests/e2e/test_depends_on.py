"""spec.dependsOn end to end (JMSJobQueueBundle's addDependency): jobs that wait for other jobs that exist.

The test operator waits 5 s for a dependency that does not exist (dependencyGraceSeconds in tests/e2e/conftest.py).
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from tests.cjobs import GROUP, VERSION, CommerceJobs, condition, sim, state
from tests.conftest import Cluster
from tests.e2e.conftest import OPERATOR_CONFIG, commerce_jobs, kubectl, kubectl_apply

pytestmark = pytest.mark.usefixtures("simulated_cluster")
GRACE = OPERATOR_CONFIG["dependencyGraceSeconds"]
SHORT = {"maxRetention": "1s", "maxRetentionSucceeded": "1s"}


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def status(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("status") or {}


def waiting_for(*names: str) -> Any:
    """A predicate: the job waits for its dependencies, and exactly these are not Finished yet."""
    return lambda o: (
        status(o).get("reason") == "WaitingForDependencies" and status(o).get("waitingOn") == ", ".join(names)
    )


def jobs_of(batch: client.BatchV1Api, namespace: str, cjob: str) -> list[client.V1Job]:
    return list(batch.list_namespaced_job(namespace, label_selector=f"commercejobs.dev/job-name={cjob}").items)


def test_a_diamond_runs_d_only_after_both_b_and_c_finished(
    cluster: Cluster, cjobs: CommerceJobs, batch: client.BatchV1Api, namespace: str
) -> None:
    """A -> (B, C) -> D: D waits for both, names those not Finished, and runs once after the later of the two."""
    cjobs.create("a", command="silver:import", podAnnotations=sim(duration="2s"))
    cjobs.create("b", command="silver:index", dependsOn=["a"], podAnnotations=sim(duration="1s"))
    cjobs.create("c", command="silver:prices", dependsOn=["a"], podAnnotations=sim(duration="6s"))
    cjobs.create("d", command="silver:swap", dependsOn=["b", "c"], podAnnotations=sim())

    waiting = cjobs.wait("d", waiting_for("b", "c"))
    assert state(waiting) == "Pending"
    assert condition(waiting)["status"] == "Unknown"
    # B finished first: D now waits for C only, and says so in -o wide.
    cjobs.wait("d", waiting_for("c"))
    wide = kubectl(cluster, "get", "cjob", "d", "-o=wide", f"-n={namespace}").stdout.splitlines()
    column = wide[0].index("WAITING ON")  # kubectl aligns each value under its header
    assert wide[1].split()[:2] == ["d", "silver:swap"]
    assert wide[1][column:].split()[0] == "c"

    d = cjobs.wait_final("d")
    b, c = cjobs.get("b"), cjobs.get("c")
    assert [state(o) for o in (b, c, d)] == ["Finished"] * 3
    assert status(d)["dependencies"] == [{"name": "b", "state": "Finished"}, {"name": "c", "state": "Finished"}]
    assert "waitingOn" not in status(d)
    (job,) = jobs_of(batch, namespace, "d")
    assert job.metadata.creation_timestamp >= ts(status(c)["completionTime"]) >= ts(status(b)["completionTime"])
    (b_job,) = jobs_of(batch, namespace, "b")
    assert b_job.metadata.creation_timestamp >= ts(status(cjobs.get("a"))["completionTime"])


def test_a_failed_dependency_cancels_the_graph_below_it_and_no_job_is_created(
    cjobs: CommerceJobs, batch: client.BatchV1Api, namespace: str
) -> None:
    """A -> (B, C) -> D -> E, C fails: D is Canceled naming C, E is Canceled naming D, neither ever gets a Job."""
    cjobs.create("a", command="silver:import", podAnnotations=sim(duration="1s"))
    cjobs.create("b", command="silver:index", dependsOn=["a"], podAnnotations=sim())
    cjobs.create("c", command="silver:prices", dependsOn=["a"], podAnnotations=sim(exit_code=3))
    cjobs.create("d", command="silver:swap", dependsOn=["b", "c"],
                 dependingJobs=[{"name": "notify", "command": "silver:mail"}])  # fmt: skip
    cjobs.create("e", command="silver:report", dependsOn=["d"])

    d, e = cjobs.wait_final("d"), cjobs.wait_final("e")

    assert (state(cjobs.wait_final("b")), state(cjobs.get("c"))) == ("Finished", "Failed")
    assert (state(d), status(d)["reason"]) == ("Canceled", "DependencyFailed")
    assert status(d)["message"].startswith("dependency c ended Failed")
    assert condition(d)["reason"] == "DependencyFailed"
    assert {"name": "c", "state": "Failed"} in status(d)["dependencies"]
    assert status(d)["dependents"] == [{"name": "d-notify", "state": "Canceled"}]  # its own dependingJobs too
    assert (state(e), status(e)["reason"]) == ("Canceled", "DependencyFailed")
    assert status(e)["message"] == "dependency d ended Canceled (DependencyFailed)"
    assert not status(d).get("startTime")
    assert jobs_of(batch, namespace, "d") == []
    assert jobs_of(batch, namespace, "e") == []
    assert "d-notify" not in {o["metadata"]["name"] for o in cjobs.list()}


def test_a_dependency_that_is_retried_keeps_its_dependent_waiting_until_it_finished(
    cjobs: CommerceJobs, batch: client.BatchV1Api, namespace: str
) -> None:
    """As in JMS: while a retry waits for its backoff the dependency is still Running, not Failed."""
    cjobs.create("flaky", command="silver:erp:resend-orders", maxRetries=2, retryBackoffSeconds=2,
                 podAnnotations=sim(exit_code=1, **{"exit-code-attempt-2": "0"}))  # fmt: skip
    cjobs.create("after-flaky", command="silver:report", dependsOn=["flaky"], podAnnotations=sim())

    cjobs.wait("flaky", lambda o: status(o).get("reason") == "RetryBackoff")
    meanwhile = cjobs.get("after-flaky")
    assert (state(meanwhile), status(meanwhile)["reason"]) == ("Pending", "WaitingForDependencies")
    assert status(meanwhile)["dependencies"] == [{"name": "flaky", "state": "Running"}]

    done = cjobs.wait_final("after-flaky")
    flaky = cjobs.get("flaky")
    assert (state(flaky), status(flaky)["attempts"]) == ("Finished", 2)
    assert state(done) == "Finished"
    (job,) = jobs_of(batch, namespace, "after-flaky")
    assert job.metadata.creation_timestamp >= ts(status(flaky)["completionTime"])


def test_a_dependency_that_never_appears_fails_the_job_after_the_grace(
    cjobs: CommerceJobs, batch: client.BatchV1Api, namespace: str
) -> None:
    cjobs.create("orphan", command="silver:index", dependsOn=["never-created"], podAnnotations=sim())
    waiting = cjobs.wait("orphan", waiting_for("never-created"))
    assert status(waiting)["dependencies"] == [{"name": "never-created", "state": "NotFound"}]
    assert "never-created not found yet" in status(waiting)["message"]

    final = cjobs.wait_final("orphan", timeout=GRACE + 60)

    assert (state(final), status(final)["reason"]) == ("Failed", "DependencyNotFound")
    assert "dependency never-created not found" in status(final)["message"]
    waited = ts(status(final)["completionTime"]) - ts(final["metadata"]["creationTimestamp"])
    assert waited.total_seconds() >= GRACE - 1  # 1 s timestamps
    assert jobs_of(batch, namespace, "orphan") == []


def test_a_dependency_created_after_the_job_within_the_grace_is_waited_for(cjobs: CommerceJobs) -> None:
    """GitOps tools apply objects in any order: the job may come first."""
    cjobs.create("index-first", command="silver:index", dependsOn=["import-later"], podAnnotations=sim())
    cjobs.wait("index-first", waiting_for("import-later"))
    cjobs.create("import-later", command="silver:import", podAnnotations=sim())
    assert state(cjobs.wait_final("index-first")) == "Finished"


def test_a_would_be_cycle_fails_its_jobs_and_cancels_what_waits_for_them(
    cjobs: CommerceJobs, batch: client.BatchV1Api, namespace: str
) -> None:
    cjobs.create("cycle-p", command="silver:a", dependsOn=["cycle-q"], podAnnotations=sim())
    cjobs.create("after-p", command="silver:c", dependsOn=["cycle-p"], podAnnotations=sim())
    cjobs.wait("cycle-p", waiting_for("cycle-q"))
    cjobs.create("cycle-q", command="silver:b", dependsOn=["cycle-p"], podAnnotations=sim())

    p, q, after = cjobs.wait_final("cycle-p"), cjobs.wait_final("cycle-q"), cjobs.wait_final("after-p")

    assert (state(p), status(p)["reason"]) == ("Failed", "DependencyCycle")
    assert "(cycle-p -> cycle-q -> cycle-p)" in status(p)["message"]
    assert (state(q), status(q)["reason"]) == ("Failed", "DependencyCycle")
    assert "(cycle-q -> cycle-p -> cycle-q)" in status(q)["message"]
    assert (state(after), status(after)["reason"]) == ("Canceled", "DependencyFailed")
    for name in ("cycle-p", "cycle-q", "after-p"):
        assert jobs_of(batch, namespace, name) == []


def test_retention_never_deletes_a_job_that_a_live_job_waits_for(cjobs: CommerceJobs) -> None:
    """The test operator deletes at most 2 expired trees a round, rounds 2 s apart."""
    cjobs.create("base", command="silver:import", retention=SHORT, podAnnotations=sim())
    cjobs.create("gate", command="silver:export", podAnnotations=sim(duration="10m"))
    cjobs.create("report", command="silver:report", dependsOn=["base", "gate"], podAnnotations=sim())
    cjobs.wait_final("base")
    cjobs.wait("report", waiting_for("gate"))
    # Expires after base: once retention deleted it, it had its chance to delete base, oldest first.
    cjobs.create("witness", command="silver:import", retention=SHORT, podAnnotations=sim())
    cjobs.wait_final("witness")
    cjobs.wait_deleted("witness")
    assert state(cjobs.get("base")) == "Finished"

    cjobs.patch("report", {"cancel": True})  # nothing waits for base any more
    assert state(cjobs.wait_final("report")) == "Canceled"
    cjobs.wait_deleted("base")


def test_start_after_makes_a_template_run_wait_for_a_job(
    cluster: Cluster, cjobs: CommerceJobs, custom: client.CustomObjectsApi, namespace: str
) -> None:
    template = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CommerceJobTemplate", "metadata": {"name": "index-solr"},
                "spec": {"command": "silver:index", "podAnnotations": sim()}}  # fmt: skip
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "commercejobtemplates", template)
    # It cannot finish before its executeAfter: whatever the machine's load, the run is created while it waits.
    later = (datetime.now(UTC) + timedelta(seconds=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cjobs.create("import-products", command="silver:import", executeAfter=later, podAnnotations=sim())

    started = commerce_jobs(cluster, "start", "index-solr", "-n", namespace, "--after", "import-products", "--wait")

    assert started.returncode == 0, started.stdout + started.stderr
    (run,) = [o for o in cjobs.list() if o["metadata"]["name"].startswith("index-solr-")]
    assert run["spec"]["dependsOn"] == ["import-products"]
    assert f"{run['metadata']['name']}: Pending (WaitingForDependencies: waits for import-products" in started.stdout
    assert f"{run['metadata']['name']}: Finished, exit code 0" in started.stdout
    assert run["status"]["startTime"] >= cjobs.get("import-products")["status"]["completionTime"]

    typo = commerce_jobs(cluster, "start", "index-solr", "-n", namespace, "--after", "import-prodcts")
    assert typo.returncode == 1
    assert f"no CommerceJob 'import-prodcts' in namespace '{namespace}' (--after)" in typo.stderr
    assert len(cjobs.list()) == 2  # nothing created


def manifest(name: str, spec: str) -> str:
    return f"apiVersion: commercejobs.dev/v1alpha1\nkind: CommerceJob\nmetadata:\n  name: {name}\nspec:\n{spec}"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("  command: a\n  dependsOn: [selfish]\n", "spec.dependsOn: Invalid value"),
        ("  command: a\n  dependsOn: [selfish]\n", "a job cannot depend on itself"),
        ("  command: a\n  dependsOn: [import, import]\n", 'spec.dependsOn[1]: Duplicate value: "import"'),
        ("  command: a\n  dependsOn: [Import_Products]\n", "must be the name of a CommerceJob"),
        ("  command: a\n  dependsOn: ['']\n", "spec.dependsOn[0]"),
    ],
)
def test_kubectl_apply_refuses_a_bad_depends_on_with_a_clear_message(
    cluster: Cluster, crds: None, namespace: str, spec: str, message: str
) -> None:
    result = kubectl_apply(cluster, namespace, manifest("selfish", spec))
    assert result.returncode != 0
    assert message in result.stderr


def test_depends_on_is_immutable(cluster: Cluster, crds: None, namespace: str) -> None:
    def apply(name: str, spec: str) -> subprocess.CompletedProcess[str]:
        return kubectl_apply(cluster, namespace, manifest(name, spec))

    assert apply("waits", "  command: a\n  dependsOn: [import]\n").returncode == 0
    for changed in ("[prices]", "[import, prices]", "[]"):
        refused = apply("waits", f"  command: a\n  dependsOn: {changed}\n")
        assert "spec.dependsOn is immutable" in refused.stderr, changed
    assert "spec.dependsOn is immutable" in apply("waits", "  command: a\n").stderr
    assert apply("free", "  command: a\n").returncode == 0
    assert "spec.dependsOn is immutable" in apply("free", "  command: a\n  dependsOn: [import]\n").stderr


def test_a_dependency_deleted_while_the_job_waits_counts_as_not_found(cjobs: CommerceJobs) -> None:
    cjobs.create("doomed", command="silver:export", podAnnotations=sim(duration="10m"))
    cjobs.create("after-doomed", command="silver:report", dependsOn=["doomed"], podAnnotations=sim())
    cjobs.wait("after-doomed", waiting_for("doomed"))
    cjobs.custom.delete_namespaced_custom_object(GROUP, VERSION, cjobs.namespace, "commercejobs", "doomed")

    final = cjobs.wait_final("after-doomed", timeout=GRACE + 60)

    assert (state(final), status(final)["reason"]) == ("Failed", "DependencyNotFound")
    assert status(final)["dependencies"] == [{"name": "doomed", "state": "NotFound"}]
