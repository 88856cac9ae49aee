"""A CommerceCronJob's status (pure): whether its CronJob must be applied again, its Ready condition, and what it
mirrors of its CronJob and of its last run. The cron controller (cron_controller.py) makes the API calls."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from commerce_jobs import lifecycle
from commerce_jobs.fields import state_of, status_of
from commerce_jobs.jobbuild import CommandNotAllowed


def ready(ok: bool, reason: str, message: str, now: datetime, generation: int | None) -> dict[str, Any]:
    """The status fields that say how applying the CronJob went."""
    condition = lifecycle.condition("True" if ok else "False", reason, message, now, generation, kind="Ready")
    return {"conditions": [condition], "observedGeneration": generation}


def _ready_condition(status: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)


def in_step(cron: dict[str, Any], has_cronjob: bool, not_allowed: bool) -> bool:
    """Whether the CronJob is as the CommerceCronJob wants it. It is applied again when the spec changed, or when
    the CronJob went missing (a spec that the apiserver refused waits for the next change of the spec), or when the
    allowlist's verdict on the command changed (a restart with a new configuration)."""
    status = status_of(cron)
    ready_now = _ready_condition(status)
    return (
        status.get("observedGeneration") == cron["metadata"].get("generation")
        and ready_now is not None
        and (ready_now.get("status") == "False" or has_cronjob)
        and (ready_now.get("reason") == CommandNotAllowed.reason) == not_allowed
    )


def keep_transition_time(status: dict[str, Any], applied: dict[str, Any]) -> dict[str, Any]:
    """``applied`` (from ready()), with the Ready condition's lastTransitionTime kept when nothing about it changed."""
    before, fresh = _ready_condition(status), applied["conditions"][0]
    if before and all(before.get(k) == fresh[k] for k in ("status", "reason", "message")):
        fresh["lastTransitionTime"] = before.get("lastTransitionTime", fresh["lastTransitionTime"])
    return applied


def observed(cronjob: dict[str, Any] | None, last_run: dict[str, Any] | None) -> dict[str, Any]:
    """What the status mirrors of the CronJob (``{"name", "status"}``) and of the newest run."""
    fields: dict[str, Any] = {}
    if cronjob is not None:
        cj_status = cronjob["status"]
        fields["cronJobName"] = cronjob["name"]
        fields["active"] = len(cj_status.get("active") or [])
        for field in ("lastScheduleTime", "lastSuccessfulTime"):
            if cj_status.get(field):
                fields[field] = cj_status[field]
    if last_run is not None:
        fields["lastRun"] = {"name": last_run["metadata"]["name"], "state": state_of(last_run)}
        completed = status_of(last_run).get("completionTime")
        if completed:
            fields["lastRun"]["completionTime"] = completed
    return fields
