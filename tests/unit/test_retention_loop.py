"""The retention loop plans (walks the whole cache) only when a job's end can make a tree due before the next
expiry that its last plan found."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from commerce_jobs import retention, retention_loop
from commerce_jobs.cache import JobCache
from commerce_jobs.config import OperatorConfig
from commerce_jobs.lifecycle import FINISHED, format_time


def finished(name: str, completed: datetime, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "shop",
            "name": name,
            "uid": f"uid-{name}",
            "creationTimestamp": format_time(completed),
        },
        "spec": {"command": "silver:import", **spec},
        "status": {"state": FINISHED, "completionTime": format_time(completed)},
    }


def test_only_an_end_that_can_be_due_before_the_next_expiry_plans_again(monkeypatch: pytest.MonkeyPatch) -> None:
    asyncio.run(only_an_end_that_can_be_due_before_the_next_expiry_plans_again(monkeypatch))


async def only_an_end_that_can_be_due_before_the_next_expiry_plans_again(monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.now(UTC)
    cache = JobCache()
    # Finished jobs are kept 1 hour: this one expires in 10 minutes, the next expiry of the first plan.
    oldest = finished("oldest", now - timedelta(minutes=50))
    cache.put(("shop", "oldest"), oldest)
    plans: asyncio.Queue[datetime | None] = asyncio.Queue()
    real_plan = retention.plan

    def counted_plan(*args: Any) -> tuple[list[retention.Expired], datetime | None]:
        due, upcoming = real_plan(*args)
        plans.put_nowait(upcoming)
        return due, upcoming

    monkeypatch.setattr(retention_loop.retention, "plan", counted_plan)
    loop = retention_loop.RetentionLoop(api=None, config=OperatorConfig(), cache=cache)  # type: ignore[arg-type]
    loop.prepare()
    running = asyncio.create_task(loop.run())
    try:
        first = await asyncio.wait_for(plans.get(), 5)
        assert first is not None
        assert abs(first - (now + timedelta(minutes=10))) < timedelta(seconds=2)

        # Steady work: a job that ends now is kept an hour, past the next expiry: no walk of the cache for it.
        assert loop.job_ended(finished("steady", now)) is False
        # Its own retention of 1 second makes it due before that: plan again.
        short = finished("short", now, retention={"maxRetentionSucceeded": "1s"})
        assert loop.job_ended(short) is True
        await asyncio.wait_for(plans.get(), 5)
        # A job that waited for others: they are no longer kept, and may be due at once.
        assert loop.job_ended(finished("waiter", now, dependsOn=["oldest"])) is True
        await asyncio.wait_for(plans.get(), 5)
    finally:
        running.cancel()


def test_an_end_before_the_loop_runs_plans_nothing() -> None:
    loop = retention_loop.RetentionLoop(api=None, config=OperatorConfig(), cache=JobCache())  # type: ignore[arg-type]
    assert loop.job_ended(finished("early", datetime.now(UTC))) is False


def test_a_slow_plan_is_followed_by_ten_times_as_long_without_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planning walks the whole cache: at most a tenth of the event loop's time goes to it, however often jobs end."""
    clock = [1000.0]
    pauses: list[float] = []
    real_sleep = asyncio.sleep
    real_plan = retention.plan

    def slow_plan(*args: Any) -> tuple[list[retention.Expired], datetime | None]:
        clock[0] += 0.5  # this plan took half a second
        return real_plan(*args)

    async def recorded_sleep(seconds: float) -> None:
        pauses.append(seconds)
        await real_sleep(0)

    async def scenario() -> None:
        loop = retention_loop.RetentionLoop(api=None, config=OperatorConfig(), cache=JobCache())  # type: ignore[arg-type]
        loop.prepare()
        running = asyncio.create_task(loop.run())
        try:
            while not pauses:
                loop.job_ended(finished("busy", datetime.now(UTC)))  # nothing planned yet: every end wakes it
                await real_sleep(0)
        finally:
            running.cancel()

    monkeypatch.setattr(retention_loop.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(retention_loop.retention, "plan", slow_plan)
    monkeypatch.setattr(retention_loop.asyncio, "sleep", recorded_sleep)
    asyncio.run(scenario())
    assert pauses[0] > 4.9
