"""The CommerceCronJob controller: keeps a batch/v1 CronJob in step with each CommerceCronJob and mirrors the
CronJob's and the runs' state into the CommerceCronJob's status. The runs themselves are adopted by the
CommerceJob controller (see cronbuild)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from commerce_jobs import cronstatus
from commerce_jobs.api_names import COMMERCECRONJOB, CRON_LABEL
from commerce_jobs.cache import CachedJobs, Key
from commerce_jobs.config import OperatorConfig
from commerce_jobs.controller import CommerceJobController
from commerce_jobs.cronbuild import cronjob_manifest, cronjob_name
from commerce_jobs.fields import spec_of, status_of
from commerce_jobs.jobbuild import CommandNotAllowed, InvalidSpec
from commerce_jobs.jobcalls import JobCalls
from commerce_jobs.kubeapi import KubeApi, api_message
from commerce_jobs.workqueue import WorkQueue, serve

log = logging.getLogger("commerce_jobs.cron")


class CronController:
    def __init__(self, api: KubeApi, config: OperatorConfig, jobs: CachedJobs, workers: int = 2) -> None:
        """``jobs``: the CommerceJob controller's cache, read for the runs of each CommerceCronJob."""
        self.api = api
        self.config = config
        self.jobs = jobs
        self.workers = workers
        self.crons: dict[Key, dict[str, Any]] = {}
        self.cronjobs: dict[Key, dict[str, Any]] = {}  # the CronJobs' status, by their CommerceCronJob's key
        self.queue: WorkQueue[Key] = WorkQueue()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The workers: each runs for ever, so one that is done has died."""
        return list(self._tasks)

    # -- fed by the watch handlers --------------------------------------------------------------------------------
    def observe_cron(self, event_type: str | None, body: dict[str, Any]) -> None:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if event_type == "DELETED":
            self.crons.pop(key, None)
            self.cronjobs.pop(key, None)
            self.queue.discard(key)
            return
        self.crons[key] = {"metadata": dict(body["metadata"]), "spec": dict(spec_of(body)),
                           "status": dict(status_of(body))}  # fmt: skip
        self.queue.add(key)

    def observe_cronjob(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        owner = next((r["name"] for r in meta.get("ownerReferences") or [] if r.get("kind") == COMMERCECRONJOB), None)
        if not owner:
            return
        key = (meta["namespace"], owner)
        if event_type == "DELETED":
            self.cronjobs.pop(key, None)
        else:
            self.cronjobs[key] = {"name": meta["name"], "status": dict(status_of(body))}
        self.queue.add(key)

    def run_changed(self, namespace: str, cron: str) -> None:
        """A run of the CommerceCronJob changed (the CommerceJob controller tells): its status follows."""
        self.queue.add((namespace, cron))

    def cron_of_job(self, job: dict[str, Any]) -> dict[str, Any] | None:
        meta = job["metadata"]
        label = (meta.get("labels") or {}).get(CRON_LABEL)
        for (namespace, name), cron in self.crons.items():
            if namespace == meta["namespace"] and cronjob_name(name) == label:
                return cron
        return None

    # -- workers --------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(serve(self.queue, self.reconcile, log), name=f"cron-worker-{i}")
            for i in range(self.workers)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def reconcile(self, key: Key) -> None:
        cron = self.crons.get(key)
        if cron is None:
            return
        namespace, name = key
        status = dict(status_of(cron))
        new: dict[str, Any] = {}
        if not cronstatus.in_step(cron, key in self.cronjobs, self._not_allowed(cron)):
            new.update(cronstatus.keep_transition_time(status, await self._apply(cron)))
        new.update(cronstatus.observed(self.cronjobs.get(key), self._last_run(namespace, name)))
        changed = {k: v for k, v in new.items() if status.get(k) != v}
        if changed:
            updated = await asyncio.to_thread(self.api.patch_cron_status, namespace, name, changed)
            self.crons[key]["status"] = dict(status_of(updated))

    async def _apply(self, cron: dict[str, Any]) -> dict[str, Any]:
        """Creates or updates the CronJob; returns the status fields that say how that went."""
        generation = cron["metadata"].get("generation")
        now = datetime.now(UTC)
        try:
            manifest = cronjob_manifest(cron, self.config)
            await asyncio.to_thread(self.api.apply_cronjob, manifest)
        except CommandNotAllowed as e:
            key = (cron["metadata"]["namespace"], cron["metadata"]["name"])
            if key in self.cronjobs:  # created before the allowlist forbade the command: no further runs
                await asyncio.to_thread(self.api.suspend_cronjob, key[0], self.cronjobs[key]["name"])
            return cronstatus.ready(False, e.reason, str(e), now, generation)
        except InvalidSpec as e:
            return cronstatus.ready(False, e.reason, str(e), now, generation)
        except ApiException as e:
            if e.status not in (400, 422):
                raise
            # The apiserver checks what the CRD schema cannot: the cron expression, the time zone.
            message = api_message(e)
            reason = "InvalidSchedule" if "schedule" in message.lower() or "timezone" in message.lower() else "Invalid"
            return cronstatus.ready(False, reason, message, now, generation)
        message = f"CronJob {manifest['metadata']['name']} schedules the runs"
        return {
            **cronstatus.ready(True, "Scheduled", message, now, generation),
            "cronJobName": manifest["metadata"]["name"],
        }

    def _not_allowed(self, cron: dict[str, Any]) -> bool:
        try:
            cronjob_manifest(cron, self.config)
        except CommandNotAllowed:
            return True
        except InvalidSpec:
            return False
        return False

    def _last_run(self, namespace: str, cron: str) -> dict[str, Any] | None:
        return max(
            self.jobs.runs_of(namespace, cron),
            key=lambda j: (j["metadata"].get("creationTimestamp", ""), j["metadata"]["name"]),
            default=None,
        )


def controllers(
    api: KubeApi, calls: JobCalls, config: OperatorConfig, workers: int = 16
) -> tuple[CommerceJobController, CronController]:
    """The two controllers, each given what it needs of the other through its constructor: the CommerceJob
    controller finds a scheduled Job's CommerceCronJob and tells of its runs' changes; the cron controller reads
    the runs from the CommerceJob controller's cache."""
    crons: CronController  # made second: the callbacks look it up when they are called, never before

    def cron_of_job(job: dict[str, Any]) -> dict[str, Any] | None:
        return crons.cron_of_job(job)

    def run_changed(namespace: str, cron: str) -> None:
        crons.run_changed(namespace, cron)

    jobs = CommerceJobController(api, calls, config, workers, cron_of_job, run_changed)
    crons = CronController(api, config, jobs.view)
    return jobs, crons
