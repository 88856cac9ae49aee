"""CommerceJobs end to end: the operator as a real kopf process, the real Job controller, scheduler and kwok."""

from __future__ import annotations

import concurrent.futures
import subprocess
from collections.abc import Callable
from datetime import datetime

import pytest
from kubernetes import client, watch

from tests.cjobs import GROUP, PLURAL, VERSION, CommerceJobs, condition, sim, state
from tests.conftest import Cluster
from tests.e2e.conftest import kubectl, kubectl_apply
from tests.kube import wait_deleted, wait_for

pytestmark = pytest.mark.usefixtures("simulated_cluster")


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _event_on(name: str, reason: str) -> Callable[[client.CoreV1Event], bool]:
    return lambda event: event.involved_object.name == name and event.reason == reason


def jobs_of(batch: client.BatchV1Api, namespace: str, cjob: str) -> list[client.V1Job]:
    jobs = batch.list_namespaced_job(namespace, label_selector=f"commercejobs.dev/job-name={cjob}").items
    return sorted(jobs, key=lambda j: int(j.metadata.labels["commercejobs.dev/attempt"]))


def test_seed_import_runs_then_its_dependent_runs(
    cluster: Cluster, cjobs: CommerceJobs, core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str
) -> None:
    """The platform's seed job: silver:import tmp, then ibexa:commerce:index-econtent-job after it succeeded."""
    cjobs.create(
        "import-solr",
        label="Import from eZ",
        command="silver:import",
        params=["tmp"],
        podAnnotations=sim(duration="4s", output="Imported 1250 products\n"),
        dependingJobs=[
            {
                "name": "index-solr",
                "label": "Index econtent tmp cores",
                "command": "ibexa:commerce:index-econtent-job",
                "podAnnotations": sim(output="indexed\n"),
            }
        ],
    )
    # What a user runs: kubectl wait on the Succeeded condition.
    waited = kubectl(
        cluster, "wait", "--for=condition=Succeeded", "--timeout=60s", f"-n={namespace}", "commercejob/import-solr"
    )
    assert "condition met" in waited.stdout

    parent = cjobs.get("import-solr")
    status = parent["status"]
    assert status["state"] == "Finished"
    assert status["exitCode"] == 0
    assert status["attempts"] == 1
    assert status["output"] == "Imported 1250 products\n"
    assert condition(parent)["reason"] == "Completed"
    # Created with the parent's final status: it waits for its own start.
    assert status["dependents"] == [{"name": "import-solr-index-solr", "state": "Pending"}]

    (job,) = jobs_of(batch, namespace, "import-solr")
    assert job.spec.backoff_limit == 0
    assert job.metadata.owner_references[0].uid == parent["metadata"]["uid"]
    assert job.spec.template.spec.containers[0].command == ["php", "bin/console", "silver:import", "tmp"]

    # Events are posted after the status that they report (off the workers' path): waited for, not listed once.
    # It ran for longer than the Started Event is held: both.
    for reason in ("Started", "Finished"):
        wait_for(core.list_namespaced_event, "", _event_on("import-solr", reason), namespace=namespace)

    child = cjobs.wait_final("import-solr-index-solr")
    assert state(child) == "Finished"
    assert child["status"]["output"] == "indexed\n"
    assert child["metadata"]["ownerReferences"][0]["uid"] == parent["metadata"]["uid"]
    # It started only after its parent succeeded.
    assert ts(child["metadata"]["creationTimestamp"]) >= ts(status["completionTime"])
    # ... and its parent follows it.
    finished = [{"name": "import-solr-index-solr", "state": "Finished"}]
    cjobs.wait("import-solr", lambda o: o["status"].get("dependents") == finished)
    # It ended within the hold of its Started Event (startedEventHoldSeconds, 2 s in these tests): its Finished Event
    # stands for both, one write fewer.
    child_finished = _event_on("import-solr-index-solr", "Finished")
    wait_for(core.list_namespaced_event, "", child_finished, namespace=namespace)
    reasons = {
        e.reason
        for e in core.list_namespaced_event(namespace).items
        if e.involved_object.name == child["metadata"]["name"]
    }
    assert reasons == {"Finished"}


