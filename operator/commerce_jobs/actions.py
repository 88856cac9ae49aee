"""What the controller's decisions make happen: every API call of the CommerceJob controller. The three that every job
makes (its Job, its output, its status, its Event) are sent on the event loop (jobcalls.py); the rarer ones run in
threads.

The steps of one attempt, as a decision (``lifecycle.decide``, pure) says, in order: start (create the attempt's
Job, or refuse a job that cannot run), collect (the ended attempt's exit code and output), create the dependents of a
job that Finished, and record (one status write, with its Event). And the two steps before a job's first attempt:
take its template's fields, and record a Job that a CronJob started as a CommerceJob (adoption).

What the calls answer goes back into the controller's cache through ``store_answer``; nothing here decides.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from commerce_jobs import lifecycle, metrics
from commerce_jobs.cache import JobCache, Key, rv
from commerce_jobs.config import OperatorConfig
from commerce_jobs.cronbuild import adopted_run
from commerce_jobs.dependents import build_dependent, dependents_status
from commerce_jobs.events import EventRecorder
from commerce_jobs.fields import spec_of, status_of
from commerce_jobs.jobbuild import InvalidSpec, job_manifest
from commerce_jobs.jobcalls import JobCalls
from commerce_jobs.kubeapi import ForeignObject, KubeApi, api_message, attempt_result, settled
from commerce_jobs.lifecycle import AttemptResult, Decision, JobView
from commerce_jobs.workqueue import RetryLater, WorkQueue

log = logging.getLogger("commerce_jobs.controller")

Event = tuple[str, str, str]  # (type, reason, message)

STATE_EVENTS = {
    lifecycle.FINISHED: ("Normal", "Finished"),
    lifecycle.FAILED: ("Warning", "Failed"),
    lifecycle.TERMINATED: ("Warning", "Terminated"),
    lifecycle.INCOMPLETE: ("Warning", "Incomplete"),
    lifecycle.CANCELED: ("Normal", "Canceled"),
}


class JobActions:
    def __init__(
        self,
        api: KubeApi,
        calls: JobCalls,
        config: OperatorConfig,
        cache: JobCache,
        queue: WorkQueue[Key],
        events: EventRecorder,
        store_answer: Callable[[Key, dict[str, Any], dict[str, Any]], None],
        job_ended: Callable[[dict[str, Any]], object],
        cron_of_job: Callable[[dict[str, Any]], dict[str, Any] | None],
    ) -> None:
        self.api = api
        self.calls = calls
        self.config = config
        self.cache = cache
        self.queue = queue
        self.events = events
        # Puts an API call's answer into the cache, unless the cache moved on during the call (the controller's).
        self.store_answer = store_answer
        self.job_ended = job_ended  # a job reached a final state: retention plans again
        self.cron_of_job = cron_of_job  # the CommerceCronJob of a CronJob's Job (the cron controller's)

    def dependents(self, key: Key, cjob: dict[str, Any], state: str) -> list[dict[str, str]]:
        """status.dependents of a job that is (or is about to be) in ``state``, from the cache."""
        return dependents_status(cjob, state, self.cache.state_of(key[0]))

    async def execute(self, key: Key, cjob: dict[str, Any], decision: Decision, now: datetime) -> None:
        namespace = key[0]
        if decision.verify_attempt is not None:
            expected = _job_name(cjob, decision.verify_attempt)
            if expected is not None and await asyncio.to_thread(self.api.job_exists, namespace, expected):
                return  # created, not yet seen by the watch: its event will come
            decision = lifecycle.vanished(cjob, decision.verify_attempt, now)

        for doomed in decision.delete_jobs:
            await asyncio.to_thread(self.api.delete_job, namespace, doomed)

        status: dict[str, Any] = dict(decision.status or {})
        event: Event | None = None

        if decision.adopt is not None:
            status["jobName"] = decision.adopt
            self.cache.record_created(cjob, JobView(decision.adopt, 1))
            event = ("Normal", "Started", f"scheduled run: Job {decision.adopt} started by its CronJob")

        if decision.create_attempt is not None:
            status, event = await self._start(key, cjob, decision.create_attempt, status, now)

        if decision.collect is not None:
            result = await self._collect(namespace, decision.collect)
            if decision.finish:
                status = lifecycle.final_status(cjob, decision.finish, decision.collect, result, now)
            elif decision.retry_at:
                status = lifecycle.retry_status(cjob, decision.collect, result, decision.retry_at, now)
                event = ("Warning", "RetryScheduled", status["message"])

        if decision.finish == lifecycle.FINISHED:
            await self._create_dependents(cjob)
            status["dependents"] = self.dependents(key, cjob, lifecycle.FINISHED)
        elif decision.cancel_dependents:
            status["dependents"] = self.dependents(key, cjob, lifecycle.CANCELED)

        final = status.get("state")
        if final in STATE_EVENTS and event is None:
            event_type, reason = STATE_EVENTS[final]
            event = (event_type, reason, status.get("message", ""))

        if status:
            await self.record(key, cjob, status, event)
        if decision.requeue_after is not None and key in self.cache.cjobs:
            self.queue.add_after(key, decision.requeue_after)

    # -- start ----------------------------------------------------------------------------------------------------
    async def _start(
        self, key: Key, cjob: dict[str, Any], attempt: int, status: dict[str, Any], now: datetime
    ) -> tuple[dict[str, Any], Event]:
        """Creates the Job of an attempt; returns the status to write and its Event. A job that cannot run as
        written (refused by the operator or the apiserver, or its Job's name taken for good) is Failed instead."""
        try:
            manifest = job_manifest(cjob, attempt, self.config)
        except InvalidSpec as e:
            return self._refusal(key, cjob, attempt, e.reason, str(e), now)
        try:
            await self.calls.create_job(manifest, cjob["metadata"]["uid"])
        except ForeignObject as e:
            if e.transient:
                raise RetryLater(str(e)) from e  # the garbage collector removes it: then the create succeeds
            return self._refusal(key, cjob, attempt, "NameConflict", str(e), now)
        except ApiException as e:
            # The schema keeps env, volumes, resources ... free-form; the apiserver checks them in the Job.
            # Its refusal is the user's to fix, not a reason to retry for ever.
            if e.status not in (400, 422):
                raise
            message = f"the apiserver refused the Job: {api_message(e)}"
            return self._refusal(key, cjob, attempt, "InvalidSpec", message, now)
        status["jobName"] = manifest["metadata"]["name"]
        # Known before the watch reports it, so the next decision does not ask the apiserver again. But a Job that a
        # killed operator created already may have ended and been reported: that view is kept, and decided on again
        # (no further event of it will come).
        seen = self.cache.record_created(cjob, JobView(status["jobName"], attempt))
        if seen.finished:
            self.queue.add(key)
        return status, ("Normal", "Started", f"attempt {attempt}: Job {status['jobName']} created")

    def _refusal(
        self, key: Key, cjob: dict[str, Any], attempt: int, reason: str, message: str, now: datetime
    ) -> tuple[dict[str, Any], Event]:
        """The job cannot run as written: Failed with the reason, no Job created for this attempt, its dependents
        Canceled. One status write and one Event: nothing is retried."""
        message = lifecycle.bounded_message(message)
        view = JobView("", attempt, failed=True, failure_reason=reason)
        status = lifecycle.final_status(cjob, lifecycle.FAILED, view, AttemptResult(None, "", False), now)
        status.update(reason=reason, message=message, attempts=attempt - 1)
        status["conditions"][0].update(reason=reason, message=message)
        status["dependents"] = self.dependents(key, cjob, lifecycle.FAILED)
        return status, ("Warning", reason, message)

    # -- collect --------------------------------------------------------------------------------------------------
    async def _collect(self, namespace: str, attempt: JobView) -> AttemptResult:
        if attempt.stopped:
            # Its container never started: no output to read, and the exit code that its deleted pod may report
            # (137) is the kill's.
            return AttemptResult(None, "", False)
        known = self.cache.pod_outcomes.get((namespace, attempt.name))
        outcome = known
        if not settled(known):
            outcome = await asyncio.to_thread(self.api.newest_pod_outcome, namespace, attempt.name)
            if outcome is None and known is not None and known.exit_code is not None:
                outcome = known  # its pod is gone since: what the watch saw of it is all there is
        if outcome is None:
            return attempt_result(None, None)
        tail = await self.calls.log_tail(namespace, outcome.pod_name, self.config.output_max_bytes)
        return attempt_result(outcome, tail)

    # -- create the dependents ------------------------------------------------------------------------------------
    async def _create_dependents(self, cjob: dict[str, Any]) -> None:
        # Dependents first, status second: a crash in between re-runs this step, and their fixed names make the
        # second creation a no-op, so each dependent is created exactly once.
        for item in spec_of(cjob).get("dependingJobs") or []:
            await asyncio.to_thread(self.api.create_commercejob, build_dependent(cjob, item))

    # -- before the first attempt ---------------------------------------------------------------------------------
    async def take_template(self, key: Key, cjob: dict[str, Any], now: datetime) -> None:
        """Copies the template's fields into the job, once, before it starts; the job then runs as any other. Until
        then it is out of its queue: a missing template holds no slot and no place."""
        namespace, name = key
        template_name = cjob["spec"]["templateRef"]["name"]
        template = await asyncio.to_thread(self.api.get_template, namespace, template_name)
        if template is None:
            status = lifecycle.template_not_found(cjob, template_name, now)
            if status is not None:
                event = ("Warning", "TemplateNotFound", status["message"])
                await self.record(key, cjob, status, event)
            if (status or {}).get("state") != lifecycle.FAILED and key in self.cache.cjobs:
                self.queue.add_after(key, 10)
            return
        fields = lifecycle.template_fields(cjob, template)
        metrics.template_resolved(fields)
        updated = await asyncio.to_thread(self.api.patch_spec, namespace, name, rv(cjob), fields)
        self.store_answer(key, cjob, updated)
        if key in self.cache.cjobs:
            self.queue.add(key)

    async def adopt(self, key: Key, job: dict[str, Any]) -> None:
        """Records a run that a CronJob started as a CommerceJob, and makes the Job that CommerceJob's attempt 1."""
        cron = self.cron_of_job(job)
        if cron is None:
            self.cache.adoptions.pop(key, None)
            log.warning("%s/%s: a scheduled Job whose CommerceCronJob is gone; left alone", *key)
            return
        run = await asyncio.to_thread(self.api.create_commercejob, adopted_run(cron, job))
        await asyncio.to_thread(self.api.add_job_owner, job, run)
        self.cache.adoptions.pop(key, None)
        log.info("%s/%s: scheduled run of %s recorded as a CommerceJob", key[0], key[1], cron["metadata"]["name"])

    # -- record ---------------------------------------------------------------------------------------------------
    async def record(self, key: Key, cjob: dict[str, Any], status: dict[str, Any], event: Event | None) -> None:
        """Writes the status (conditional on the version it was decided from) and posts its Event."""
        namespace, name = key
        updated = await self.calls.patch_status(namespace, name, rv(cjob), status)
        # The patch's answer is newer than the cache: keep it, so the next decision starts from it.
        self.store_answer(key, cjob, updated)
        metrics.status_written(cjob, updated)
        if status.get("state") in lifecycle.FINAL_STATES:
            self.job_ended(updated)
        if event:
            event_type, reason, message = event
            log.info("%s/%s: %s: %s", namespace, name, reason, message)
            hold = self.config.started_event_hold_seconds if reason == "Started" else 0
            self.events.record(updated, "CommerceJob", reason, message, event_type, hold)


def _job_name(cjob: dict[str, Any], attempt: int) -> str | None:
    status = status_of(cjob)
    return status.get("jobName") if int(status.get("attempts") or 0) == attempt else None
