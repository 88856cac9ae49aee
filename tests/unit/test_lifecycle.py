from datetime import UTC, datetime, timedelta

from commerce_jobs import lifecycle
from commerce_jobs.lifecycle import AttemptResult, JobView, decide

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


def cjob(spec: dict | None = None, **status: object) -> dict:
    return {
        "metadata": {"name": "import", "namespace": "shop", "uid": "u1", "generation": 1},
        "spec": {"command": "silver:import", **(spec or {})},
        "status": dict(status),
    }


def test_a_new_job_starts_its_first_attempt_when_admitted() -> None:
    d = decide(cjob(), {}, NOW, admitted=True)
    assert d.create_attempt == 1
    assert d.status["state"] == "Running"
    assert d.status["attempts"] == 1
    assert d.status["startTime"] == "2026-11-22T12:00:00Z"


def test_a_new_job_waits_in_its_queue_when_not_admitted_and_says_so_once() -> None:
    d = decide(cjob({"queue": "imports"}), {}, NOW, admitted=False)
    assert d.create_attempt is None
    assert (d.status["state"], d.status["reason"]) == ("Pending", "Queued")
    again = decide(cjob({"queue": "imports"}, state="Pending", reason="Queued"), {}, NOW, admitted=False)
    assert again.status is None  # no write when nothing changed


def test_execute_after_delays_the_start_and_wakes_up_on_time() -> None:
    later = NOW + timedelta(minutes=5)
    d = decide(cjob({"executeAfter": "2026-11-22T12:05:00Z"}), {}, NOW, admitted=True)
    assert d.create_attempt is None
    assert d.status["reason"] == "Scheduled"
    assert d.requeue_after == 300
    assert decide(cjob({"executeAfter": "2026-11-22T12:05:00Z"}), {}, later, admitted=True).create_attempt == 1


def test_a_running_attempt_needs_nothing() -> None:
    running = cjob(state="Running", attempts=1, jobName="import-1")
    assert decide(running, {1: JobView("import-1", 1)}, NOW, admitted=True) == lifecycle.Decision()


def test_an_attempt_missing_from_the_cache_is_verified_not_assumed_gone() -> None:
    d = decide(cjob(state="Running", attempts=1, jobName="import-1"), {}, NOW, admitted=True)
    assert d.verify_attempt == 1
    assert d.status is None


def test_a_completed_attempt_finishes_the_job() -> None:
    done = JobView("import-1", 1, complete=True, finished_at=NOW)
    d = decide(cjob(state="Running", attempts=1), {1: done}, NOW, admitted=True)
    assert (d.finish, d.collect) == ("Finished", done)


def test_a_failed_attempt_with_retries_left_backs_off_then_retries() -> None:
    failed = JobView("import-1", 1, failed=True, failure_reason="BackoffLimitExceeded", finished_at=NOW)
    job = cjob(
        {"maxRetries": 2, "retryBackoffSeconds": 10}, state="Running", attempts=1, startTime="2026-11-22T11:59:00Z"
    )
    d = decide(job, {1: failed}, NOW + timedelta(seconds=3), admitted=True)
    assert d.retry_at == NOW + timedelta(seconds=10)
    assert d.requeue_after == 7
    assert d.collect == failed
    recorded = cjob(
        {"maxRetries": 2, "retryBackoffSeconds": 10},
        state="Running",
        attempts=1,
        reason="RetryBackoff",
        nextAttemptTime="2026-11-22T12:00:10Z",
    )
    assert decide(recorded, {1: failed}, NOW + timedelta(seconds=3), admitted=True).collect is None
    retry = decide(job, {1: failed}, NOW + timedelta(seconds=10), admitted=True)
    assert retry.create_attempt == 2
    assert "startTime" not in retry.status  # the job's start is its first attempt's


def test_backoff_doubles_per_attempt_and_is_capped() -> None:
    spec = {"retryBackoffSeconds": 10}
    assert [lifecycle.retry_backoff(spec, n).total_seconds() for n in (1, 2, 3)] == [10, 20, 40]
    assert lifecycle.retry_backoff({"retryBackoffSeconds": 3600}, 10) == lifecycle.MAX_RETRY_BACKOFF


def test_the_last_failed_attempt_fails_the_job_and_cancels_dependents() -> None:
    failed = JobView("import-3", 3, failed=True, failure_reason="BackoffLimitExceeded", finished_at=NOW)
    d = decide(cjob({"maxRetries": 2}, state="Running", attempts=3), {3: failed}, NOW, admitted=True)
    assert (d.finish, d.cancel_dependents) == ("Failed", True)