def status_versions(
    custom: client.CustomObjectsApi, namespace: str, name: str, since: str, until: Callable[[dict], bool]
) -> list[dict]:
    """Every version of a CommerceJob's status after resourceVersion ``since`` (a watch) until ``until`` holds."""
    versions: list[dict] = []
    stream = watch.Watch().stream(
        custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
        field_selector=f"metadata.name={name}", resource_version=since, timeout_seconds=90,
    )  # fmt: skip
    for event in stream:
        status = event["object"].get("status") or {}
        if not versions or versions[-1] != status:
            versions.append(status)
        if until(status):
            stream.close()
            return versions
    raise TimeoutError(f"{name}: the status did not reach the expected state; last: {versions[-1:]}")


def test_a_parent_follows_the_state_of_every_dependent_of_its_tree_with_one_write_per_end(
    cjobs: CommerceJobs, custom: client.CustomObjectsApi, namespace: str
) -> None:
    """Issue 13: A -> B -> C where B fails (exit 3) left A's list at [B: Created], without C, for ever."""
    expected = [
        {"name": "tree-b", "state": "Failed"},
        {"name": "tree-b-c", "state": "Canceled"},  # never created: B did not succeed
        {"name": "tree-d", "state": "Finished"},
        {"name": "tree-d-e", "state": "Finished"},
    ]

    def done(status: dict) -> bool:
        return bool(status.get("dependents") == expected)

    since = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["metadata"]["resourceVersion"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        watched = pool.submit(status_versions, custom, namespace, "tree", since, done)
        cjobs.create(
            "tree", command="silver:import", podAnnotations=sim(),
            dependingJobs=[
                {"name": "b", "command": "silver:index", "podAnnotations": sim(exit_code=3),
                 "dependingJobs": [{"name": "c", "command": "silver:swap"}]},
                {"name": "d", "command": "silver:export", "dependingJobs": [{"name": "e", "command": "silver:upload"}]},
            ],
        )  # fmt: skip
        versions = watched.result()

    assert cjobs.get("tree-b")["status"]["dependents"] == [{"name": "tree-b-c", "state": "Canceled"}]
    assert cjobs.get("tree-d")["status"]["dependents"] == [{"name": "tree-d-e", "state": "Finished"}]
    # Only documented states, ever.
    states = {d["state"] for v in versions for d in v.get("dependents") or []}
    assert states <= {"Pending", "Running", "Finished", "Failed", "Terminated", "Canceled", "Incomplete"}
    # The parent's own writes: Running, then Finished with its tree; after that one write for each dependent that
    # ended (B with C, D, E; fewer when they end together), none for their starts (short jobs).
    after_final = [v for v in versions if v.get("state") == "Finished"]
    # The Finished write lists the dependents already (B may have started by then: its create came back first).
    assert after_final[0]["dependents"][0]["state"] in ("Pending", "Running")
    assert len(after_final) - 1 <= 3, [v["dependents"] for v in after_final]


def test_failing_job_reports_exit_code_and_output_and_cancels_its_dependents(cjobs: CommerceJobs) -> None:
    cjobs.create(
        "broken-import",
        command="silver:import",
        params=["tmp"],
        podAnnotations=sim(exit_code=2, output="SQLSTATE[HY000] [2002] Connection refused\n"),
        dependingJobs=[{"name": "index", "command": "ibexa:commerce:index-econtent-job",
                        "dependingJobs": [{"name": "swap", "command": "silversolutions:econtent-tables-swap-job"}]}],
    )  # fmt: skip

    final = cjobs.wait_final("broken-import")

    status = final["status"]
    assert status["state"] == "Failed"
    assert status["exitCode"] == 2
    assert status["output"] == "SQLSTATE[HY000] [2002] Connection refused\n"
    assert condition(final)["status"] == "False"
    assert status["dependents"] == [
        {"name": "broken-import-index", "state": "Canceled"},
        {"name": "broken-import-index-swap", "state": "Canceled"},
    ]
    assert [o["metadata"]["name"] for o in cjobs.list()] == ["broken-import"]


def test_failed_attempts_are_retried_with_a_growing_backoff(
    cjobs: CommerceJobs, batch: client.BatchV1Api, namespace: str
) -> None:
    cjobs.create(
        "flaky", command="silver:erp:resend-orders", maxRetries=2, retryBackoffSeconds=1,
        podAnnotations=sim(exit_code=1, output="try again\n"),
    )  # fmt: skip

    final = cjobs.wait_final("flaky")

    assert final["status"]["state"] == "Failed"
    assert final["status"]["attempts"] == 3
    jobs = jobs_of(batch, namespace, "flaky")
    assert [j.metadata.name for j in jobs] == ["flaky-1", "flaky-2", "flaky-3"]
    # Each retry waited for its backoff after the previous attempt failed: 1 s, then 2 s.
    for previous, retry, backoff in ((jobs[0], jobs[1], 1), (jobs[1], jobs[2], 2)):
        failed_at = next(c.last_transition_time for c in previous.status.conditions if c.type == "Failed")
        assert (retry.metadata.creation_timestamp - failed_at).total_seconds() >= backoff - 1  # 1 s timestamps


def test_a_retry_that_succeeds_finishes_the_job_and_starts_its_dependents_once(
    cjobs: CommerceJobs, batch: client.BatchV1Api, namespace: str
) -> None:
    annotations = sim(exit_code=1, output="attempt output\n", **{"exit-code-attempt-3": "0"})
    cjobs.create(
        "third-time-lucky", command="silver:import", maxRetries=5, retryBackoffSeconds=1, podAnnotations=annotations,
        dependingJobs=[{"name": "index", "command": "ibexa:commerce:index-econtent-job"}],
    )  # fmt: skip

    final = cjobs.wait_final("third-time-lucky")

    assert (final["status"]["state"], final["status"]["attempts"], final["status"]["exitCode"]) == ("Finished", 3, 0)
    assert len(jobs_of(batch, namespace, "third-time-lucky")) == 3
    assert state(cjobs.wait_final("third-time-lucky-index")) == "Finished"
    assert sorted(o["metadata"]["name"] for o in cjobs.list()) == ["third-time-lucky", "third-time-lucky-index"]


def test_exceeding_max_runtime_terminates_the_job_and_keeps_what_it_printed(
    cjobs: CommerceJobs, core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str
) -> None:
    """The deadline is the pod's: the kubelet (kwok's pod-deadline-exceeded stage) stops the container and the pod
    stays, so its log, the lines printed before the stop, is the job's output. With the deadline on the Job, the Job
    controller deleted the pod at once and the output was empty."""
    printed = "Importing from remote system into tmp tables...\nFetched 250 products in 1 page\n"
    cjobs.create("endless", command="silver:import", maxRuntimeSeconds=2,
                 podAnnotations=sim(duration="10m", output=printed))  # fmt: skip

    final = cjobs.wait_final("endless")

    status = final["status"]
    assert (status["state"], status["reason"], condition(final)["reason"]) == (
        "Terminated", "MaxRuntimeExceeded", "MaxRuntimeExceeded"
    )  # fmt: skip
    assert status["message"] == "exceeded its max runtime of 2s and was stopped"
    assert status["output"] == printed
    assert status.get("exitCode") is None  # the kill's 143 (SIGTERM) is not the command's
    selector = f"batch.kubernetes.io/job-name={status['jobName']}"
    (pod,) = core.list_namespaced_pod(namespace, label_selector=selector).items
    assert (pod.status.phase, pod.status.reason) == ("Failed", "DeadlineExceeded")
    job = batch.read_namespaced_job(status["jobName"], namespace)
    assert job.spec.active_deadline_seconds > 2  # a safety net only, after the pod's deadline


def test_cancel_stops_a_running_job(cjobs: CommerceJobs, batch: client.BatchV1Api, namespace: str) -> None:
    cjobs.create(
        "long-export", command="silver:export", podAnnotations=sim(duration="10m"),
        dependingJobs=[{"name": "upload", "command": "silver:upload"}],
    )  # fmt: skip
    running = cjobs.wait_state("long-export", "Running")
    job_name = running["status"]["jobName"]
    wait_for(batch.list_namespaced_job, job_name, lambda j: bool(j.status.active), namespace=namespace)

    cjobs.patch("long-export", {"cancel": True})

    final = cjobs.wait_final("long-export")
    assert final["status"]["state"] == "Canceled"
    assert final["status"]["dependents"] == [{"name": "long-export-upload", "state": "Canceled"}]
    wait_deleted(batch.list_namespaced_job, job_name, namespace=namespace)


def test_a_deleted_job_leaves_the_commercejob_incomplete(
    cjobs: CommerceJobs, batch: client.BatchV1Api, namespace: str
) -> None:
    cjobs.create("orphaned", command="silver:import", podAnnotations=sim(duration="10m"))
    running = cjobs.wait_state("orphaned", "Running")

    batch.delete_namespaced_job(running["status"]["jobName"], namespace, propagation_policy="Background")

    final = cjobs.wait_final("orphaned")
    assert final["status"]["state"] == "Incomplete"
    assert condition(final)["reason"] == "JobDeleted"


def test_an_image_that_cannot_be_pulled_fails_the_job_with_that_reason(
    cjobs: CommerceJobs, batch: client.BatchV1Api, namespace: str
) -> None:
    """The test operator gives a container 3 s to start (podStartTimeoutSeconds)."""
    cjobs.create(
        "no-image", command="silver:import", image="registry.example.com/shop:missing",
        podAnnotations={"sim.commercejobs.dev/image-pull-error": "manifest for shop:missing not found"},
    )  # fmt: skip
    stuck = cjobs.wait("no-image", lambda o: (o.get("status") or {}).get("reason") == "ImagePullBackOff")
    assert stuck["status"]["state"] == "Running"
    assert "manifest for shop:missing not found" in stuck["status"]["message"]

    final = cjobs.wait_final("no-image")

    assert final["status"]["state"] == "Failed"
    assert "ImagePullBackOff" in final["status"]["message"]
    # The stuck attempt's Job is deleted: no pod keeps pulling for ever.
    wait_deleted(batch.list_namespaced_job, final["status"]["jobName"], namespace=namespace)


AS_ROOT = 'container has runAsNonRoot and image will run as root (pod: "x", container: console)'


def test_a_container_that_can_never_start_fails_at_once_with_the_kubelets_message_and_the_remedy(
    cjobs: CommerceJobs, core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str
) -> None:
    """The kubelet refuses an image that runs as root under runAsNonRoot (CreateContainerConfigError), and does so
    at every try: the attempt fails at once, not after podStartTimeoutSeconds (3 s here). Its deleted pod then
    reports exit code 137 (ContainerStatusUnknown), as a real kubelet's does: that is not the job's result."""
    cjobs.create(
        "as-root", command="silver:import",
        podAnnotations=sim(**{"waiting-reason": "CreateContainerConfigError", "waiting-message": AS_ROOT,
                              "killed-exit-code": "137"}),
    )  # fmt: skip

    final = cjobs.wait_final("as-root")

    status = final["status"]
    assert (status["state"], status["reason"]) == ("Failed", "CreateContainerConfigError")
    assert AS_ROOT in status["message"]
    assert "jobDefaults.podSecurityContext.runAsUser" in status["message"]  # what to do about it
    assert status.get("exitCode") is None
    assert condition(final)["message"] == status["message"]
    # At once: well before the 3 s that a container gets to start (timestamps have whole seconds).
    assert (ts(status["completionTime"]) - ts(status["startTime"])).total_seconds() < 3
    failed = wait_for(core.list_namespaced_event, "", _event_on("as-root", "Failed"), namespace=namespace)
    assert AS_ROOT in failed.message
    assert "runAsUser" in failed.message
    wait_deleted(batch.list_namespaced_job, status["jobName"], namespace=namespace)


def test_a_missing_secret_may_still_appear_so_the_attempt_waits_for_the_start_timeout(cjobs: CommerceJobs) -> None:
    missing = 'secret "shop-database" not found'
    cjobs.create(
        "no-secret", command="silver:import",
        podAnnotations=sim(**{"waiting-reason": "CreateContainerConfigError", "waiting-message": missing,
                              "killed-exit-code": "137"}),
    )  # fmt: skip
    waiting = cjobs.wait("no-secret", lambda o: (o.get("status") or {}).get("reason") == "CreateContainerConfigError")
    assert waiting["status"]["state"] == "Running"
    assert "unless the container starts" in waiting["status"]["message"]

    final = cjobs.wait_final("no-secret")

    status = final["status"]
    assert (status["state"], status["reason"]) == ("Failed", "CreateContainerConfigError")
    assert f"{missing} (not started within 3s)" in status["message"]
    assert status.get("exitCode") is None
    assert (ts(status["completionTime"]) - ts(status["startTime"])).total_seconds() >= 2


def test_an_attempt_stopped_at_its_max_runtime_keeps_that_reason_not_the_exit_code_of_the_kill(
    cjobs: CommerceJobs, core: client.CoreV1Api, namespace: str
) -> None:
    """A PHP process stopped by SIGTERM can exit 0 (seen on a real node): the simulated pod does so when deleted."""
    cjobs.create(
        "overrun", command="silver:import", maxRuntimeSeconds=2, maxRetries=1, retryBackoffSeconds=1,
        podAnnotations=sim(duration="10m", **{"killed-exit-code": "0"}),
    )  # fmt: skip

    final = cjobs.wait_final("overrun")

    status = final["status"]
    assert (status["state"], status["reason"], status["attempts"]) == ("Terminated", "MaxRuntimeExceeded", 2)
    assert status.get("exitCode") is None
    retry = wait_for(core.list_namespaced_event, "", _event_on("overrun", "RetryScheduled"), namespace=namespace)
    assert "attempt 1 failed (its max runtime of 2s was exceeded)" in retry.message


def events_of(core: client.CoreV1Api, namespace: str, name: str, reason: str, quiet_seconds: int = 4) -> list[str]:
    """The messages of the Events with this reason on a CommerceJob: those posted so far, and any that come within
    ``quiet_seconds`` more (a watch: a retry with backoff would post again within them)."""
    listed = core.list_namespaced_event(namespace)
    messages = [e.message for e in listed.items if e.involved_object.name == name and e.reason == reason]
    since = listed.metadata.resource_version
    stream = watch.Watch().stream(core.list_namespaced_event, namespace, resource_version=since,
                                  timeout_seconds=quiet_seconds)  # fmt: skip
    for event in stream:
        obj = event["object"]
        if event["type"] == "ADDED" and obj.involved_object.name == name and obj.reason == reason:
            messages.append(obj.message)
    return messages


def test_a_job_name_taken_by_someone_elses_job_fails_the_job_once_with_the_reason(
    cjobs: CommerceJobs, core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str
) -> None:
    """Issue 13: NameConflict was retried for ever, with a new Event each time."""
    theirs = client.V1Job(
        metadata=client.V1ObjectMeta(name="taken-1"),
        spec=client.V1JobSpec(template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(annotations=sim(duration="10m")),
            spec=client.V1PodSpec(restart_policy="Never", containers=[client.V1Container(name="c", image="x")]),
        )),
    )  # fmt: skip
    batch.create_namespaced_job(namespace, theirs)
    cjobs.create("taken", command="silver:import", dependingJobs=[{"name": "index", "command": "silver:index"}])

    final = cjobs.wait_final("taken")

    status = final["status"]
    assert (status["state"], status["reason"], status["attempts"]) == ("Failed", "NameConflict", 0)
    assert "Job taken-1 exists and belongs to someone else" in status["message"]
    assert status["dependents"] == [{"name": "taken-index", "state": "Canceled"}]
    wait_for(core.list_namespaced_event, "", _event_on("taken", "NameConflict"), namespace=namespace)
    assert len(events_of(core, namespace, "taken", "NameConflict")) == 1
    assert batch.read_namespaced_job("taken-1", namespace).metadata.owner_references is None  # theirs, untouched


