"""Queue admission end to end: queue `serial` of the test operator allows one running job (tests/e2e/conftest.py).

Only a job that could start now competes for a slot, and every way a slot frees up gives it to the next job."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.cjobs import CommerceJobs, sim, state

pytestmark = pytest.mark.usefixtures("simulated_cluster")


def in_an_hour() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def reason(obj: dict) -> str | None:
    return (obj.get("status") or {}).get("reason")


def test_a_job_that_waits_for_its_time_does_not_hold_back_a_job_that_is_ready(cjobs: CommerceJobs) -> None:
    """Issue 13: job A (priority 10, executeAfter an hour away) took the only slot, and job B (ready now) never ran."""
    cjobs.create("tonight", command="silver:import", queue="serial", priority=10, executeAfter=in_an_hour())
    assert reason(cjobs.wait_state("tonight", "Pending")) in ("Scheduled", None)
    cjobs.create("now", command="silver:import", queue="serial", podAnnotations=sim())

    assert state(cjobs.wait_final("now")) == "Finished"
    tonight = cjobs.wait("tonight", lambda o: reason(o) == "Scheduled")
    assert state(tonight) == "Pending"


def test_a_job_whose_template_is_missing_does_not_hold_back_the_queue(cjobs: CommerceJobs) -> None:
    cjobs.create("from-missing", templateRef={"name": "not-yet-applied"}, queue="serial", priority=10)
    cjobs.wait("from-missing", lambda o: reason(o) == "TemplateNotFound")
    cjobs.create("plain", command="silver:import", queue="serial", podAnnotations=sim())

    assert state(cjobs.wait_final("plain")) == "Finished"
    assert state(cjobs.get("from-missing")) == "Pending"


def test_deleting_or_canceling_the_running_job_gives_its_slot_to_the_next(cjobs: CommerceJobs) -> None:
    """Issue 13: nothing woke the queue when a running job was deleted."""
    for name in ("blocker", "second"):
        cjobs.create(name, command="silver:export", queue="serial", podAnnotations=sim(duration="10m"))
    cjobs.wait_state("blocker", "Running")
    cjobs.create("third", command="silver:import", queue="serial", podAnnotations=sim())
    assert reason(cjobs.wait("second", lambda o: reason(o) == "Queued")) == "Queued"

    cjobs.delete("blocker")
    cjobs.wait_state("second", "Running")  # the slot of a deleted job
    assert reason(cjobs.get("third")) == "Queued"
    cjobs.patch("second", {"cancel": True})

    assert state(cjobs.wait_final("third")) == "Finished"  # the slot of a canceled job
    assert state(cjobs.get("second")) == "Canceled"
