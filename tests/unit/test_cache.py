"""The controller's cache: each entry goes with the object it came from, whatever order the streams' events come in."""

from datetime import UTC, datetime

from commerce_jobs.cache import JobCache
from commerce_jobs.lifecycle import PodProblem

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
EMPTY = {"commercejobs": 0, "attempts": 0, "attempt owners": 0, "job owners": 0, "pod outcomes": 0,
         "pod problems": 0, "adoptions": 0}  # fmt: skip


def cjob(uid: str = "u1") -> dict:
    return {"metadata": {"name": "import", "namespace": "shop", "uid": uid}, "spec": {}, "status": {}}


def job(attempt: int = 1, uid: str = "u1", complete: bool = False) -> dict:
    conditions = [{"type": "Complete", "status": "True"}] if complete else []
    return {
        "metadata": {"name": f"import-{attempt}", "namespace": "shop",
                     "labels": {"commercejobs.dev/attempt": str(attempt)},
                     "ownerReferences": [{"kind": "CommerceJob", "name": "import", "uid": uid}]},
        "status": {"conditions": conditions},
    }  # fmt: skip


def pod(attempt: int = 1, exit_code: int | None = None, deleting: bool = False) -> dict:
    state = {"terminated": {"exitCode": exit_code}} if exit_code is not None else {"waiting": {"reason": "x"}}
    labels = {"commercejobs.dev/attempt": str(attempt), "batch.kubernetes.io/job-name": f"import-{attempt}"}
    meta = {"name": f"import-{attempt}-x", "namespace": "shop", "creationTimestamp": "2026-11-22T12:00:00Z",
            "labels": labels}  # fmt: skip
    if deleting:
        meta["deletionTimestamp"] = "2026-11-22T12:00:01Z"
    return {"metadata": meta, "status": {"phase": "Failed", "containerStatuses": [{"name": "console", "state": state}]}}


def test_a_deleted_commercejob_leaves_nothing_behind_whatever_comes_after_its_deleted_event() -> None:
    """Issue 13: the late Job-deleted event re-created the attempts' entry, a late pod event refilled the outcomes."""
    cache = JobCache()
    cache.put(("shop", "import"), cjob())
    assert cache.observe_job("ADDED", job()) == ("shop", "import")
    cache.observe_pod("MODIFIED", pod(exit_code=0), None)
    cache.drop(("shop", "import"), "u1")  # its DELETED event; the garbage collector deletes its Job and pod after it
    assert cache.observe_job("MODIFIED", job(complete=True)) is None  # nothing to reconcile: it is gone
    cache.observe_pod("MODIFIED", pod(exit_code=137, deleting=True), None)
    cache.observe_job("DELETED", job(complete=True))
    cache.observe_pod("MODIFIED", pod(exit_code=137, deleting=True), None)  # the pod stream lags behind the Jobs'
    cache.observe_pod("DELETED", pod(exit_code=137, deleting=True), None)
    assert cache.sizes() == EMPTY


def test_a_pods_outcome_is_kept_while_its_job_exists() -> None:
    cache = JobCache()
    cache.put(("shop", "import"), cjob())
    cache.observe_job("ADDED", job())
    cache.observe_pod("MODIFIED", pod(exit_code=3), None)
    cache.observe_pod("DELETED", pod(exit_code=3), None)  # e.g. the pod garbage collector
    assert cache.pod_outcomes[("shop", "import-1")].exit_code == 3  # still needed to collect the attempt
    cache.observe_job("DELETED", job())
    assert cache.sizes()["pod outcomes"] == 0


def test_a_commercejob_created_again_under_the_same_name_never_takes_the_old_ones_jobs() -> None:
    cache = JobCache()
    cache.put(("shop", "import"), cjob("old"))
    cache.observe_job("ADDED", job(uid="old", complete=True))
    cache.drop(("shop", "import"), "old")
    cache.put(("shop", "import"), cjob("new"))
    cache.observe_job("MODIFIED", job(uid="old", complete=True))  # the old Job, until the garbage collector comes
    assert cache.attempts_of(cjob("new")) == {}
    cache.observe_job("DELETED", job(uid="old", complete=True))
    assert cache.sizes() == {**EMPTY, "commercejobs": 1}


def test_a_start_problem_keeps_the_time_it_began_while_the_reason_changes() -> None:
    """A kubelet alternates ErrImagePull and ImagePullBackOff: the start timeout runs from the first."""
    cache = JobCache()
    cache.put(("shop", "import"), cjob())
    cache.observe_job("ADDED", job())
    first = PodProblem("ErrImagePull", "m", NOW)
    assert cache.observe_pod("MODIFIED", pod(), first) == ("shop", "import")
    later = PodProblem("ImagePullBackOff", "m", datetime(2026, 11, 22, 12, 1, tzinfo=UTC))
    assert cache.observe_pod("MODIFIED", pod(), later) == ("shop", "import")
    assert cache.pod_problem("shop", "import-1") == PodProblem("ImagePullBackOff", "m", NOW)
    assert cache.observe_pod("MODIFIED", pod(), later) is None  # nothing new
    assert cache.observe_pod("MODIFIED", pod(), None) == ("shop", "import")  # it started after all
    assert cache.pod_problem("shop", "import-1") is None


def test_a_pod_stopped_at_its_deadline_is_told_apart_from_one_that_has_not_ended_yet() -> None:
    cache = JobCache()
    cache.put(("shop", "import"), cjob())
    cache.observe_job("ADDED", job())
    exited = pod(exit_code=0)
    exited["status"]["phase"] = "Running"  # the container exited; the kubelet has not yet written the pod's end
    cache.observe_pod("MODIFIED", exited, None)
    early = cache.pod_outcomes[("shop", "import-1")]
    assert (early.exit_code, early.ended, early.deadline_exceeded) == (0, False, False)
    stopped = pod(exit_code=0)
    stopped["status"].update(reason="DeadlineExceeded", message="Pod was active on the node longer than the "
                             "specified deadline")  # fmt: skip
    cache.observe_pod("MODIFIED", stopped, None)
    final = cache.pod_outcomes[("shop", "import-1")]
    assert (final.exit_code, final.ended, final.deadline_exceeded) == (0, True, True)
