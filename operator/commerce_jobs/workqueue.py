"""A work queue of object keys, as in client-go: each key is queued at most once, is never processed by two workers
at the same time, and a key that changes while it is processed is processed again afterwards.

Watch events only add keys; workers reconcile from the cache. So a burst of events for one object costs one
reconcile, and a failed reconcile is retried with a per-key exponential backoff instead of being lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)


class QueueObserver(Protocol):
    """What the metrics learn of a queue (metrics.QueueMetrics); a queue without one measures nothing."""

    def added(self) -> None: ...
    def waited(self, seconds: float) -> None: ...
    def retried(self) -> None: ...
    def reconciled(self, seconds: float, result: str, error: BaseException | None = None) -> None: ...


class WorkQueue(Generic[K]):
    def __init__(self, base_delay: float = 0.5, max_delay: float = 300.0) -> None:
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._queued: set[K] = set()
        self._processing: set[K] = set()
        self._dirty: set[K] = set()
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._failures: dict[K, int] = {}
        self._base_delay = base_delay
        self._max_delay = max_delay
        self.observer: QueueObserver | None = None
        self._added_at: dict[K, float] = {}  # when each queued key was added (only with an observer)

    def __len__(self) -> int:
        return len(self._queued)

    def add(self, key: K) -> None:
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)
            if self.observer is not None:
                self._added_at[key] = time.monotonic()
                self.observer.added()

    def add_after(self, key: K, delay: float) -> None:
        """Adds the key after a delay; an earlier wake-up already planned for the key wins."""
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        timer = self._timers.get(key)
        if timer is not None and not timer.cancelled() and timer.when() <= when:
            return
        if timer is not None:
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def retry(self, key: K) -> float:
        """Re-adds a key whose processing failed, after an exponential backoff. Returns the delay."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        if self.observer is not None:
            self.observer.retried()
        delay = float(min(self._base_delay * 2**failures, self._max_delay))
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """Clears a key's failure count after it was processed successfully."""
        self._failures.pop(key, None)

    def discard(self, key: K) -> None:
        """Drops every trace of a key whose object is gone."""
        self._failures.pop(key, None)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    async def get(self) -> K:
        key = await self._queue.get()
        self._queued.discard(key)
        self._processing.add(key)
        if self.observer is not None:
            now = time.monotonic()
            self.observer.waited(now - self._added_at.pop(key, now))
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def sizes(self) -> dict[str, int]:
        """Keys held, for a test or a gauge: queued, being processed, to process again, waiting for a timer, and
        with a failure count."""
        return {
            "queued": len(self._queued),
            "processing": len(self._processing),
            "dirty": len(self._dirty),
            "timers": len(self._timers),
            "failures": len(self._failures),
        }


class Requeue(Exception):
    """Raised by a reconcile to look at the key again soon, without counting a failure (e.g. a write conflict)."""


class RetryLater(Exception):
    """Raised by a reconcile that must wait for something to happen elsewhere (e.g. the garbage collector to
    delete an old object): retried with the key's backoff, as a failure, but logged as one line."""


async def serve(queue: WorkQueue[K], reconcile: Callable[[K], Awaitable[None]], log: logging.Logger) -> None:
    """One worker: takes keys for ever; a failure is logged and retried with the key's backoff."""
    while True:
        key = await queue.get()
        started, result = time.monotonic(), "success"
        error: Exception | None = None
        try:
            await reconcile(key)
        except Requeue:
            result = "requeue"
            queue.add_after(key, 0.2)
        except RetryLater as e:
            result, error = "error", e  # retried with the backoff, as a failure
            delay = queue.retry(key)
            log.warning("%s: %s; trying again in %.1fs", _name(key), e, delay)
        except Exception as e:
            result, error = "error", e
            delay = queue.retry(key)
            log.exception("reconciling %s failed; retrying in %.1fs", _name(key), delay)
        else:
            queue.forget(key)
        finally:
            queue.done(key)
            if queue.observer is not None:
                queue.observer.reconciled(time.monotonic() - started, result, error)


def _name(key: Hashable) -> str:
    return "/".join(map(str, key)) if isinstance(key, tuple) else str(key)