def test_a_deadline_exceeded_attempt_terminates_the_job() -> None:
    failed = JobView("import-1", 1, failed=True, failure_reason="DeadlineExceeded", finished_at=NOW)
    d = decide(cjob({"maxRuntimeSeconds": 5}, state="Running", attempts=1), {1: failed}, NOW, admitted=True)
    assert d.finish == "Terminated"


def test_cancel_deletes_the_live_job_and_is_final() -> None:
    live = JobView("import-1", 1)
    d = decide(cjob({"cancel": True}, state="Running", attempts=1, startTime="2026-11-22T11:59:00Z"), {1: live}, NOW,
               admitted=True)  # fmt: skip
    assert d.delete_jobs == ["import-1"]
    assert d.status["state"] == "Canceled"
    assert d.status["duration"] == "1m0s"
    assert d.cancel_dependents


def test_final_states_are_final() -> None:
    for final in lifecycle.FINAL_STATES:
        assert decide(cjob({"cancel": True}, state=final, attempts=1), {}, NOW, admitted=True) == lifecycle.Decision()


def test_a_vanished_job_is_incomplete_or_retried() -> None:
    assert lifecycle.vanished(cjob(state="Running", attempts=1), 1, NOW).finish == "Incomplete"
    retried = lifecycle.vanished(cjob({"maxRetries": 1, "retryBackoffSeconds": 1}, state="Running", attempts=1), 1, NOW)
    assert retried.retry_at == NOW + timedelta(seconds=1)


def test_final_status_carries_exit_code_output_duration_and_condition() -> None:
    job = cjob(state="Running", attempts=2, startTime="2026-11-22T11:58:30Z")
    attempt = JobView("import-2", 2, failed=True, failure_reason="BackoffLimitExceeded", finished_at=NOW)
    status = lifecycle.final_status(job, "Failed", attempt, AttemptResult(3, "boom\n", False), NOW)
    assert status["exitCode"] == 3
    assert status["output"] == "boom\n"
    assert status["duration"] == "1m30s"
    assert status["message"] == "silver:import failed with exit code 3 after 2 attempts"
    (cond,) = status["conditions"]
    assert (cond["type"], cond["status"], cond["reason"], cond["observedGeneration"]) == (
        "Succeeded", "False", "Failed", 1
    )  # fmt: skip


def test_a_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    earlier = "2026-11-22T11:00:00Z"
    job = cjob(state="Pending", reason="Scheduled",
               conditions=[{"type": "Succeeded", "status": "Unknown", "lastTransitionTime": earlier}])  # fmt: skip
    d = decide(job, {}, NOW, admitted=False)
    assert d.status["conditions"][0]["lastTransitionTime"] == earlier


AS_ROOT = "container console: CreateContainerConfigError: container has runAsNonRoot and image will run as root"


def test_a_container_that_can_never_start_fails_its_attempt_at_once_with_the_message_and_remedy() -> None:
    problem = lifecycle.PodProblem("CreateContainerConfigError", AS_ROOT, NOW, remedy="Set runAsUser.")
    running = cjob(state="Running", attempts=1, jobName="import-1", startTime="2026-11-22T11:59:59Z")
    d = decide(running, {1: JobView("import-1", 1)}, NOW, admitted=True, problem=problem)
    assert (d.finish, d.delete_jobs) == ("Failed", ["import-1"])
    # Its pod, deleted, reports exit code 137 (ContainerStatusUnknown): the kill's, not the job's.
    status = lifecycle.final_status(running, d.finish, d.collect, AttemptResult(137, "", False), NOW)
    assert status["message"] == f"silver:import failed: {AS_ROOT}. Set runAsUser."
    assert status["exitCode"] is None
    assert status["reason"] == status["conditions"][0]["reason"] == "CreateContainerConfigError"


def test_a_container_that_may_still_start_gets_the_start_timeout() -> None:
    problem = lifecycle.PodProblem("ImagePullBackOff", "container console: ImagePullBackOff: not found", NOW)
    running = cjob(state="Running", attempts=1, jobName="import-1")
    waiting = decide(running, {1: JobView("import-1", 1)}, NOW, admitted=True, problem=problem,
                     start_timeout=timedelta(seconds=30))  # fmt: skip
    assert waiting.finish is None
    assert waiting.requeue_after == 30
    assert waiting.status["reason"] == "ImagePullBackOff"
    late = NOW + timedelta(seconds=30)
    d = decide(running, {1: JobView("import-1", 1)}, late, admitted=True, problem=problem,
               start_timeout=timedelta(seconds=30))  # fmt: skip
    assert (d.finish, d.delete_jobs) == ("Failed", ["import-1"])
    status = lifecycle.final_status(running, d.finish, d.collect, AttemptResult(137, "", False), late)
    assert status["message"] == (
        "silver:import failed: container console: ImagePullBackOff: not found (not started within 30s)"
    )
    assert status["exitCode"] is None


