"""A CommerceCronJob's status, decided apart from the API calls (cronstatus.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from commerce_jobs import cronstatus

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def cron(generation: int, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "lost-orders", "namespace": "shop", "generation": generation}, "status": status}


def applied(ok: bool, reason: str, generation: int) -> dict[str, Any]:
    return cronstatus.ready(ok, reason, "m", NOW, generation)


def test_a_new_or_changed_spec_or_a_missing_cronjob_is_applied_again() -> None:
    assert not cronstatus.in_step(cron(1), has_cronjob=False, not_allowed=False)  # never applied
    scheduled = applied(True, "Scheduled", 1)
    assert cronstatus.in_step(cron(1, **scheduled), has_cronjob=True, not_allowed=False)
    assert not cronstatus.in_step(cron(2, **scheduled), has_cronjob=True, not_allowed=False)  # the spec changed
    assert not cronstatus.in_step(cron(1, **scheduled), has_cronjob=False, not_allowed=False)  # CronJob deleted


def test_a_refused_spec_waits_for_its_next_change_unless_the_allowlist_changed() -> None:
    refused = applied(False, "CommandNotAllowed", 1)
    assert cronstatus.in_step(cron(1, **refused), has_cronjob=False, not_allowed=True)
    assert not cronstatus.in_step(cron(1, **refused), has_cronjob=False, not_allowed=False)  # allowed now


def test_the_ready_condition_keeps_its_transition_time_while_it_says_the_same() -> None:
    before = applied(True, "Scheduled", 1)
    before["conditions"][0]["lastTransitionTime"] = "2025-12-31T00:00:00Z"
    again = cronstatus.keep_transition_time(before, applied(True, "Scheduled", 2))
    assert again["conditions"][0]["lastTransitionTime"] == "2025-12-31T00:00:00Z"
    refused = cronstatus.keep_transition_time(before, applied(False, "Invalid", 2))
    assert refused["conditions"][0]["lastTransitionTime"] != "2025-12-31T00:00:00Z"


def test_the_status_mirrors_the_cronjob_and_the_newest_run() -> None:
    cronjob = {"name": "lost-orders", "status": {"active": [{"name": "x"}], "lastScheduleTime": "2026-01-01T00:00:00Z"}}
    run = {"metadata": {"name": "lost-orders-29000000"}, "status": {"state": "Finished", "completionTime": "t"}}
    assert cronstatus.observed(cronjob, run) == {
        "cronJobName": "lost-orders", "active": 1, "lastScheduleTime": "2026-01-01T00:00:00Z",
        "lastRun": {"name": "lost-orders-29000000", "state": "Finished", "completionTime": "t"},
    }  # fmt: skip
    assert cronstatus.observed(None, {"metadata": {"name": "r"}}) == {"lastRun": {"name": "r", "state": "Pending"}}
