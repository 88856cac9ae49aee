"""The CommerceJob controller: a cache fed by kopf's watch streams, a work queue of keys, and workers that decide
(``lifecycle.decide``, pure) and act (``kubeapi``, blocking calls run in threads).

All cache reads and queue admissions happen on the event loop's thread, so two workers can never admit the same
free queue slot twice; only the API calls leave it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException

from commerce_jobs import lifecycle, metrics, retention
from commerce_jobs.config import OperatorConfig
from commerce_jobs.cronbuild import CRON_LABEL
from commerce_jobs.cronbuild import adopted_run as build_adopted_run
from commerce_jobs.dependents import build_dependent, canceled_tree
from commerce_jobs.events import EventRecorder
from commerce_jobs.jobbuild import ATTEMPT_LABEL, OWNER_LABEL, InvalidSpec, job_manifest
from commerce_jobs.kubeapi import ForeignObject, KubeApi, api_message, pod_outcome
from commerce_jobs.lifecycle import AttemptResult, Decision, JobView, PodOutcome, PodProblem
from commerce_jobs.workqueue import WorkQueue, serve

log = logging.getLogger("commerce_jobs.controller")

Key = tuple[str, str]  # (namespace, name) of a CommerceJob

# Waiting reasons of a container that will not start by itself soon: the pod would wait for ever.
STUCK_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError",
     "CreateContainerError"}
)  # fmt: skip

STATE_EVENTS = {
    lifecycle.FINISHED: ("Normal", "Finished"),
    lifecycle.FAILED: ("Warning", "Failed"),
    lifecycle.TERMINATED: ("Warning", "Terminated"),
    lifecycle.INCOMPLETE: ("Warning", "Incomplete"),
    lifecycle.CANCELED: ("Normal", "Canceled"),
}


def trim_commercejob(body: dict[str, Any]) -> dict[str, Any]:
    """What the cache keeps of a CommerceJob: everything but the output, which can be 64 KiB a job."""
    meta = body.get("metadata") or {}
    status = {k: v for k, v in (body.get("status") or {}).items() if k != "output"}
    kept = ("name", "namespace", "uid", "generation", "resourceVersion", "creationTimestamp", "ownerReferences")
    trimmed_meta = {k: meta[k] for k in kept if k in meta}
    ours = {k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith("commercejobs.dev/")}
    if ours:
        trimmed_meta["annotations"] = ours
    return {
        "metadata": trimmed_meta,
        "spec": dict(body.get("spec") or {}),
        "status": status,
    }


def job_view(body: dict[str, Any]) -> JobView | None:
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    try:
        attempt = int(labels.get(ATTEMPT_LABEL, ""))
    except ValueError:
        return None
    complete = failed = False
    reason = ""
    finished_at = None
    for cond in (body.get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            complete = True
            finished_at = lifecycle.parse_time((body.get("status") or {}).get("completionTime")) or (
                lifecycle.parse_time(cond.get("lastTransitionTime"))
            )
        elif cond.get("type") == "Failed":
            failed = True
            reason = cond.get("reason") or ""
            finished_at = lifecycle.parse_time(cond.get("lastTransitionTime"))
    return JobView(
        name=meta.get("name", ""),
        attempt=attempt,
        complete=complete,
        failed=failed,
        failure_reason=reason,
        finished_at=finished_at,
        deleting=bool(meta.get("deletionTimestamp")),
    )


def admission_order(cjob: dict[str, Any]) -> tuple[int, str, str]:
    """The order in which waiting jobs of a queue start: higher priority first, then first come, first served
    (as JMS: priority, then id)."""
    spec = cjob.get("spec") or {}
    meta = cjob["metadata"]
    return (-int(spec.get("priority", 0)), meta.get("creationTimestamp", ""), meta["name"])


class CommerceJobController:
    def __init__(self, api: KubeApi, config: OperatorConfig, workers: int = 16) -> None:
        self.api = api
        self.config = config
        self.workers = workers
        self.cjobs: dict[Key, dict[str, Any]] = {}
        # The jobs of each queue that are not final yet: admission walks these, not the whole cache (which holds
        # every finished job until retention deletes it, 10,000s of them).
        self.live_by_queue: dict[str, set[Key]] = {}
        self.jobs: dict[Key, dict[int, JobView]] = {}
        self.queue: WorkQueue[Key] = WorkQueue()
        self.events = EventRecorder(api.post_event)
        # Jobs admitted to their queue whose Running state the cache has not seen yet.
        self.admitted: set[Key] = set()
        # Why the container of a job's current attempt cannot start, by job and attempt.
        self.pod_problems: dict[Key, tuple[int, PodProblem]] = {}
        # How the newest ended pod of each Job ended, by (namespace, Job name): read when the attempt is collected.
        self.pod_outcomes: dict[Key, PodOutcome] = {}
        # Which CommerceJob a batch Job belongs to, by (namespace, Job name).
        self.job_owners: dict[Key, Key] = {}
        # Jobs that a CronJob started and that no CommerceJob records yet, by (namespace, Job name).
        self.adoptions: dict[Key, dict[str, Any]] = {}
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

    # -- fed by the watch handlers --------------------------------------------------------------------------------
    def observe_commercejob(self, event_type: str | None, body: dict[str, Any]) -> None:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        for listener in self.listeners:
            listener(*key)
        if event_type == "DELETED":
            self._deleting.discard(body["metadata"].get("uid", ""))
            self._cache_drop(key)
            for view in self.jobs.pop(key, {}).values():
                self.pod_outcomes.pop((key[0], view.name), None)
            self.pod_problems.pop(key, None)
            self.admitted.discard(key)
            self.queue.discard(key)
            return
        trimmed = trim_commercejob(body)
        cron = next((r["name"] for r in trimmed["metadata"].get("ownerReferences") or []
                     if r.get("kind") == "CommerceCronJob"), None)  # fmt: skip
        if cron:
            self.run_changed(key[0], cron)
        old = self.cjobs.get(key)
        if old and _rv(old) == _rv(trimmed):
            return  # our own write, already in the cache
        self._cache_put(key, trimmed)
        state = trimmed["status"].get("state")
        if state not in lifecycle.FINAL_STATES:
            self.queue.add(key)
            return
        # A final job needs no reconcile: a restart replays thousands of them, and only retention cares.
        self.admitted.discard(key)
        if (old or {}).get("status", {}).get("state") != state:
            self._notify_retention()

    def _cache_put(self, key: Key, cjob: dict[str, Any]) -> None:
        old = self.cjobs.get(key)
        if old is not None:
            self.live_by_queue.get(_queue_of(old), set()).discard(key)
        self.cjobs[key] = cjob
        if (cjob.get("status") or {}).get("state") not in lifecycle.FINAL_STATES:
            self.live_by_queue.setdefault(_queue_of(cjob), set()).add(key)

    def _cache_drop(self, key: Key) -> None:
        old = self.cjobs.pop(key, None)
        if old is not None:
            self.live_by_queue.get(_queue_of(old), set()).discard(key)

    def observe_job(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        owner = next(
            (ref.get("name") for ref in meta.get("ownerReferences") or [] if ref.get("kind") == "CommerceJob"), None
        )
        view = job_view(body)
        if view is None:
            return
        job_key = (meta["namespace"], meta["name"])
        if not owner:
            if event_type != "DELETED" and CRON_LABEL in (meta.get("labels") or {}):
                self.adoptions[job_key] = body  # a scheduled run: record it as a CommerceJob of the same name
                self.queue.add(job_key)
            else:
                self.adoptions.pop(job_key, None)
            return
        self.adoptions.pop(job_key, None)
        key = (meta["namespace"], owner)
        attempts = self.jobs.setdefault(key, {})
        if event_type == "DELETED":
            attempts.pop(view.attempt, None)
            self.job_owners.pop(job_key, None)
            self.pod_outcomes.pop(job_key, None)
        else:
            attempts[view.attempt] = view
            self.job_owners[job_key] = key
        self.queue.add(key)

    def observe_pod(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        labels = meta.get("labels") or {}
        owner_label, attempt_label = labels.get(OWNER_LABEL), labels.get(ATTEMPT_LABEL, "")
        if not owner_label or not attempt_label.isdigit():
            return
        key = (meta["namespace"], self._owner_of_pod(meta) or owner_label)
        attempt = int(attempt_label)
        job_name = labels.get("batch.kubernetes.io/job-name")
        if job_name and event_type != "DELETED":
            outcome = pod_outcome(body)
            known_outcome = self.pod_outcomes.get((meta["namespace"], job_name))
            if outcome.exit_code is not None and (known_outcome is None or known_outcome.created <= outcome.created):
                self.pod_outcomes[(meta["namespace"], job_name)] = outcome
        problem = None if event_type == "DELETED" else _pod_problem(body)
        known = self.pod_problems.get(key)
        if problem is None:
            if known and known[0] == attempt:
                del self.pod_problems[key]
                self.queue.add(key)
            return
        if known and known[0] == attempt and known[1].reason == problem.reason:
            return  # the same trouble as before: keep the time it began
        since = known[1].since if known and known[0] == attempt else problem.since
        self.pod_problems[key] = (attempt, PodProblem(problem.reason, problem.message, since))
        self.queue.add(key)

    def _owner_of_pod(self, meta: dict[str, Any]) -> str | None:
        # The label holds the CommerceJob's name cut to 63 characters; the Job's owner is known whole.
        job = next((r.get("name") for r in meta.get("ownerReferences") or [] if r.get("kind") == "Job"), None)
        owner = self.job_owners.get((meta.get("namespace", ""), job or ""))
        return owner[1] if owner else None

    # -- workers --------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._retention_changed = asyncio.Event()
        self._tasks = [
            asyncio.create_task(serve(self.queue, self.reconcile, log), name=f"commercejob-worker-{i}")
            for i in range(self.workers)
        ]
        self._tasks.append(asyncio.create_task(self._retention_loop(), name="retention"))
        self.events.start()

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
                candidates = [j for j in self.cjobs.values() if j["metadata"]["uid"] not in self._deleting]
                due, upcoming = retention.plan(candidates, policy, now)
            except Exception:  # a bad object must not end the clean-up for everyone
                log.exception("retention: planning failed; trying again in %.0fs", interval)
                await asyncio.sleep(interval)
                continue
            for expired in due[: policy.per_call]:
                meta = expired.root["metadata"]
                try:
                    deleted = await asyncio.to_thread(
                        self.api.delete_commercejob, meta["namespace"], meta["name"], meta["uid"]
                    )
                except Exception:
                    log.exception("retention: deleting %s/%s failed", meta["namespace"], meta["name"])
                    continue
                if deleted:
                    self._deleting.add(meta["uid"])
                    metrics.retention_deleted(meta["namespace"], expired.tree_size)
                    log.info(
                        "retention: deleted %s/%s (%d job(s) in its tree, expired %s)", meta["namespace"],
                        meta["name"], expired.tree_size, lifecycle.format_time(expired.expired_at),
                    )  # fmt: skip
            if len(due) > policy.per_call:
                await asyncio.sleep(interval)  # a backlog: the next round after the interval, never sooner
                continue
            timeout = max((upcoming - now).total_seconds(), 0.0) if upcoming else None
            with contextlib.suppress(TimeoutError):  # on time-out, the next tree expired
                await asyncio.wait_for(changed.wait(), timeout)
            # Plan at most once a second: a restart replays thousands of finished jobs, each of which wakes this
            # loop, and planning walks the whole cache.
            await asyncio.sleep(max(0.0, 1.0 - (datetime.now(UTC) - now).total_seconds()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.events.stop()

    # -- one reconcile --------------------------------------------------------------------------------------------
    def _is_admitted(self, key: Key, cjob: dict[str, Any]) -> bool:
        if key in self.admitted:
            return True
        queue = _queue_of(cjob)
        limit = self.config.queue_limit(queue)
        if limit is None:
            return True
        running = 0
        waiting: list[tuple[tuple[int, str, str], Key]] = []
        for other_key in self.live_by_queue.get(queue, ()):
            other = self.cjobs[other_key]
            spec = other.get("spec") or {}
            state = (other.get("status") or {}).get("state")
            if state == lifecycle.RUNNING or other_key in self.admitted:
                running += 1
            elif state in (None, lifecycle.PENDING) and not spec.get("cancel"):
                waiting.append((admission_order(other), other_key))
        free = limit - running
        if free <= 0:
            return False
        waiting.sort()
        return key in {k for _, k in waiting[:free]}

    def _wake_queue(self, queue: str) -> None:
        """A slot of this queue became free: let the jobs waiting for one decide again."""
        for key in self.live_by_queue.get(queue, ()):
            if (self.cjobs[key].get("status") or {}).get("state") in (None, lifecycle.PENDING):
                self.queue.add(key)

    async def reconcile(self, key: Key) -> None:
        cjob = self.cjobs.get(key)
        if cjob is None:
            if key in self.adoptions:
                await self._adopt(key, self.adoptions[key])
            return
        now = datetime.now(UTC)
        spec = cjob.get("spec") or {}
        unresolved = spec.get("templateRef") and "command" not in spec
        if unresolved and (cjob.get("status") or {}).get("state") in (None, lifecycle.PENDING):
            await self._take_template(key, cjob, now)
            return
        jobs = self.jobs.get(key, {})
        state = (cjob.get("status") or {}).get("state")
        if state == lifecycle.RUNNING or state in lifecycle.FINAL_STATES:
            self.admitted.discard(key)
        if state in lifecycle.FINAL_STATES:
            return  # nothing left to do; a restart replays thousands of these
        admitted = state in (None, lifecycle.PENDING) and self._is_admitted(key, cjob)
        attempts = int((cjob.get("status") or {}).get("attempts") or 0)
        known = self.pod_problems.get(key)
        problem = known[1] if known and known[0] == attempts else None
        start_timeout = timedelta(seconds=self.config.pod_start_timeout_seconds)
        decision = lifecycle.decide(cjob, jobs, now, admitted, problem, start_timeout)
        if decision.create_attempt is not None:
            self.admitted.add(key)
        try:
            await self._execute(key, cjob, decision, now)
        except BaseException:
            if decision.create_attempt == 1:
                self.admitted.discard(key)
            raise

    async def _adopt(self, key: Key, job: dict[str, Any]) -> None:
        """Records a run that a CronJob started as a CommerceJob, and makes the Job that CommerceJob's attempt 1."""
        cron = self.cron_of_job(job)
        if cron is None:
            self.adoptions.pop(key, None)
            log.warning("%s/%s: a scheduled Job whose CommerceCronJob is gone; left alone", *key)
            return
        run = await asyncio.to_thread(self.api.create_commercejob, build_adopted_run(cron, job))
        await asyncio.to_thread(self.api.add_job_owner, job, run)
        self.adoptions.pop(key, None)
        log.info("%s/%s: scheduled run of %s recorded as a CommerceJob", key[0], key[1], cron["metadata"]["name"])

    async def _take_template(self, key: Key, cjob: dict[str, Any], now: datetime) -> None:
        """Copies the template's fields into the job, once, before it starts; the job then runs as any other."""
        namespace, name = key
        template_name = cjob["spec"]["templateRef"]["name"]
        template = await asyncio.to_thread(self.api.get_template, namespace, template_name)
        if template is None:
            status = lifecycle.template_not_found(cjob, template_name, now)
            if status is not None:
                event = ("Warning", "TemplateNotFound", status["message"])
                await self._write(key, cjob, status, event)
            if (status or {}).get("state") != lifecycle.FAILED:
                self.queue.add_after(key, 10)
            return
        fields = lifecycle.template_fields(cjob, template)
        metrics.template_resolved(fields)
        updated = await asyncio.to_thread(
            self.api.patch_spec, namespace, name, cjob["metadata"]["resourceVersion"], fields
        )
        self._cache_put(key, trim_commercejob(updated))
        self.queue.add(key)

    async def _execute(self, key: Key, cjob: dict[str, Any], decision: Decision, now: datetime) -> None:
        namespace, name = key
        if decision.verify_attempt is not None:
            expected = self._job_name(cjob, decision.verify_attempt)
            if expected is not None and await asyncio.to_thread(self.api.job_exists, namespace, expected):
                return  # created, not yet seen by the watch: its event will come
            decision = lifecycle.vanished(cjob, decision.verify_attempt, now)

        for job_name in decision.delete_jobs:
            await asyncio.to_thread(self.api.delete_job, namespace, job_name)

        status: dict[str, Any] = dict(decision.status or {})
        event: tuple[str, str, str] | None = None

        if decision.adopt is not None:
            status["jobName"] = decision.adopt
            self.jobs.setdefault(key, {}).setdefault(1, JobView(decision.adopt, 1))
            event = ("Normal", "Started", f"scheduled run: Job {decision.adopt} started by its CronJob")

        if decision.create_attempt is not None:
            refused: tuple[str, str] | None = None
            try:
                manifest = job_manifest(cjob, decision.create_attempt, self.config)
            except InvalidSpec as e:
                refused = (e.reason, str(e))
            else:
                try:
                    await asyncio.to_thread(self.api.create_job, manifest, cjob["metadata"]["uid"])
                except ForeignObject as e:
                    status = {"reason": "NameConflict", "message": str(e)}
                    event = ("Warning", "NameConflict", str(e))
                    await self._write(key, cjob, status, event)
                    raise
                except ApiException as e:
                    # The schema keeps env, volumes, resources ... free-form; the apiserver checks them in the Job.
                    # Its refusal is the user's to fix, not a reason to retry for ever.
                    if e.status not in (400, 422):
                        raise
                    refused = ("InvalidSpec", f"the apiserver refused the Job: {api_message(e)}")
            if refused is not None:
                status, event = self._refusal(cjob, decision.create_attempt, *refused, now)
            else:
                status["jobName"] = manifest["metadata"]["name"]
                # Known before the watch reports it, so the next decision does not ask the apiserver again. But a Job
                # that a killed operator created already may have ended and been reported: that view is kept, and
                # decided on again (no further event of it will come).
                views = self.jobs.setdefault(key, {})
                seen = views.setdefault(decision.create_attempt, JobView(status["jobName"], decision.create_attempt))
                if seen.complete or seen.failed:
                    self.queue.add(key)
                event = ("Normal", "Started", f"attempt {decision.create_attempt}: Job {status['jobName']} created")

        if decision.collect is not None:
            result = await asyncio.to_thread(
                self.api.attempt_result, namespace, decision.collect.name, self.config.output_max_bytes,
                self.pod_outcomes.get((namespace, decision.collect.name)),
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
            dependents = [build_dependent(cjob, item) for item in items]
            for dependent in dependents:
                await asyncio.to_thread(self.api.create_commercejob, dependent)
            status["dependents"] = [{"name": d["metadata"]["name"], "state": "Created"} for d in dependents]
        elif decision.cancel_dependents:
            status["dependents"] = canceled_tree(name, (cjob.get("spec") or {}).get("dependingJobs") or [])

        final = status.get("state")
        if final in STATE_EVENTS and event is None:
            event_type, reason = STATE_EVENTS[final]
            event = (event_type, reason, status.get("message", ""))

        if status:
            await self._write(key, cjob, status, event)
        if final in lifecycle.FINAL_STATES:
            self.admitted.discard(key)
            self._wake_queue((cjob.get("spec") or {}).get("queue", "default"))
        if decision.requeue_after is not None:
            self.queue.add_after(key, decision.requeue_after)

    @staticmethod
    def _refusal(
        cjob: dict[str, Any], attempt: int, reason: str, message: str, now: datetime
    ) -> tuple[dict[str, Any], tuple[str, str, str]]:
        """The job cannot run as written: Failed with the reason, no Job created, its dependents Canceled."""
        message = lifecycle.bounded_message(message)
        view = JobView("", attempt, failed=True, failure_reason=reason)
        status = lifecycle.final_status(cjob, lifecycle.FAILED, view, AttemptResult(None, "", False), now)
        status.update(reason=reason, message=message, attempts=0)
        status["conditions"][0].update(reason=reason, message=message)
        name = cjob["metadata"]["name"]
        status["dependents"] = canceled_tree(name, (cjob.get("spec") or {}).get("dependingJobs") or [])
        return status, ("Warning", reason, message)

    async def _write(
        self, key: Key, cjob: dict[str, Any], status: dict[str, Any], event: tuple[str, str, str] | None
    ) -> None:
        namespace, name = key
        updated = await asyncio.to_thread(
            self.api.patch_status, namespace, name, cjob["metadata"]["resourceVersion"], status
        )
        # The patch's answer is newer than the cache: keep it, so the next decision starts from it.
        self._cache_put(key, trim_commercejob(updated))
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


def _queue_of(cjob: dict[str, Any]) -> str:
    return str((cjob.get("spec") or {}).get("queue", "default"))


def _rv(obj: dict[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("resourceVersion", ""))


def _pod_problem(body: dict[str, Any]) -> PodProblem | None:
    status = body.get("status") or {}
    if status.get("phase") != "Pending":
        return None
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in STUCK_REASONS:
            message = f"container {container.get('name')}: {waiting['reason']}: {waiting.get('message', '')}"
            return PodProblem(waiting["reason"], message.rstrip(": "), datetime.now(UTC))
    return None