def test_a_commercejob_created_again_under_its_old_name_runs_once_the_old_jobs_are_gone(
    cjobs: CommerceJobs, batch: client.BatchV1Api, namespace: str
) -> None:
    """The old CommerceJob's Job `again-1` may still exist when the new one starts: that conflict resolves by itself
    (the garbage collector deletes it), so it is waited out, not made final."""
    cjobs.create("again", command="silver:import", podAnnotations=sim(duration="10m"))
    old = cjobs.wait_state("again", "Running")
    wait_for(batch.list_namespaced_job, "again-1", lambda _: True, namespace=namespace)
    cjobs.delete("again")
    cjobs.create("again", command="silver:import", podAnnotations=sim())

    final = cjobs.wait_final("again")

    assert (final["status"]["state"], final["status"]["attempts"]) == ("Finished", 1)
    job = batch.read_namespaced_job("again-1", namespace)
    assert job.metadata.owner_references[0].uid == final["metadata"]["uid"] != old["metadata"]["uid"]


def test_queue_limit_runs_one_at_a_time_by_priority_then_age(
    cjobs: CommerceJobs, batch: client.BatchV1Api, namespace: str
) -> None:
    """Queue `serial` allows one running job (the test operator's configuration)."""
    cjobs.create("first", command="silver:import", queue="serial", podAnnotations=sim(duration="3s"))
    cjobs.wait_state("first", "Running")
    cjobs.create("low", command="silver:import", queue="serial", podAnnotations=sim(duration="1s"))
    cjobs.create("high", command="silver:import", queue="serial", priority=10, podAnnotations=sim(duration="1s"))
    assert state(cjobs.wait_state("low", "Pending")) == "Pending"
    assert cjobs.get("low")["status"]["reason"] == "Queued"

    for name in ("first", "high", "low"):
        assert state(cjobs.wait_final(name)) == "Finished"

    runs = {}
    for name in ("first", "high", "low"):
        (job,) = jobs_of(batch, namespace, name)
        runs[name] = (job.metadata.creation_timestamp, job.status.completion_time)
    # Never two at once: each started after the one before it completed; and high overtook low.
    assert runs["high"][0] >= runs["first"][1]
    assert runs["low"][0] >= runs["high"][1]


