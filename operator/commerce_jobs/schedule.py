"""When a crontab task runs: the times of a CronJob schedule (cron syntax or a macro), in its time zone (pure).

Used for the console's "next run" and for the metric of schedules missed since a task's last success. cronsim
evaluates the five fields as cron does (a restricted day of month and day of week: either matches); Kubernetes'
macros are expanded here, since cronsim knows none of them.
"""

from __future__ import annotations

import bisect
import functools
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class ScheduleError(ValueError):
    """A schedule that cannot be evaluated (Kubernetes refuses it too; the task's Ready condition says why)."""


def _zone(time_zone: str | None) -> tzinfo:
    # Without timeZone, a CronJob follows the controller manager's zone: UTC in every cluster this project targets.
    if not time_zone:
        return UTC
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ScheduleError(f"unknown time zone {time_zone!r}") from e


def fire_times(schedule: str, time_zone: str | None, after: datetime) -> Iterator[datetime]:
    """The schedule's times strictly after ``after`` (an aware datetime), in UTC, for ever."""
    expression = MACROS.get(schedule.strip(), schedule)
    try:
        times = CronSim(expression, after.astimezone(_zone(time_zone)))
    except CronSimError as e:
        raise ScheduleError(f"{schedule!r}: {e}") from e
    for when in times:
        yield when.astimezone(UTC)


# Both are asked at every scrape for every task, and cron steps are not cheap (50 tasks: ~60 ms a scrape uncached):
# the answers are kept, keyed by what they depend on. A schedule has minutes as its resolution, so the next run after
# the current minute is the next run after now.
@functools.lru_cache(maxsize=1024)
def _next_after_minute(schedule: str, time_zone: str | None, minute: datetime) -> datetime | None:
    return next(fire_times(schedule, time_zone, minute), None)


@functools.lru_cache(maxsize=1024)
def _fires_after(schedule: str, time_zone: str | None, since: datetime, cap: int) -> tuple[datetime, ...]:
    return tuple(itertools.islice(fire_times(schedule, time_zone, since), cap))


def next_run(schedule: str, time_zone: str | None, now: datetime) -> datetime | None:
    """The next time the task runs; None when the schedule cannot be evaluated."""
    try:
        return _next_after_minute(schedule, time_zone, now.replace(second=0, microsecond=0))
    except ScheduleError:
        return None


def missed_since(schedule: str, time_zone: str | None, since: datetime, now: datetime, cap: int = 100) -> int:
    """How many scheduled times passed after ``since`` up to ``now``, at most ``cap`` (a minutely task that failed for
    a week would otherwise cost 10,000 steps)."""
    return bisect.bisect_right(_fires_after(schedule, time_zone, since, cap), now)
