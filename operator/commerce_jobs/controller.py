"""The CommerceJob controller, in the order in which data flows through it: a cache fed by its own watch streams
(controller_streams.py, cache.py), queue admission (admission.py), a work queue of keys, workers that decide
(``lifecycle.decide`` and ``dependencies.decide``, pure) and act (actions.py: every API call; those of each job
on the event loop, jobcalls.py, the rest in threads), and the retention loop (retention_loop.py).

All cache reads and queue admissions happen on the event loop's thread, so two workers can never admit the same
free queue slot twice; only the threaded API calls leave it. What a worker learns from an API call goes into the
cache only if the cache has not moved on meanwhile: a CommerceJob deleted during the call is not brought back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from commerce_jobs import dependencies, lifecycle
from commerce_jobs.actions import JobActions
from commerce_jobs.admission import Admission, Standing, order_of, queue_of, standing
from commerce_jobs.cache import CachedJobs, JobCache, Key, owner_name, rv, trim_commercejob
from commerce_jobs.config import OperatorConfig
from commerce_jobs.dependencies import DependencyIndex
from commerce_jobs.events import EventRecorder
from commerce_jobs.fields import spec_of, state_of, status_of
from commerce_jobs.jobbuild import job_name
from commerce_jobs.jobcalls import JobCalls
from commerce_jobs.kubeapi import KubeApi
from commerce_jobs.podstart import pod_problem
from commerce_jobs.retention_loop import RetentionLoop
from commerce_jobs.workqueue import WorkQueue, serve

log = logging.getLogger("commerce_jobs.controller")

__all__ = ["CommerceJobController", "Key"]

# A parent's status.dependents follows its dependents with one write for several changes: a dependent that reached a
# final state is recorded within a second (its siblings that end meanwhile in the same write), one that started
# only if it still runs after a few seconds, so that a short dependent costs its parent one write, not two.
DEPENDENT_FINAL_DELAY = 1.0
DEPENDENT_PROGRESS_DELAY = 5.0


class CommerceJobController:
    def __init__(
        self,
        api: KubeApi,
        calls: JobCalls,
        config: OperatorConfig,
        workers: int = 16,
        cron_of_job: Callable[[dict[str, Any]], dict[str, Any] | None] = lambda job: None,
        run_changed: Callable[[str, str], None] = lambda namespace, cron: None,
    ) -> None:
        """``cron_of_job`` finds the CommerceCronJob of a CronJob's Job, ``run_changed`` hears of each event of a
        scheduled run (the cron controller's: cron_controller.controllers wires the two)."""
        self.api = api
        self.calls = calls
        self.config = config
        self.workers = workers
        self.cache = JobCache()
        self.admission: Admission[Key] = Admission(config.queue_limit)
        # spec.dependsOn both ways: a job that changes state wakes exactly the jobs that wait for it, never a scan.
        self.dependencies = DependencyIndex()
        self.queue: WorkQueue[Key] = WorkQueue()
        self.events = EventRecorder(calls.post_event)
        self.run_changed = run_changed
        self.retention = RetentionLoop(api, config, self.cache)
        self.actions = JobActions(
            api, calls, config, self.cache, self.queue, self.events,
            self._store_answer, self.retention.job_ended, cron_of_job,
        )  # fmt: skip
        # The read API of the cache (the console, the cron controller, the metrics).
        self.view = CachedJobs(self.cache, self.dependencies.waiting_for)
        self._tasks: list[asyncio.Task[None]] = []
        # Told (namespace, name) of every CommerceJob event, e.g. the console's live updates; they must not block
        # and read the cache only later (it is updated after them).
        self.listeners: list[Callable[[str, str], None]] = []

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The workers and the retention loop: each runs for ever, so one that is done has died."""
        return list(self._tasks)

    def sizes(self) -> dict[str, int]:
        """How many entries each cache, index and queue holds: all 0 once every CommerceJob is gone."""
        sizes = dict(self.cache.sizes())
        sizes.update({f"admission {k}": v for k, v in self.admission.sizes().items()})
        sizes.update(self.dependencies.sizes())
        sizes.update({f"workqueue {k}": v for k, v in self.queue.sizes().items()})
        sizes.update({"retention deleting": len(self.retention.deleting), "events pending": self.events.pending})
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
            self.retention.gone(meta.get("uid", ""))
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
            self.retention.job_ended(trimmed)

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
        state = state_of(cjob)
        if old is not None and state_of(old) == state:
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
            status = status_of(parent)
            recorded = next((d.get("state") for d in status.get("dependents") or [] if d.get("name") == name), None)
            if status.get("state") in lifecycle.FINAL_STATES and recorded != state:
                final = state in lifecycle.FINAL_STATES
                self.queue.add_after(
                    (namespace, parent_name), DEPENDENT_FINAL_DELAY if final else DEPENDENT_PROGRESS_DELAY
                )
            current = parent

    def _dependents_behind(self, key: Key, cjob: dict[str, Any]) -> bool:
        status = status_of(cjob)
        if not spec_of(cjob).get("dependingJobs"):
            return False
        return self.actions.dependents(key, cjob, status["state"]) != (status.get("dependents") or [])

    # -- workers --------------------------------------------------------------------------------------------------
    def start(self, synced: asyncio.Event | None = None) -> None:
        """Starts the workers and the retention loop; with ``synced``, they begin to act once it is set: when the
        watch streams have listed every object (controller_streams.py). Before that, a job could be admitted while
        the running jobs of its queue were not listed yet, and retention could delete a job that a job not listed
        yet waits for."""
        self.retention.prepare()

        async def when_synced(work: Callable[[], Awaitable[None]]) -> None:
            if synced is not None:
                await synced.wait()
            await work()

        def worker() -> Awaitable[None]:
            return serve(self.queue, self.reconcile, log)

        self._tasks = [
            asyncio.create_task(when_synced(worker), name=f"commercejob-worker-{i}") for i in range(self.workers)
        ]
        self._tasks.append(asyncio.create_task(when_synced(self.retention.run), name="retention"))
        self.events.start()
        # `kill -USR1 <pid>` logs the sizes of the caches: memory that a long-running operator holds, at a glance.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread, not POSIX
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, self.log_sizes)

    async def stop(self) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR1)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.events.stop()
        await self.calls.close()

    # -- one reconcile --------------------------------------------------------------------------------------------
    async def reconcile(self, key: Key) -> None:
        cjob = self.cache.get(key)
        if cjob is None:
            if key in self.cache.adoptions:
                await self.actions.adopt(key, self.cache.adoptions[key])
            return
        now = datetime.now(UTC)
        spec = spec_of(cjob)
        status = status_of(cjob)
        state = status.get("state")
        if state in lifecycle.FINAL_STATES:
            await self._sync_dependents(key, cjob)  # the only work a final job has
            return
        unresolved = spec.get("templateRef") and "command" not in spec
        if unresolved and state in (None, lifecycle.PENDING):
            await self.actions.take_template(key, cjob, now)
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
        await self.actions.execute(key, cjob, decision, now)

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
                await self.actions.record(key, cjob, waiting, None)
            if verdict.recheck_at is not None and key in self.cache.cjobs:
                self.queue.add_after(key, max(0.0, (verdict.recheck_at - now).total_seconds()))
            return
        status = dependencies.end_patch(cjob, verdict, now)
        if spec_of(cjob).get("dependingJobs"):
            status["dependents"] = self.actions.dependents(key, cjob, status["state"])
        await self.actions.record(key, cjob, status, ("Warning", verdict.reason, verdict.message))

    async def _sync_dependents(self, key: Key, cjob: dict[str, Any]) -> None:
        """Brings a final job's status.dependents in step with its dependents' states: one write for what changed."""
        status = status_of(cjob)
        if not spec_of(cjob).get("dependingJobs"):
            return
        dependents = self.actions.dependents(key, cjob, status["state"])
        if dependents != (status.get("dependents") or []):
            await self.actions.record(key, cjob, {"dependents": dependents}, None)
