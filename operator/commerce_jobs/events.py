"""Kubernetes Events, posted off the workers' path.

A job's next step never waits for its Event: the workers hold a job only for the calls that decide its state, and
Events, which are informational, go out from a bounded queue (client-go's recorders are asynchronous for the same
reason). Past ``max_pending``, new Events are dropped and counted rather than held in memory.

An Event may be held for a while first (``hold``): a later Event of the same object replaces it. An attempt's
"Started" is held so (startedEventHoldSeconds): console commands that end within that time (an index refresh, a
cache warm-up) then cost one Event, their end's, not two; Events were a third of the operator's writes to the
apiserver. What the dropped Event said stays in the status (startTime, jobName, attempts), and a command that runs
longer has its Started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingEvent:
    obj: dict[str, Any]
    kind: str
    reason: str
    message: str
    event_type: str


class EventRecorder:
    def __init__(
        self,
        post: Callable[[dict[str, Any], str, str, str, str], Awaitable[None]],
        senders: int = 2,
        max_pending: int = 1000,
    ) -> None:
        self._post = post
        self._senders = senders
        self._queue: asyncio.Queue[PendingEvent] = asyncio.Queue(max_pending)
        self._tasks: list[asyncio.Task[None]] = []
        self._held: dict[tuple[str, str], tuple[asyncio.TimerHandle, PendingEvent]] = {}
        self.dropped = 0

    def record(
        self, obj: dict[str, Any], kind: str, reason: str, message: str, event_type: str = "Normal", hold: float = 0
    ) -> None:
        """Posts an Event soon; with ``hold``, only after that many seconds, unless another Event of the same object
        comes meanwhile (which replaces it)."""
        key = _object_key(obj)
        held = self._held.pop(key, None)
        if held is not None:
            held[0].cancel()
        event = PendingEvent(obj, kind, reason, message, event_type)
        if hold > 0:
            timer = asyncio.get_running_loop().call_later(hold, self._release, key)
            self._held[key] = (timer, event)
            return
        self._enqueue(event)

    def _release(self, key: tuple[str, str]) -> None:
        held = self._held.pop(key, None)
        if held is not None:
            self._enqueue(held[1])

    def _enqueue(self, event: PendingEvent) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("events: %d dropped so far (the apiserver is slower than the jobs)", self.dropped)

    @property
    def pending(self) -> int:
        """Events not posted yet (held ones included)."""
        return self._queue.qsize() + len(self._held)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._send(), name=f"events-{i}") for i in range(self._senders)]

    async def stop(self, flush_seconds: float = 5.0) -> None:
        """Posts what is pending (held Events at once), for at most ``flush_seconds``, then stops."""
        for key in list(self._held):
            self._held[key][0].cancel()
            self._release(key)
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), flush_seconds)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _send(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._post(event.obj, event.kind, event.reason, event.message, event.event_type)
            except Exception:  # one Event that cannot be posted must not stop the others
                log.exception("events: posting %s failed", event.reason)
            finally:
                self._queue.task_done()


def _object_key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("uid") or meta.get("name") or "")
