"""Leader election with a coordination.k8s.io/v1 Lease: of several operator replicas, only the holder acts.

The holder renews the Lease every ``retry_period``; the others read it as often, and take it over only once it has not
changed for ``duration`` by their own clock (never comparing clocks of two machines, as client-go does). A holder
that could not renew for ``renew_deadline`` (< ``duration``) stops acting at once: the process exits, before another
replica may take over, and Kubernetes restarts it as a candidate.

Even if two replicas did act at once (a paused VM, a clock that jumps), no attempt runs twice: a Job is named
``<cjob>-<attempt>``, so a second creation fails, and every status write carries a resourceVersion precondition, so
the slower of two writers gets a conflict and decides again from the newer state.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("commerce_jobs.leader")

LOST_EXIT_CODE = 3  # the operator's exit code when it lost its Lease


@dataclass(frozen=True)
class LeaseTimings:
    duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.duration:
            raise ValueError("lease timings need 0 < retry period < renew deadline < duration")


def default_identity() -> str:
    """The pod's name (its hostname) and a suffix of this process: a restarted container is a new candidate."""
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"


def may_take(holder: str | None, identity: str, unchanged_for: float, duration: float) -> bool:
    """Whether this candidate may write itself as the holder: it already holds it, nobody does, or the holder has
    not renewed for a whole lease duration (as this candidate's clock measures)."""
    return not holder or holder == identity or unchanged_for >= duration


@dataclass(frozen=True)
class LeaderSettings:
    """Which Lease the replicas share (``commerce-jobs run --leader-elect``), and its timings."""

    namespace: str
    name: str
    timings: LeaseTimings


class LeaderElection:
    def __init__(self, api: client.ApiClient, namespace: str, name: str, identity: str, timings: LeaseTimings) -> None:
        self.leases = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity, self.timings = namespace, name, identity, timings
        self._observed: tuple[str | None, str | None] | None = None  # (holder, resourceVersion) last read
        self._observed_at = time.monotonic()
        self._written_at: float | None = None  # when this candidate last saw the Lease change: someone wrote it
        self._renewed_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self.lost = False  # another replica holds the Lease that this one held

    @property
    def holder(self) -> str | None:
        """The holder that this candidate read last (None before the first read, or when nobody holds it)."""
        return self._observed[0] if self._observed else None

    def holder_renewing(self) -> bool:
        """Whether another replica holds the Lease and this candidate saw it renewed within the renew deadline: a live
        holder acts. Each renewal changes the Lease's resourceVersion. One read proves nothing (a holder that crashed
        left the same record), so it takes a change; and a holder that could not renew for the renew deadline has
        stopped acting (it exits), so an older change does not count."""
        holder = self.holder
        return (
            bool(holder) and holder != self.identity and self._written_at is not None
            and time.monotonic() - self._written_at < self.timings.renew_deadline
        )  # fmt: skip

    # -- blocking calls (run in threads) --------------------------------------------------------------------------
    def try_acquire_or_renew(self) -> bool:
        now = datetime.now(UTC)
        timeout = self.timings.retry_period * 2
        try:
            lease = self.leases.read_namespaced_lease(self.name, self.namespace, _request_timeout=timeout)
        except ApiException as e:
            if e.status != 404:
                raise
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=self._spec(client.V1LeaseSpec(lease_transitions=0), now, taking=True),
            )
            try:
                self.leases.create_namespaced_lease(self.namespace, body, _request_timeout=timeout)
            except ApiException as e2:
                if e2.status == 409:  # another candidate created it first
                    return False
                raise
            return True
        spec = lease.spec or client.V1LeaseSpec()
        holder = spec.holder_identity
        record = (holder, (lease.metadata or client.V1ObjectMeta()).resource_version)
        if record != self._observed:
            if self._observed is not None:
                self._written_at = time.monotonic()
            self._observed, self._observed_at = record, time.monotonic()
        if not may_take(holder, self.identity, time.monotonic() - self._observed_at, self.timings.duration):
            self.lost = self._renewed_at > 0
            return False
        lease.spec = self._spec(spec, now, taking=holder != self.identity)
        try:
            # A replace carries the resourceVersion just read: of two candidates, only one succeeds.
            self.leases.replace_namespaced_lease(self.name, self.namespace, lease, _request_timeout=timeout)
        except ApiException as e:
            if e.status == 409:
                return False
            raise
        return True

    def _spec(self, spec: client.V1LeaseSpec, now: datetime, taking: bool) -> client.V1LeaseSpec:
        if taking:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + (1 if spec.holder_identity else 0)
        spec.holder_identity = self.identity
        spec.renew_time = now
        spec.lease_duration_seconds = max(1, round(self.timings.duration))
        return spec

    def release_now(self) -> None:
        """Gives the Lease up, so that a candidate takes it at its next read instead of after a lease duration."""
        lease = self.leases.read_namespaced_lease(self.name, self.namespace, _request_timeout=5)
        if lease.spec is None or lease.spec.holder_identity != self.identity:
            return
        lease.spec.holder_identity = None
        lease.spec.lease_duration_seconds = 1
        self.leases.replace_namespaced_lease(self.name, self.namespace, lease, _request_timeout=5)

    # -- the loops ------------------------------------------------------------------------------------------------
    async def _attempt(self) -> bool:
        try:
            return await asyncio.to_thread(self.try_acquire_or_renew)
        except Exception as e:  # the apiserver is away, a timeout: try again at the next period
            log.warning("lease %s/%s: %s: %s", self.namespace, self.name, type(e).__name__, e)
            return False

    async def acquire(self) -> None:
        """Returns once this replica holds the Lease."""
        waiting = False
        while not await self._attempt():
            if not waiting:
                waiting = True
                log.info("lease %s/%s held by %s; standing by", self.namespace, self.name, (self._observed or ("",))[0])
            await asyncio.sleep(self.timings.retry_period)
        self._renewed_at = time.monotonic()
        log.info("lease %s/%s acquired by %s: this replica acts", self.namespace, self.name, self.identity)

    def start_renewing(self) -> None:
        self._task = asyncio.create_task(self._renew(), name="lease-renewal")

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.timings.retry_period)
            if await self._attempt():
                self._renewed_at = time.monotonic()
            elif self.lost or time.monotonic() - self._renewed_at >= self.timings.renew_deadline:
                log.error(
                    "lease %s/%s %s: stopping at once", self.namespace, self.name,
                    "taken by another replica" if self.lost else
                    f"not renewed for {time.monotonic() - self._renewed_at:.0f}s, before another replica takes over",
                )  # fmt: skip
                _exit_lost()
                return

    async def stop(self) -> None:
        """At a clean stop, after the workers stopped: no more renewals, and the Lease is given up."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await asyncio.to_thread(self.release_now)
            log.info("lease %s/%s released", self.namespace, self.name)
        except Exception as e:
            log.warning("lease %s/%s not released (%s); it expires after %.0fs", self.namespace, self.name, e,
                        self.timings.duration)  # fmt: skip


def _exit_lost() -> None:
    # No clean-up: another replica may take over from now on, so this one must not act a moment longer.
    logging.shutdown()
    os._exit(LOST_EXIT_CODE)