def test_large_output_keeps_a_bounded_tail(cjobs: CommerceJobs) -> None:
    cjobs.create(
        "chatty", command="silver:import",
        podAnnotations=sim(output="product imported\n", output_repeat="4000"),  # 68 000 bytes
    )  # fmt: skip
    final = cjobs.wait_final("chatty")
    status = final["status"]
    assert status["outputTruncated"] is True
    assert status["output"].endswith("product imported\n")
    assert "output truncated" in status["output"].splitlines()[0]
    assert len(status["output"].encode()) < 16384 + 200  # the test operator keeps 16 KiB


SHELL_HOSTILE_PARAMS = [
    "; rm -rf /", "$(whoami)", "`id`", "a b  c", "'single'", '"double"', "back\\slash", "new\nline", "ünïcödé ✓",
    "--option=value with spaces", "*", "$HOME", "| cat /etc/passwd", "&& reboot", "x" * 4096,
]  # fmt: skip


def test_params_reach_the_container_verbatim_as_argv(
    cjobs: CommerceJobs, batch: client.BatchV1Api, namespace: str
) -> None:
    cjobs.create("hostile", command="silver:import", params=SHELL_HOSTILE_PARAMS, podAnnotations=sim())
    cjobs.wait_final("hostile")
    (job,) = jobs_of(batch, namespace, "hostile")
    container = job.spec.template.spec.containers[0]
    assert container.command == ["php", "bin/console", "silver:import", *SHELL_HOSTILE_PARAMS]
    assert container.args is None


