"""The retention loop: deletes the expired job trees that ``retention.plan`` (pure) finds in the controller's cache,
at most perCall a round. One loop for the whole operator; it sleeps until the next tree expires, or until a job ends
that could make a tree due sooner.

Planning walks the whole cache, so it runs only when it can find something new: a job that ends expires no sooner
than its own retention, and the tree around it no sooner than that, so an end after which nothing can be due before
the planned next expiry does not plan again (under steady load, with an hour's retention, that is every end)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

from commerce_jobs import lifecycle, metrics, retention
from commerce_jobs.cache import JobCache
from commerce_jobs.config import OperatorConfig
from commerce_jobs.dependencies import depends_on
from commerce_jobs.kubeapi import KubeApi

log = logging.getLogger("commerce_jobs.controller")
PLANNING_SHARE_INVERSE = 10  # a plan that took t seconds is followed by at least 10 t seconds without one


class RetentionLoop:
    def __init__(self, api: KubeApi, config: OperatorConfig, cache: JobCache) -> None:
        self.api = api
        self.config = config
        self.cache = cache
        self.deleting: set[str] = set()  # uids deleted by retention, until their DELETED event arrives
        # Set when a job reaches a final state that could make a tree due before ``_upcoming``: the loop plans again.
        self._changed: asyncio.Event | None = None
        self._upcoming: datetime | None = None  # the next expiry that the last plan found; None: plan at any end

    def prepare(self) -> None:
        """Called on the event loop before the loop runs: from then on, a job that ends wakes it."""
        self._changed = asyncio.Event()

    def job_ended(self, cjob: dict[str, Any]) -> bool:
        """``cjob`` reached a final state; returns whether the loop plans again for it."""
        if self._changed is None:
            return False
        expiry = None if self._upcoming is None else retention.expires_at(cjob, self.config.retention)
        # A job with dependsOn: the jobs that it waited for are no longer kept, and may be due now.
        if expiry is None or depends_on(cjob) or (self._upcoming is not None and expiry < self._upcoming):
            self._changed.set()
            return True
        return self._changed.is_set()

    def gone(self, uid: str) -> None:
        """A CommerceJob's DELETED event: it is no longer being deleted."""
        self.deleting.discard(uid)

    async def run(self) -> None:
        """Delete expired job trees, at most perCall a round, for ever."""
        changed = self._changed = self._changed or asyncio.Event()
        policy, interval = self.config.retention, self.config.retention_interval_seconds
        while True:
            changed.clear()
            self._upcoming = None  # until this round's plan is made and its trees deleted, any end plans again
            now = datetime.now(UTC)
            planning = time.monotonic()
            try:
                candidates = [j for j in self.cache.values() if j["metadata"]["uid"] not in self.deleting]
                due, upcoming = retention.plan(candidates, policy, now)
                planned_in = time.monotonic() - planning
            except Exception:  # a bad object must not end the clean-up for everyone
                log.exception("retention: planning failed; trying again in %.0fs", interval)
                await asyncio.sleep(interval)
                continue
            for expired in due[: policy.per_call]:
                await self._delete_expired(expired)
            if len(due) > policy.per_call:
                await asyncio.sleep(interval)  # a backlog: the next round after the interval, never sooner
                continue
            self._upcoming = upcoming
            timeout = max((upcoming - now).total_seconds(), 0.0) if upcoming else None
            with contextlib.suppress(TimeoutError):  # on time-out, the next tree expired
                await asyncio.wait_for(changed.wait(), timeout)
            # Plan at most once a second, and spend at most a tenth of the event loop's time on it: a restart
            # replays thousands of finished jobs, each of which may wake this loop, and planning walks the whole
            # cache (50,000 jobs: ~0.3 s on a busy core).
            pause = max(1.0, PLANNING_SHARE_INVERSE * planned_in)
            await asyncio.sleep(max(0.0, pause - (datetime.now(UTC) - now).total_seconds()))

    async def _delete_expired(self, expired: retention.Expired) -> None:
        meta = expired.root["metadata"]
        # Marked before the call: its DELETED event may arrive before the call returns, and unmarks it.
        self.deleting.add(meta["uid"])
        try:
            deleted = await asyncio.to_thread(self.api.delete_commercejob, meta["namespace"], meta["name"], meta["uid"])
        except Exception:
            self.deleting.discard(meta["uid"])
            log.exception("retention: deleting %s/%s failed", meta["namespace"], meta["name"])
            return
        cached = self.cache.get((meta["namespace"], meta["name"]))
        if not deleted or cached is None or cached["metadata"].get("uid") != meta["uid"]:
            self.deleting.discard(meta["uid"])  # gone already: no DELETED event is to come for it
        if deleted:
            metrics.retention_deleted(meta["namespace"], expired.tree_size)
            log.info(
                "retention: deleted %s/%s (%d job(s) in its tree, expired %s)", meta["namespace"], meta["name"],
                expired.tree_size, lifecycle.format_time(expired.expired_at),
            )  # fmt: skip
