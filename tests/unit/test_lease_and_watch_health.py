"""The pure parts of leader election and of the watch-health signal behind the liveness probe."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from commerce_jobs.leader import LeaseTimings, may_take
from commerce_jobs.watchhealth import WatchHealth, is_list_or_watch


def test_a_candidate_takes_a_free_or_expired_lease_only() -> None:
    assert may_take(None, "b", 0, 15)
    assert may_take("", "b", 0, 15)  # released at a clean stop
    assert may_take("b", "b", 0, 15)  # its own: a renewal
    assert not may_take("a", "b", 14.9, 15)
    assert may_take("a", "b", 15, 15)


@pytest.mark.parametrize(("duration", "deadline", "period"), [(15, 15, 2), (15, 10, 10), (15, 10, 0), (5, 10, 2)])
def test_lease_timings_must_let_the_holder_stop_before_a_standby_takes_over(
    duration: float, deadline: float, period: float
) -> None:
    with pytest.raises(ValueError, match="retry period < renew deadline < duration"):
        LeaseTimings(duration, deadline, period)


def test_only_list_and_watch_requests_count() -> None:
    assert is_list_or_watch("GET", MultiDict(watch="true", resourceVersion="5"))
    assert is_list_or_watch("get", MultiDict(limit="500"))
    assert not is_list_or_watch("GET", MultiDict())  # discovery
    assert not is_list_or_watch("POST", MultiDict(limit="1"))


def test_a_failing_watch_fails_the_probe_after_the_grace_and_a_success_heals_it() -> None:
    health = WatchHealth(grace=30, client_timeout=330)
    health.succeeded("/apis/batch/v1/jobs", now=0)
    health.failed("/apis/batch/v1/jobs", now=100, error="ClientConnectorError: refused")
    health.failed("/apis/batch/v1/jobs", now=110, error="ClientConnectorError: refused")
    assert health.problems(now=129) == []  # a short outage (an apiserver restart) is no reason to restart
    assert health.problems(now=130) == ["/apis/batch/v1/jobs: failing for 30s: ClientConnectorError: refused"]
    health.succeeded("/apis/batch/v1/jobs", now=131)
    assert health.problems(now=131) == []
    assert health.summary(now=131) == {"streams": 1, "failing": 0, "oldestConnectionSeconds": 0}


def test_a_watch_not_reopened_for_longer_than_the_client_timeout_hangs() -> None:
    health = WatchHealth(grace=30, client_timeout=330)
    health.succeeded("/api/v1/pods", now=0)
    assert health.problems(now=359) == []
    assert health.problems(now=360) == ["/api/v1/pods: no watch (re)connected for 360s"]