def test_job_pods_run_restricted_by_default(cjobs: CommerceJobs, batch: client.BatchV1Api, namespace: str) -> None:
    cjobs.create("restricted", command="silver:import", podAnnotations=sim())
    cjobs.wait_final("restricted")
    (job,) = jobs_of(batch, namespace, "restricted")
    pod = job.spec.template.spec
    assert pod.security_context.run_as_non_root is True
    assert pod.security_context.seccomp_profile.type == "RuntimeDefault"
    assert pod.containers[0].security_context.allow_privilege_escalation is False
    assert pod.containers[0].security_context.capabilities.drop == ["ALL"]
    assert pod.containers[0].image == "registry.example.com/shop:e2e"  # the operator-wide default
    assert pod.containers[0].working_dir == "/var/www/html"


def test_get_commercejobs_prints_the_useful_columns(cluster: Cluster, cjobs: CommerceJobs, namespace: str) -> None:
    cjobs.create("columns", command="silver:import", podAnnotations=sim())
    cjobs.wait_final("columns")
    out = kubectl(cluster, "get", "commercejobs", f"-n={namespace}").stdout
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "COMMAND", "STATE", "EXIT", "ATTEMPTS", "DURATION", "AGE"]
    assert row.split()[:5] == ["columns", "silver:import", "Finished", "0", "1"]
    wide = kubectl(cluster, "get", "cjob", "-o=wide", f"-n={namespace}").stdout.splitlines()[0].split()
    assert {"QUEUE", "PRIORITY", "JOB", "REASON", "LABEL"} <= set(wide)


