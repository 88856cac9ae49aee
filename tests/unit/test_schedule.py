"""The times of a crontab task's schedule: next run and schedules missed since the last success."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from commerce_jobs.schedule import ScheduleError, fire_times, missed_since, next_run

T0 = datetime(2026, 3, 28, 23, 2, tzinfo=UTC)  # a Saturday, the night before Europe's summer time


def test_next_run_of_a_five_minute_task() -> None:
    assert next_run("*/5 * * * *", None, T0) == datetime(2026, 3, 28, 23, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("macro", "expected"),
    [("@hourly", datetime(2026, 3, 29, 0, 0, tzinfo=UTC)), ("@daily", datetime(2026, 3, 29, tzinfo=UTC)),
     ("@weekly", datetime(2026, 3, 29, tzinfo=UTC)), ("@monthly", datetime(2026, 4, 1, tzinfo=UTC)),
     ("@yearly", datetime(2027, 1, 1, tzinfo=UTC))],
)  # fmt: skip
def test_kubernetes_macros(macro: str, expected: datetime) -> None:
    assert next_run(macro, None, T0) == expected


def test_a_time_zone_moves_the_runs_and_follows_summer_time() -> None:
    runs = fire_times("30 2 * * *", "Europe/Berlin", T0)
    # 02:30 does not exist in Berlin on 29 March 2026 (clocks jump from 2:00 to 3:00): cron runs it at once, 01:00 UTC.
    first, second = next(runs), next(runs)
    assert second == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)  # 02:30 summer time is 00:30 UTC
    assert first < second


def test_missed_schedules_count_the_times_between_the_last_success_and_now() -> None:
    assert missed_since("*/5 * * * *", None, T0, T0 + timedelta(minutes=31)) == 6
    assert missed_since("*/5 * * * *", None, T0, T0) == 0
    assert missed_since("* * * * *", None, T0, T0 + timedelta(days=7)) == 100  # capped


@pytest.mark.parametrize(("schedule", "zone"), [("61 * * * *", None), ("@reboot", None), ("* * * * *", "Mars/Base")])
def test_a_schedule_that_kubernetes_refuses_is_an_error_or_has_no_next_run(schedule: str, zone: str | None) -> None:
    with pytest.raises(ScheduleError):
        next(fire_times(schedule, zone, T0))
    assert next_run(schedule, zone, T0) is None
