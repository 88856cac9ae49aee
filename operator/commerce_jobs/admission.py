"""Queue admission: which CommerceJobs may start now (pure: no I/O, no clock).

A queue (``spec.queue``) runs at most ``maxRunning`` jobs at once. A job **holds** a slot from the moment it is
granted one until it is final or gone; a running job holds one too when no grant was ever made for it (a scheduled
run, which its CronJob started, or a job that an earlier operator started). Only a job that could start now
**waits** for a slot: one that waits for its ``executeAfter`` time or for its template, or that is canceled, is out
of the queue, so that it never holds back the jobs behind it. Free slots go to the waiting jobs by priority (higher
first), then creation time, then name: JMS's priority, then id.

Every change that frees a slot (a job final, deleted, canceled, or no longer able to start) grants it to the next
waiting job at once, and says which: the controller wakes exactly those jobs, not every job of the queue.

Cost: one heap per queue with lazy deletion, so a change costs O(log n) with n jobs waiting, however many there are
(JMSJobQueueBundle's issue #142: a loop of 70 s with 2,000 blocked jobs). Nothing sorts the waiting jobs: a job
that leaves or changes its order leaves a stale entry behind, skipped when it comes to the top, and the heap is
compacted whenever stale entries outnumber the live ones (after a grant, a removal, or a job that starts holding),
which is amortized O(1) a change. tests/unit/test_admission.py holds it against a full sort on every change.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from commerce_jobs.lifecycle import ADOPTED_JOB_ANNOTATION, FINAL_STATES, RUNNING, parse_time

K = TypeVar("K", bound=Hashable)
Order = tuple[int, str, str]  # (-priority, creationTimestamp, name): the smallest starts first


class Standing(enum.Enum):
    WAITS = "waits"  # could start now, and waits for a slot of its queue
    HOLDS = "holds"  # started (or starts regardless of its queue): it takes a slot
    OUT = "out"  # does not want a slot: final, canceled before it started, or waiting for its time or template


def queue_of(cjob: dict[str, Any]) -> str:
    return str((cjob.get("spec") or {}).get("queue", "default"))


def order_of(cjob: dict[str, Any]) -> Order:
    """Higher priority first, then first come, first served."""
    meta = cjob.get("metadata") or {}
    spec = cjob.get("spec") or {}
    return (-int(spec.get("priority", 0)), str(meta.get("creationTimestamp", "")), str(meta.get("name", "")))


def standing(cjob: dict[str, Any], now: datetime) -> Standing:
    """Where a CommerceJob stands in its queue at ``now``."""
    spec = cjob.get("spec") or {}
    status = cjob.get("status") or {}
    if status.get("state") in FINAL_STATES:
        return Standing.OUT
    if int(status.get("attempts") or 0) > 0 or status.get("state") == RUNNING:
        return Standing.HOLDS  # until it is final, canceled or not: its Job may still run
    if spec.get("cancel"):
        return Standing.OUT
    if ((cjob.get("metadata") or {}).get("annotations") or {}).get(ADOPTED_JOB_ANNOTATION):
        return Standing.HOLDS  # a scheduled run: its CronJob started it already
    if spec.get("templateRef") and "command" not in spec:
        return Standing.OUT  # its template is not copied in yet, and may not exist
    execute_after = parse_time(spec.get("executeAfter"))
    if execute_after is not None and now < execute_after:
        return Standing.OUT
    return Standing.WAITS


@dataclass
class _Queue(Generic[K]):
    holders: set[K] = field(default_factory=set)
    waiting: dict[K, Order] = field(default_factory=dict)
    # (order, sequence, key); an entry whose key waits no more, or waits with another order, is skipped when it
    # comes to the top (lazy deletion), and the heap is rebuilt once such entries outnumber the live ones.
    heap: list[tuple[Order, int, K]] = field(default_factory=list)


class Admission(Generic[K]):
    def __init__(self, limit: Callable[[str], int | None]) -> None:
        self._limit = limit
        self._queues: dict[str, _Queue[K]] = {}
        self._queue_of: dict[K, str] = {}
        self._sequence = 0  # ties of equal orders (the same name in two namespaces) never compare the keys

    def update(self, key: K, queue: str, standing: Standing, order: Order = (0, "", "")) -> list[K]:
        """Records where a job stands; returns the jobs that this change granted a slot (``key`` itself, when it
        may start now), which are to be woken."""
        if standing is Standing.OUT:
            return self.remove(key)
        granted: list[K] = []
        previous = self._queue_of.get(key)
        if previous is not None and previous != queue:
            granted += self.remove(key)  # never happens for a spec that cannot change; kept correct anyway
        self._queue_of[key] = queue
        q = self._queues.setdefault(queue, _Queue())
        if key in q.holders:
            return granted  # a granted slot is kept until the job is final or gone, whatever its cache says
        if standing is Standing.HOLDS:
            q.waiting.pop(key, None)
            q.holders.add(key)
            _compact(q)
            return granted
        if q.waiting.get(key) != order:
            q.waiting[key] = order
            self._sequence += 1
            heapq.heappush(q.heap, (order, self._sequence, key))
        return granted + self._grant(queue, q)

    def remove(self, key: K) -> list[K]:
        """The job wants no slot any more (final, deleted, waits for its time ...): a slot that it held goes to the
        next waiting job of its queue. Returns the jobs granted a slot."""
        queue = self._queue_of.pop(key, None)
        if queue is None:
            return []
        q = self._queues[queue]
        q.waiting.pop(key, None)
        held = key in q.holders
        q.holders.discard(key)
        granted = self._grant(queue, q) if held else []
        if not q.holders and not q.waiting:
            del self._queues[queue]
        else:
            _compact(q)  # thousands of waiting jobs canceled or deleted: their entries go without waiting for a grant
        return granted

    def holds(self, key: K) -> bool:
        """Whether the job holds a slot of its queue: only then may it start."""
        queue = self._queue_of.get(key)
        return queue is not None and key in self._queues[queue].holders

    def queues(self) -> Iterator[tuple[str, frozenset[K], list[K]]]:
        """Each queue with the jobs that hold its slots and those that wait for one (the metrics' view)."""
        for name, q in self._queues.items():
            yield name, frozenset(q.holders), list(q.waiting)

    def sizes(self) -> dict[str, int]:
        """Entries held, for a test or a gauge: every one belongs to a job that is neither final nor gone."""
        return {
            "queues": len(self._queues),
            "jobs": len(self._queue_of),
            "holding": sum(len(q.holders) for q in self._queues.values()),
            "waiting": sum(len(q.waiting) for q in self._queues.values()),
            "heap entries": sum(len(q.heap) for q in self._queues.values()),
        }

    def _grant(self, queue: str, q: _Queue[K]) -> list[K]:
        limit = self._limit(queue)
        granted: list[K] = []
        while q.waiting and (limit is None or len(q.holders) < limit):
            order, _, key = heapq.heappop(q.heap)
            if q.waiting.get(key) != order:
                continue  # stale: the job left, or waits with another order now
            del q.waiting[key]
            q.holders.add(key)
            granted.append(key)
        _compact(q)
        return granted


def _compact(q: _Queue[K]) -> None:
    """Drops the stale entries once they outnumber the live ones: O(n), at most once per n changes (amortized O(1))."""
    if len(q.heap) > 2 * len(q.waiting) + 64:
        q.heap = [entry for entry in q.heap if q.waiting.get(entry[2]) == entry[0]]
        heapq.heapify(q.heap)