def test_a_stopped_attempt_with_retries_left_says_why_it_stopped() -> None:
    problem = lifecycle.PodProblem("InvalidImageName", "container console: InvalidImageName: bad", NOW, "Fix it.")
    running = cjob({"maxRetries": 1, "retryBackoffSeconds": 5}, state="Running", attempts=1, jobName="import-1")
    d = decide(running, {1: JobView("import-1", 1)}, NOW, admitted=True, problem=problem)
    assert d.retry_at == NOW + timedelta(seconds=5)
    assert d.delete_jobs == ["import-1"]
    status = lifecycle.retry_status(running, d.collect, AttemptResult(137, "", False), d.retry_at, NOW)
    assert status["message"].startswith("attempt 1 failed (container console: InvalidImageName: bad. Fix it.)")
    assert status["exitCode"] is None


def test_an_attempt_past_its_max_runtime_keeps_that_reason_whatever_its_exit_code() -> None:
    """A PHP process stopped by SIGTERM can exit 0 (realnode.md); the kubelet's kill gives 137."""
    failed = JobView("import-1", 1, failed=True, failure_reason="DeadlineExceeded", finished_at=NOW)
    job = cjob({"maxRuntimeSeconds": 5}, state="Running", attempts=1)
    for code in (0, 137, 143):
        status = lifecycle.final_status(job, "Terminated", failed, AttemptResult(code, "half done\n", False), NOW)
        assert (status["state"], status["reason"], status["exitCode"]) == ("Terminated", "MaxRuntimeExceeded", None)
        assert status["output"] == "half done\n"  # what it printed before it was stopped is kept
    retried = cjob({"maxRuntimeSeconds": 5, "maxRetries": 1}, state="Running", attempts=1)
    status = lifecycle.retry_status(retried, failed, AttemptResult(0, "", False), NOW, NOW)
    assert status["message"].startswith("attempt 1 failed (its max runtime of 5s was exceeded)")
    assert status["exitCode"] is None


def test_a_pod_stopped_at_its_deadline_terminates_the_job_and_keeps_what_it_printed() -> None:
    """maxRuntimeSeconds is the pod's activeDeadlineSeconds: the kubelet stops the container and the pod stays, Failed
    with reason DeadlineExceeded, its log readable; its Job fails as for any failed pod (BackoffLimitExceeded)."""
    failed = JobView("import-1", 1, failed=True, failure_reason="BackoffLimitExceeded", finished_at=NOW)
    printed = "Progress: 1/313 seconds\nReceived SIGTERM after 4.1 seconds: stopping cleanly\n"
    stopped = AttemptResult(0, printed, False, "DeadlineExceeded: Pod was active on the node longer than the "
                            "specified deadline", deadline_exceeded=True)  # fmt: skip
    running = cjob({"maxRuntimeSeconds": 4}, state="Running", attempts=1, startTime="2026-11-22T11:59:55Z")
    d = decide(running, {1: failed}, NOW, admitted=True)
    assert (d.collect, d.cancel_dependents) == (failed, True)

    status = lifecycle.final_status(running, d.finish, d.collect, stopped, NOW)

    assert (status["state"], status["reason"], status["exitCode"]) == ("Terminated", "MaxRuntimeExceeded", None)
    assert status["conditions"][0]["reason"] == "MaxRuntimeExceeded"
    assert status["message"] == "exceeded its max runtime of 4s and was stopped"
    assert status["output"] == printed
    # A pod that failed on its own, in a Job that failed the same way, is not taken for one stopped at its deadline.
    own = lifecycle.final_status(running, d.finish, d.collect, AttemptResult(3, "boom\n", False), NOW)
    assert (own["state"], own["exitCode"]) == ("Failed", 3)


def test_a_pod_stopped_at_its_deadline_with_retries_left_says_so_and_keeps_its_output() -> None:
    failed = JobView("import-1", 1, failed=True, failure_reason="BackoffLimitExceeded", finished_at=NOW)
    stopped = AttemptResult(143, "Progress: 1/9 seconds\n", False, "DeadlineExceeded", deadline_exceeded=True)
    running = cjob({"maxRuntimeSeconds": 4, "maxRetries": 1, "retryBackoffSeconds": 5}, state="Running", attempts=1)
    d = decide(running, {1: failed}, NOW, admitted=True)
    assert d.retry_at == NOW + timedelta(seconds=5)

    status = lifecycle.retry_status(running, d.collect, stopped, d.retry_at, NOW)

    assert status["message"].startswith("attempt 1 failed (its max runtime of 4s was exceeded)")
    assert (status["exitCode"], status["output"]) == (None, "Progress: 1/9 seconds\n")
