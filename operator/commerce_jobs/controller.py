"""The CommerceJob controller: a cache fed by kopf's watch streams (cache.py), queue admission (admission.py), a work
queue of keys, and workers that decide (``lifecycle.decide``, pure) and act (``kubeapi``, blocking calls run in
threads).

All cache reads and queue admissions happen on the event loop's thread, so two workers can never admit the same
free queue slot twice; only the API calls leave it. What a worker learns from an API call goes into the cache only
if the cache has not moved on meanwhile: a CommerceJob deleted during the call is not brought back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException

from commerce_jobs import dependencies, lifecycle, metrics, retention
from commerce_jobs.admission import Admission, Standing, order_of, queue_of, standing
from commerce_jobs.cache import JobCache, Key, owner_name, rv, trim_commercejob
from commerce_jobs.config import OperatorConfig
from commerce_jobs.cronbuild import adopted_run as build_adopted_run
from commerce_jobs.dependencies import DependencyIndex
from commerce_jobs.dependents import build_dependent, tree_states
from commerce_jobs.events import EventRecorder
from commerce_jobs.jobbuild import InvalidSpec, job_manifest, job_name
from commerce_jobs.kubeapi import ForeignObject, KubeApi, api_message
from commerce_jobs.lifecycle import AttemptResult, Decision, JobView
from commerce_jobs.podstart import pod_problem
from commerce_jobs.workqueue import RetryLater, WorkQueue, serve

log = logging.getLogger("commerce_jobs.controller")

__all__ = ["CommerceJobController", "Key"]

STATE_EVENTS = {
    lifecycle.FINISHED: ("Normal", "Finished"),
    lifecycle.FAILED: ("Warning", "Failed"),
    lifecycle.TERMINATED: ("Warning", "Terminated"),
    lifecycle.INCOMPLETE: ("Warning", "Incomplete"),
    lifecycle.CANCELED: ("Normal", "Canceled"),
}

# A parent's status.dependents follows its dependents with one write for several changes: a dependent that reached a
# final state is recorded within a second (its siblings that end meanwhile in the same write), one that started
# only if it still runs after a few seconds, so that a short dependent costs its parent one write, not two.
DEPENDENT_FINAL_DELAY = 1.0
DEPENDENT_PROGRESS_DELAY = 5.0


class CommerceJobController:
    def __init__(self, api: KubeApi, config: OperatorConfig, workers: int = 16) -> None:
        self.api = api
        self.config = config
        self.workers = workers
        self.cache = JobCache()
        self.admission: Admission[Key] = Admission(config.queue_limit)
        # spec.dependsOn both ways: a job that changes state wakes exactly the jobs that wait for it, never a scan.
        self.dependencies = DependencyIndex()
        self.queue: WorkQueue[Key] = WorkQueue()
        self.events = EventRecorder(api.post_event)
        # Set by the cron controller: finds the CommerceCronJob of a CronJob's Job, and hears about its runs.
        self.cron_of_job: Callable[[dict[str, Any]], dict[str, Any] | None] = lambda job: None
        self.run_changed: Callable[[str, str], None] = lambda namespace, cron: None
        self._tasks: list[asyncio.Task[None]] = []
        # Set when a job reaches a final state: the retention loop plans again.
        self._retention_changed: asyncio.Event | None = None
        self._deleting: set[str] = set()  # uids deleted by retention, until their DELETED event arrives
        # Told (namespace, name) of every CommerceJob event, e.g. the console's live updates; they must not block
        # and read the cache only later (it is updated after them).
        self.listeners: list[Callable[[str, str], None]] = []

    @property
    def cjobs(self) -> dict[Key, dict[str, Any]]:
        """The cached CommerceJobs (trimmed: no output), by (namespace, name): read by the console and the cron
        controller."""
        return self.cache.cjobs

    def sizes(self) -> dict[str, int]:
        """How many entries each cache, index and queue holds: all 0 once every CommerceJob is gone."""
        sizes = dict(self.cache.sizes())
        sizes.update({f"admission {k}": v for k, v in self.admission.sizes().items()})
        sizes.update(self.dependencies.sizes())
        sizes.update({f"workqueue {k}": v for k, v in self.queue.sizes().items()})
        sizes.update({"retention deleting": len(self._deleting), "events pending": self.events.pending})
        return sizes

    def log_sizes(self) -> None:
        log.info("cache sizes: %s", json.dumps(self.sizes(), sort_keys=True))

    # -- fed by the watch handlers --------------------------------------------------------------------------------
    def observe_commercejob(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        for listener in self.listeners:
            listener(*key)
        if event_type == "DELETED":
            self._deleting.discard(meta.get("uid", ""))
            self.cache.drop(key, meta.get("uid", ""))
            self._wake(self.admission.remove(key))
            self._wake(self._waiting_for(key))  # a dependency that is gone: not found again
            self.dependencies.discard(key)
            self.queue.discard(key)
            return
        trimmed = trim_commercejob(body)
        cron = owner_name(trimmed["metadata"], "CommerceCronJob")
        if cron:
            self.run_changed(key[0], cron)
        old = self.cache.get(key)
        if old and rv(old) == rv(trimmed):
            return  # our own write, already in the cache
        self._store(key, trimmed, old)
        state = trimmed["status"].get("state")
        if state not in lifecycle.FINAL_STATES:
            self.queue.add(key)
        elif (old or {}).get("status", {}).get("state") != state:
            # A final job needs no reconcile (a restart replays thousands of them), only retention cares.
            self._notify_retention()

    def observe_job(self, event_type: str | None, body: dict[str, Any]) -> None:
        key = self.cache.observe_job(event_type, body)
        if key is not None:
            self.queue.add(key)

    def observe_pod(self, event_type: str | None, body: dict[str, Any]) -> None:
        key = self.cache.observe_pod(event_type, body, pod_problem(body, datetime.now(UTC)))
        if key is not None and key in self.cache.cjobs:
            self.queue.add(key)

    # -- the cache, its queues, and the parents' lists ----------------------------------------------------------------
    def _store(self, key: Key, cjob: dict[str, Any], old: dict[str, Any] | None) -> None:
        """Puts a CommerceJob into the cache, tells its queue where it stands now, and notes the parents whose list
        of dependents it makes stale."""
        self.cache.put(key, cjob)
        self._wake(self.dependencies.put(key, dependencies.depends_on(cjob), self._waits))  # a cycle it closes
        where = self._standing(key, cjob, datetime.now(UTC))
        self._wake(self.admission.update(key, queue_of(cjob), where, order_of(cjob)))
        state = (cjob.get("status") or {}).get("state") or lifecycle.PENDING
        if old is not None and ((old.get("status") or {}).get("state") or lifecycle.PENDING) == state:
            return
        self._wake(self._waiting_for(key))  # it appeared, or its state changed: the jobs that wait for it decide again
        self._dependent_changed(key, cjob, state)
        # Its own list, when it became final or is seen first (after a restart): a dependent may have moved on
        # before this version reached the cache.
        if state in lifecycle.FINAL_STATES and self._dependents_behind(key, cjob):
            self.queue.add_after(key, DEPENDENT_FINAL_DELAY)

    def _store_answer(self, key: Key, decided_from: dict[str, Any], answer: dict[str, Any]) -> None:
        """Puts an API call's answer into the cache, unless the cache moved on during the call: the object was
        deleted (it must not come back: a job that held a queue slot would hold it for ever), or a newer version
        came through the watch (it is at least as new as the answer)."""
        cached = self.cache.get(key)
        if cached is None or rv(cached) != rv(decided_from):
            return
        self._store(key, trim_commercejob(answer), cached)

    def _standing(self, key: Key, cjob: dict[str, Any], now: datetime) -> Standing:
        """Where a job stands in its queue: one whose dependencies have not all Finished could not start now, so it
        does not compete for a slot (admission.py)."""
        where = standing(cjob, now)
        if where is Standing.WAITS and dependencies.blocked(cjob, lambda name: self.cache.get((key[0], name))):
            return Standing.OUT
        return where

    def _waits(self, key: Key) -> bool:
        cjob = self.cache.get(key)
        return cjob is not None and dependencies.waits(cjob)

    def _waiting_for(self, key: Key) -> list[Key]:
        """The jobs that wait for this one (through the index), and have not started."""
        return [k for k in self.dependencies.waiting_for(key) if self._waits(k)]

    def _wake(self, keys: Iterable[Key]) -> None:
        for key in keys:
            self.queue.add(key)

    def _dependent_changed(self, key: Key, cjob: dict[str, Any], state: str) -> None:
        """A dependent's state changed: each final ancestor whose list says otherwise writes it, soon."""
        namespace, name = key
        current = cjob
        for _ in range(8):  # 3 levels of dependingJobs below a root; the bound only guards against a loop
            parent_name = owner_name(current["metadata"], "CommerceJob")
            parent = self.cache.get((namespace, parent_name)) if parent_name else None
            if parent is None or parent_name is None:
                return  # none, or not seen yet: it compares its list when it comes
            status = parent.get("status") or {}
            recorded = next((d.get("state") for d in status.get("dependents") or [] if d.get("name") == name), None)
            if status.get("state") in lifecycle.FINAL_STATES and recorded != state:
                final = state in lifecycle.FINAL_STATES
                self.queue.add_after(
                    (namespace, parent_name), DEPENDENT_FINAL_DELAY if final else DEPENDENT_PROGRESS_DELAY
                )
            current = parent

    def _dependents_list(self, key: Key, cjob: dict[str, Any], final_state: str) -> list[dict[str, str]]:
        def state_of(name: str) -> str | None:
            dependent = self.cache.get((key[0], name))
            return None if dependent is None else (dependent.get("status") or {}).get("state") or lifecycle.PENDING

        items = (cjob.get("spec") or {}).get("dependingJobs") or []
        recorded = (cjob.get("status") or {}).get("dependents") or []
        return tree_states(key[1], final_state, items, state_of, recorded)

    def _dependents_behind(self, key: Key, cjob: dict[str, Any]) -> bool:
        status = cjob.get("status") or {}
        if not (cjob.get("spec") or {}).get("dependingJobs"):
            return False
        return self._dependents_list(key, cjob, status["state"]) != (status.get("dependents") or [])

    # -- workers --------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._retention_changed = asyncio.Event()
        self._tasks = [
            asyncio.create_task(serve(self.queue, self.reconcile, log), name=f"commercejob-worker-{i}")
            for i in range(self.workers)
        ]
        self._tasks.append(asyncio.create_task(self._retention_loop(), name="retention"))
        self.events.start()
        # `kill -USR1 <pid>` logs the sizes of the caches: memory that a long-running operator holds, at a glance.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread, not POSIX
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, self.log_sizes)

    def _notify_retention(self) -> None:
        if self._retention_changed is not None:
            self._retention_changed.set()

    async def _retention_loop(self) -> None:
        """One loop for the whole operator: delete expired job trees, at most perCall a round."""
        changed = self._retention_changed = self._retention_changed or asyncio.Event()
        policy, interval = self.config.retention, self.config.retention_interval_seconds
        while True:
            changed.clear()
            now = datetime.now(UTC)
            try:
                candidates = [j for j in self.cache.values() if j["metadata"]["uid"] not in self._deleting]
                due, upcoming = retention.plan(candidates, policy, now)
            except Exception:  # a bad object must not end the clean-up for everyone
                log.exception("retention: planning failed; trying again in %.0fs", interval)
                await asyncio.sleep(interval)
                continue
            for expired in due[: policy.per_call]:
                await self._delete_expired(expired)
            if len(due) > policy.per_call:
                await asyncio.sleep(interval)  # a backlog: the next round after the interval, never sooner
                continue
            timeout = max((upcoming - now).total_seconds(), 0.0) if upcoming else None
            with contextlib.suppress(TimeoutError):  # on time-out, the next tree expired
                await asyncio.wait_for(changed.wait(), timeout)
            # Plan at most once a second: a restart replays thousands of finished jobs, each of which wakes this
            # loop, and planning walks the whole cache.
            await asyncio.sleep(max(0.0, 1.0 - (datetime.now(UTC) - now).total_seconds()))

    async def _delete_expired(self, expired: retention.Expired) -> None:
        meta = expired.root["metadata"]
        # Marked before the call: its DELETED event may arrive before the call returns, and unmarks it.
        self._deleting.add(meta["uid"])
        try:
            deleted = await asyncio.to_thread(self.api.delete_commercejob, meta["namespace"], meta["name"], meta["uid"])
        except Exception:
            self._deleting.discard(meta["uid"])
            log.exception("retention: deleting %s/%s failed", meta["namespace"], meta["name"])
            return
        cached = self.cache.get((meta["namespace"], meta["name"]))
        if not deleted or cached is None or cached["metadata"].get("uid") != meta["uid"]:
            self._deleting.discard(meta["uid"])  # gone already: no DELETED event is to come for it
        if deleted:
            metrics.retention_deleted(meta["namespace"], expired.tree_size)
            log.info(
                "retention: deleted %s/%s (%d job(s) in its tree, expired %s)", meta["namespace"], meta["name"],
                expired.tree_size, lifecycle.format_time(expired.expired_at),
            )  # fmt: skip

    async def stop(self) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR1)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.events.stop()

    # -- one reconcile --------------------------------------------------------------------------------------------
    async def reconcile(self, key: Key) -> None:
        cjob = self.cache.get(key)
        if cjob is None:
            if key in self.cache.adoptions:
                await self._adopt(key, self.cache.adoptions[key])
            return
        now = datetime.now(UTC)
        spec = cjob.get("spec") or {}
        status = cjob.get("status") or {}
        state = status.get("state")
        if state in lifecycle.FINAL_STATES:
            await self._sync_dependents(key, cjob)  # the only work a final job has
            return
        unresolved = spec.get("templateRef") and "command" not in spec
        if unresolved and state in (None, lifecycle.PENDING):
            await self._take_template(key, cjob, now)
            return
        # Where it stands may have changed with the time alone (its executeAfter came): its queue hears of it.
        granted = self.admission.update(key, queue_of(cjob), self._standing(key, cjob, now), order_of(cjob))
        self._wake(k for k in granted if k != key)
        recorded: dict[str, Any] = {}
        if spec.get("dependsOn") and not spec.get("cancel") and dependencies.waits(cjob):
            verdict = self._dependency_verdict(key, cjob, now)
            if verdict.outcome != dependencies.READY:
                await self._hold_for_dependencies(key, cjob, verdict, now)
                return
            recorded = dependencies.ready_fields(cjob, verdict)
        attempts = int(status.get("attempts") or 0)
        problem = self.cache.pod_problem(key[0], job_name(key[1], attempts)) if attempts else None
        start_timeout = timedelta(seconds=self.config.pod_start_timeout_seconds)
        decision = lifecycle.decide(
            cjob, self.cache.attempts_of(cjob), now, self.admission.holds(key), problem, start_timeout
        )
        if recorded:  # every dependency Finished: said with the next write (Queued, Scheduled or Running)
            decision.status = {**(decision.status or {}), **recorded}
        await self._execute(key, cjob, decision, now)

    def _dependency_verdict(self, key: Key, cjob: dict[str, Any], now: datetime) -> dependencies.Verdict:
        found = {name: self.cache.get((key[0], name)) for name in dependencies.depends_on(cjob)}
        grace = timedelta(seconds=self.config.dependency_grace_seconds)
        return dependencies.decide(cjob, found, now, grace, self.dependencies.cycle(key))

    async def _hold_for_dependencies(
        self, key: Key, cjob: dict[str, Any], verdict: dependencies.Verdict, now: datetime
    ) -> None:
        """A job that its dependencies keep from starting: it waits (Pending, naming them), or it ends, Canceled
        (a dependency ended otherwise than Finished) or Failed (a name not found in time, a cycle). Its end wakes the
        jobs that wait for it, which end in turn: the cancel goes down the graph, one write for each job."""
        if verdict.outcome == dependencies.WAIT:
            waiting = dependencies.waiting_patch(cjob, verdict, now)
            if waiting is not None:
                await self._write(key, cjob, waiting, None)
            if verdict.recheck_at is not None and key in self.cache.cjobs:
                self.queue.add_after(key, max(0.0, (verdict.recheck_at - now).total_seconds()))
            return
        status = dependencies.end_patch(cjob, verdict, now)
        if (cjob.get("spec") or {}).get("dependingJobs"):
            status["dependents"] = self._dependents_list(key, cjob, status["state"])
        await self._write(key, cjob, status, ("Warning", verdict.reason, verdict.message))

    async def _sync_dependents(self, key: Key, cjob: dict[str, Any]) -> None:
        """Brings a final job's status.dependents in step with its dependents' states: one write for what changed."""
        status = cjob.get("status") or {}
        if not (cjob.get("spec") or {}).get("dependingJobs"):
            return
        dependents = self._dependents_list(key, cjob, status["state"])
        if dependents != (status.get("dependents") or []):
            await self._write(key, cjob, {"dependents": dependents}, None)

    async def _adopt(self, key: Key, job: dict[str, Any]) -> None:
        """Records a run that a CronJob started as a CommerceJob, and makes the Job that CommerceJob's attempt 1."""
        cron = self.cron_of_job(job)
        if cron is None:
            self.cache.adoptions.pop(key, None)
            log.warning("%s/%s: a scheduled Job whose CommerceCronJob is gone; left alone", *key)
            return
        run = await asyncio.to_thread(self.api.create_commercejob, build_adopted_run(cron, job))
        await asyncio.to_thread(self.api.add_job_owner, job, run)
        self.cache.adoptions.pop(key, None)
        log.info("%s/%s: scheduled run of %s recorded as a CommerceJob", key[0], key[1], cron["metadata"]["name"])

    async def _take_template(self, key: Key, cjob: dict[str, Any], now: datetime) -> None:
        """Copies the template's fields into the job, once, before it starts; the job then runs as any other. Until
        then it is out of its queue: a missing template holds no slot and no place."""
        namespace, name = key
        template_name = cjob["spec"]["templateRef"]["name"]
        template = await asyncio.to_thread(self.api.get_template, namespace, template_name)
        if template is None:
            status = lifecycle.template_not_found(cjob, template_name, now)
            if status is not None:
                event = ("Warning", "TemplateNotFound", status["message"])
                await self._write(key, cjob, status, event)
            if (status or {}).get("state") != lifecycle.FAILED and key in self.cache.cjobs:
                self.queue.add_after(key, 10)
            return
        fields = lifecycle.template_fields(cjob, template)
        metrics.template_resolved(fields)
        updated = await asyncio.to_thread(self.api.patch_spec, namespace, name, rv(cjob), fields)
        self._store_answer(key, cjob, updated)
        if key in self.cache.cjobs:
            self.queue.add(key)

    async def _execute(self, key: Key, cjob: dict[str, Any], decision: Decision, now: datetime) -> None:
        namespace = key[0]
        if decision.verify_attempt is not None:
            expected = self._job_name(cjob, decision.verify_attempt)
            if expected is not None and await asyncio.to_thread(self.api.job_exists, namespace, expected):
                return  # created, not yet seen by the watch: its event will come
            decision = lifecycle.vanished(cjob, decision.verify_attempt, now)

        for doomed in decision.delete_jobs:
            await asyncio.to_thread(self.api.delete_job, namespace, doomed)

        status: dict[str, Any] = dict(decision.status or {})
        event: tuple[str, str, str] | None = None

        if decision.adopt is not None:
            status["jobName"] = decision.adopt
            self.cache.record_created(cjob, JobView(decision.adopt, 1))
            event = ("Normal", "Started", f"scheduled run: Job {decision.adopt} started by its CronJob")

        if decision.create_attempt is not None:
            status, event = await self._create_attempt(key, cjob, decision.create_attempt, status, now)

        if decision.collect is not None:
            if decision.collect.stopped:
                # Its container never started: no output to read, and the exit code that its deleted pod may
                # report (137) is the kill's.
                result = AttemptResult(None, "", False)
            else:
                result = await asyncio.to_thread(
                    self.api.attempt_result, namespace, decision.collect.name, self.config.output_max_bytes,
                    self.cache.pod_outcomes.get((namespace, decision.collect.name)),
                )  # fmt: skip
            if decision.finish:
                status = lifecycle.final_status(cjob, decision.finish, decision.collect, result, now)
            elif decision.retry_at:
                status = lifecycle.retry_status(cjob, decision.collect, result, decision.retry_at, now)
                event = ("Warning", "RetryScheduled", status["message"])

        if decision.finish == lifecycle.FINISHED:
            items = (cjob.get("spec") or {}).get("dependingJobs") or []
            # Dependents first, status second: a crash in between re-runs this step, and their fixed names make
            # the second creation a no-op, so each dependent is created exactly once.
            for item in items:
                await asyncio.to_thread(self.api.create_commercejob, build_dependent(cjob, item))
            status["dependents"] = self._dependents_list(key, cjob, lifecycle.FINISHED)
        elif decision.cancel_dependents:
            status["dependents"] = self._dependents_list(key, cjob, lifecycle.CANCELED)

        final = status.get("state")
        if final in STATE_EVENTS and event is None:
            event_type, reason = STATE_EVENTS[final]
            event = (event_type, reason, status.get("message", ""))

        if status:
            await self._write(key, cjob, status, event)
        if decision.requeue_after is not None and key in self.cache.cjobs:
            self.queue.add_after(key, decision.requeue_after)

    async def _create_attempt(
        self, key: Key, cjob: dict[str, Any], attempt: int, status: dict[str, Any], now: datetime
    ) -> tuple[dict[str, Any], tuple[str, str, str]]:
        """Creates the Job of an attempt; returns the status to write and its Event. A job that cannot run as
        written (refused by the operator or the apiserver, or its Job's name taken for good) is Failed instead."""
        try:
            manifest = job_manifest(cjob, attempt, self.config)
        except InvalidSpec as e:
            return self._refusal(cjob, attempt, e.reason, str(e), now)
        try:
            await asyncio.to_thread(self.api.create_job, manifest, cjob["metadata"]["uid"])
        except ForeignObject as e:
            if e.transient:
                raise RetryLater(str(e)) from e  # the garbage collector removes it: then the create succeeds
            return self._refusal(cjob, attempt, "NameConflict", str(e), now)
        except ApiException as e:
            # The schema keeps env, volumes, resources ... free-form; the apiserver checks them in the Job.
            # Its refusal is the user's to fix, not a reason to retry for ever.
            if e.status not in (400, 422):
                raise
            return self._refusal(cjob, attempt, "InvalidSpec", f"the apiserver refused the Job: {api_message(e)}", now)
        status["jobName"] = manifest["metadata"]["name"]
        # Known before the watch reports it, so the next decision does not ask the apiserver again. But a Job that a
        # killed operator created already may have ended and been reported: that view is kept, and decided on again
        # (no further event of it will come).
        seen = self.cache.record_created(cjob, JobView(status["jobName"], attempt))
        if seen.finished:
            self.queue.add(key)
        return status, ("Normal", "Started", f"attempt {attempt}: Job {status['jobName']} created")

    def _refusal(
        self, cjob: dict[str, Any], attempt: int, reason: str, message: str, now: datetime
    ) -> tuple[dict[str, Any], tuple[str, str, str]]:
        """The job cannot run as written: Failed with the reason, no Job created for this attempt, its dependents
        Canceled. One status write and one Event: nothing is retried."""
        message = lifecycle.bounded_message(message)
        view = JobView("", attempt, failed=True, failure_reason=reason)
        status = lifecycle.final_status(cjob, lifecycle.FAILED, view, AttemptResult(None, "", False), now)
        status.update(reason=reason, message=message, attempts=attempt - 1)
        status["conditions"][0].update(reason=reason, message=message)
        key = (cjob["metadata"]["namespace"], cjob["metadata"]["name"])
        status["dependents"] = self._dependents_list(key, cjob, lifecycle.FAILED)
        return status, ("Warning", reason, message)

    async def _write(
        self, key: Key, cjob: dict[str, Any], status: dict[str, Any], event: tuple[str, str, str] | None
    ) -> None:
        namespace, name = key
        updated = await asyncio.to_thread(self.api.patch_status, namespace, name, rv(cjob), status)
        # The patch's answer is newer than the cache: keep it, so the next decision starts from it.
        self._store_answer(key, cjob, updated)
        metrics.status_written(cjob, updated)
        if status.get("state") in lifecycle.FINAL_STATES:
            self._notify_retention()
        if event:
            event_type, reason, message = event
            log.info("%s/%s: %s: %s", namespace, name, reason, message)
            self.events.record(updated, "CommerceJob", reason, message, event_type)

    @staticmethod
    def _job_name(cjob: dict[str, Any], attempt: int) -> str | None:
        status = cjob.get("status") or {}
        return status.get("jobName") if int(status.get("attempts") or 0) == attempt else None
