"""Which finished CommerceJobs to delete, as ``jms-job-queue:clean-up`` does (pure functions).

A job in a final state expires ``maxRetention`` after it completed; a Finished one already ``maxRetentionSucceeded``
after (JMS defaults: 7 days and 1 hour). A job and its dependents go together: the tree under a root job (a job that
no other CommerceJob owns) is deleted, through ownerReferences, once every job in it has expired, so a parent never
goes while a dependent of it still runs. A job that a job which is not final names in its ``dependsOn`` is kept too
(with its tree). At most ``perCall`` trees go per round, oldest first.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from commerce_jobs.api_names import COMMERCEJOB
from commerce_jobs.dependencies import waited_for
from commerce_jobs.fields import spec_of, status_of
from commerce_jobs.lifecycle import FINAL_STATES, FINISHED, parse_time

DURATION_PATTERN = (
    r"^\s*[0-9]+\s*(s|sec|secs|second|seconds|m|min|mins|minute|minutes|h|hour|hours|d|day|days|w|week|weeks)\s*$"
)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class DurationError(ValueError):
    pass


@functools.lru_cache(maxsize=256)  # retention plans read every job's spec.retention: few distinct texts
def parse_duration(text: str) -> timedelta:
    """``"1 min"``, ``"7 days"``, ``"1h"``, ``"30s"``: the forms JMS's clean-up command takes, minus PHP's rest."""
    match = re.fullmatch(DURATION_PATTERN, text or "")
    if not match:
        raise DurationError(f"{text!r} is not a duration such as '30s', '1 min', '2 hours' or '7 days'")
    number = int(re.match(r"\s*([0-9]+)", text).group(1))  # type: ignore[union-attr]
    unit = match.group(1)
    seconds = _UNITS["m"] if unit.startswith("mi") or unit == "m" else _UNITS[unit[0]]
    return timedelta(seconds=number * seconds)


@dataclass(frozen=True)
class RetentionPolicy:
    max_retention: timedelta = timedelta(days=7)
    max_retention_succeeded: timedelta = timedelta(hours=1)
    per_call: int = 10

    def for_job(self, spec: dict[str, Any]) -> RetentionPolicy:
        """A job's own retention (spec.retention) wins over the operator's."""
        own = spec.get("retention") or {}
        if not own:
            return self
        return RetentionPolicy(
            parse_duration(own["maxRetention"]) if "maxRetention" in own else self.max_retention,
            parse_duration(own["maxRetentionSucceeded"])
            if "maxRetentionSucceeded" in own
            else self.max_retention_succeeded,
            self.per_call,
        )


def expires_at(cjob: dict[str, Any], policy: RetentionPolicy) -> datetime | None:
    """When a job may be deleted; None while it is not in a final state."""
    status = status_of(cjob)
    if status.get("state") not in FINAL_STATES:
        return None
    closed = parse_time(status.get("completionTime")) or parse_time(cjob["metadata"].get("creationTimestamp"))
    if closed is None:
        return None
    own = policy.for_job(spec_of(cjob))
    keep = own.max_retention
    if status.get("state") == FINISHED:
        keep = min(keep, own.max_retention_succeeded)
    return closed + keep


@dataclass(frozen=True)
class Expired:
    root: dict[str, Any]
    tree_size: int
    expired_at: datetime


def _owner_uid(cjob: dict[str, Any]) -> str | None:
    for ref in cjob["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == COMMERCEJOB:
            return str(ref.get("uid"))
    return None


def plan(
    cjobs: Iterable[dict[str, Any]], policy: RetentionPolicy, now: datetime
) -> tuple[list[Expired], datetime | None]:
    """Every tree that may be deleted now, oldest first (a round takes at most per_call of them), and when the next
    tree expires."""
    jobs = list(cjobs)
    by_uid = {j["metadata"]["uid"]: j for j in jobs}
    kept = waited_for(jobs)
    children: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        owner = _owner_uid(job)
        if owner is not None and owner in by_uid:
            children.setdefault(owner, []).append(job)

    def tree_expiry(job: dict[str, Any]) -> tuple[datetime | None, int]:
        meta = job["metadata"]
        # A job that a live job waits for does not expire yet; the end of that job plans again.
        latest = None if (meta.get("namespace", ""), meta.get("name", "")) in kept else expires_at(job, policy)
        size = 1
        for child in children.get(job["metadata"]["uid"], []):
            child_expiry, child_size = tree_expiry(child)
            size += child_size
            # A tree expires when its last job does; a job that is not final keeps the whole tree.
            latest = None if latest is None or child_expiry is None else max(latest, child_expiry)
        return latest, size

    due: list[Expired] = []
    upcoming: datetime | None = None
    for job in jobs:
        if _owner_uid(job) in by_uid:
            continue  # goes with its root
        expiry, size = tree_expiry(job)
        if expiry is None:
            continue
        if expiry <= now:
            due.append(Expired(job, size, expiry))
        elif upcoming is None or expiry < upcoming:
            upcoming = expiry
    due.sort(key=lambda e: (e.expired_at, e.root["metadata"]["name"]))
    return due, upcoming
