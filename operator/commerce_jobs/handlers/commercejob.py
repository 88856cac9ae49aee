"""Watch handlers: each event only updates the controller's cache and queues the CommerceJob it concerns.

They are coroutines on purpose: kopf runs plain functions in a thread pool, and the caches are only ever touched
from the event loop's thread (the workers read them there, between their awaits)."""

from __future__ import annotations

from typing import Any

import kopf

from commerce_jobs.api_names import COMMERCECRONJOBS, COMMERCEJOBS, GROUP, MANAGED_BY, VERSION
from commerce_jobs.controller import CommerceJobController
from commerce_jobs.cron_controller import CronController


@kopf.on.event(GROUP, VERSION, COMMERCEJOBS)
async def commercejob_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    controller: CommerceJobController = memo.controller
    controller.observe_commercejob(type, dict(body))


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED_BY)
async def job_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    controller: CommerceJobController = memo.controller
    controller.observe_job(type, dict(body))


@kopf.on.event("", "v1", "pods", labels=MANAGED_BY)
async def pod_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    controller: CommerceJobController = memo.controller
    controller.observe_pod(type, dict(body))


@kopf.on.event(GROUP, VERSION, COMMERCECRONJOBS)
async def commercecronjob_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    crons: CronController = memo.crons
    crons.observe_cron(type, dict(body))


@kopf.on.event("batch", "v1", "cronjobs", labels=MANAGED_BY)
async def cronjob_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    crons: CronController = memo.crons
    crons.observe_cronjob(type, dict(body))
