from datetime import UTC, datetime

import pytest

from commerce_jobs.podstart import pod_problem, remedy

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
# The kubelet's own words (realnode.md: seen on the real node of the local control plane).
AS_ROOT = 'container has runAsNonRoot and image will run as root (pod: "import-1-x_shop(uid)", container: console)'
NON_NUMERIC = "container has runAsNonRoot and image has non-numeric user (app), cannot verify user is non-root"


def waiting_pod(reason: str, message: str = "", phase: str = "Pending", deleting: bool = False) -> dict:
    meta = {"name": "import-1-x", "namespace": "shop"}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-22T12:00:00Z"
    status = {"waiting": {"reason": reason, "message": message}}
    return {"metadata": meta, "status": {"phase": phase, "containerStatuses": [{"name": "console", "state": status}]}}


@pytest.mark.parametrize(
    ("reason", "message", "fix"),
    [
        ("CreateContainerConfigError", AS_ROOT, "jobDefaults.podSecurityContext.runAsUser"),
        ("CreateContainerConfigError", NON_NUMERIC, "USER <numeric uid>"),
        ("CreateContainerConfigError", "container's runAsUser breaks non-root policy (pod: x)", "non-root uid"),
        ("InvalidImageName", 'Failed to apply default image tag "Shop:1": invalid reference format', "image"),
        ("ErrImageNeverPull", 'Container image "shop:1" is not present with pull policy of Never', "IfNotPresent"),
    ],
)
def test_refusals_that_cannot_go_away_fail_at_once_with_the_kubelets_message_and_a_remedy(
    reason: str, message: str, fix: str
) -> None:
    problem = pod_problem(waiting_pod(reason, message), NOW)
    assert problem is not None
    assert problem.reason == reason
    assert problem.message == f"container console: {reason}: {message}"
    assert problem.remedy is not None
    assert fix in problem.remedy


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("ImagePullBackOff", 'Back-off pulling image "shop:2"'),
        ("ErrImagePull", "manifest unknown"),
        # A Secret that GitOps has not applied yet: it may appear within the pod-start timeout.
        ("CreateContainerConfigError", 'secret "shop-database" not found'),
        ("CreateContainerError", "context deadline exceeded"),
    ],
)
def test_refusals_that_may_go_away_keep_the_start_timeout(reason: str, message: str) -> None:
    problem = pod_problem(waiting_pod(reason, message), NOW)
    assert problem is not None
    assert problem.remedy is None
    assert remedy(reason, message) is None


def test_only_a_pending_pod_that_is_not_being_deleted_waits_to_start() -> None:
    assert pod_problem(waiting_pod("ContainerCreating"), NOW) is None  # an ordinary start
    assert pod_problem(waiting_pod("CreateContainerConfigError", AS_ROOT, phase="Failed"), NOW) is None
    assert pod_problem(waiting_pod("CreateContainerConfigError", AS_ROOT, deleting=True), NOW) is None