def cjob_manifest(spec: str, name: str = "bad") -> str:
    return f"apiVersion: commercejobs.dev/v1alpha1\nkind: CommerceJob\nmetadata:\n  name: {name}\nspec:\n{spec}"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("  params: [tmp]\n", "spec.command is required (or spec.templateRef"),
        ("  command: 'silver:import; rm -rf /'\n", "spec.command: Invalid value"),
        ("  command: silver:import\n  maxRetries: 99\n", "spec.maxRetries: Invalid value"),
        ("  command: silver:import\n  queue: Not A Queue\n", "spec.queue: Invalid value"),
        ("  command: silver:import\n  executeAfter: tomorrow\n", "spec.executeAfter: Invalid value"),
        ("  command: silver:import\n  dependingJobs: [{name: a, command: x}, {name: a, command: y}]\n",
         "Duplicate value"),
        ("  command: a\n  dependingJobs: [{name: b, command: b, dependingJobs: [{name: c, command: c, "
         "dependingJobs: [{name: d, command: d, dependingJobs: [{name: e, command: e}]}]}]}]\n",
         "dependingJobs nest at most 3 levels below a job"),
        ("  command: silver:import\n  commnd: typo\n", 'unknown field "spec.commnd"'),
    ],
)  # fmt: skip
def test_kubectl_apply_rejects_bad_specs_with_a_clear_message(
    cluster: Cluster, crds: None, namespace: str, spec: str, message: str
) -> None:
    result = kubectl_apply(cluster, namespace, cjob_manifest(spec))
    assert result.returncode != 0
    assert message in result.stderr


def test_the_spec_is_immutable_but_cancel(cluster: Cluster, crds: None, namespace: str) -> None:
    # No operator here: only the apiserver's rules are under test.
    def apply(spec: str) -> subprocess.CompletedProcess[str]:
        return kubectl_apply(cluster, namespace, cjob_manifest(spec))

    assert apply("  command: silver:import\n  params: [tmp]\n").returncode == 0
    changed = apply("  command: silver:export\n  params: [tmp]\n")
    assert changed.returncode != 0
    assert "spec.command is immutable" in changed.stderr
    assert "spec.params is immutable" in apply("  command: silver:import\n  params: [prod]\n").stderr
    canceled = apply("  command: silver:import\n  params: [tmp]\n  cancel: true\n")
    assert canceled.returncode == 0, canceled.stderr
    assert "cancel cannot be undone" in apply("  command: silver:import\n  params: [tmp]\n  cancel: false\n").stderr


@pytest.mark.parametrize(
    ("field", "before", "after"),
    [
        ("env", "[{name: A, value: '1'}]", "[{name: A, value: '2'}]"),
        ("resources", "{limits: {cpu: '1'}}", "{limits: {cpu: '2'}}"),
        ("volumes", "[{name: cache, emptyDir: {}}]", "[{name: cache, emptyDir: {medium: Memory}}]"),
        ("podSecurityContext", "{runAsUser: 1000}", "{runAsUser: 0}"),
        ("securityContext", "{readOnlyRootFilesystem: true}", "{readOnlyRootFilesystem: false}"),
    ],
)
def test_the_kubernetes_objects_of_the_spec_are_immutable_inside_too(
    cluster: Cluster, crds: None, namespace: str, field: str, before: str, after: str
) -> None:
    """As the README says, the spec cannot change after creation: not even inside env, resources, volumes or the
    security contexts (a change would reach only the attempts started after it)."""

    def apply(value: str) -> subprocess.CompletedProcess[str]:
        return kubectl_apply(cluster, namespace, cjob_manifest(f"  command: silver:import\n  {field}: {value}\n"))

    assert apply(before).returncode == 0
    changed = apply(after)
    assert changed.returncode != 0
    assert f"spec.{field} is immutable: create a new CommerceJob instead" in changed.stderr
    assert apply(before).returncode == 0  # unchanged: fine
