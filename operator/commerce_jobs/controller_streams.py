"""The CommerceJob controller's watch streams (watchstream.py), in the order a start needs: the Jobs and pods first,
then the CommerceJobs, so that a job's first reconcile already sees its attempts and their pods; ``synced`` is set
once all three have listed everything (client-go's WaitForCacheSync), and the controller's workers wait for it."""

from __future__ import annotations

import asyncio
import contextlib

from commerce_jobs.api_names import COMMERCEJOB, COMMERCEJOBS, GROUP, MANAGED_BY, VERSION
from commerce_jobs.controller import CommerceJobController
from commerce_jobs.watchhealth import WatchHealth
from commerce_jobs.watchstream import Connect, Observer, Resource, WatchStream

JOBS = Resource("batch", "v1", "jobs", "Job")
PODS = Resource("", "v1", "pods", "Pod")
COMMERCE_JOBS = Resource(GROUP, VERSION, COMMERCEJOBS, COMMERCEJOB)
# Only the Jobs and pods that the operator made are streamed to it.
MANAGED = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())


class ControllerStreams:
    def __init__(
        self,
        controller: CommerceJobController,
        namespaces: list[str],
        connect: Connect,
        health: WatchHealth,
        server_timeout: int,
        client_timeout: float,
        connect_timeout: float,
    ) -> None:
        def stream(resource: Resource, namespace: str | None, observe: Observer, selector: str | None) -> WatchStream:
            return WatchStream(
                resource, namespace, observe, connect, health, selector, server_timeout, client_timeout, connect_timeout
            )

        served: list[str | None] = list(namespaces) or [None]  # None: every namespace
        self.first = [stream(JOBS, ns, controller.observe_job, MANAGED) for ns in served]
        self.first += [stream(PODS, ns, controller.observe_pod, MANAGED) for ns in served]
        self.then = [stream(COMMERCE_JOBS, ns, controller.observe_commercejob, None) for ns in served]
        self.synced = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def paths(self) -> set[str]:
        """The URL paths of the streams: readiness waits until each has listed."""
        return {s.path for s in (*self.first, *self.then)}

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The streams' tasks: each runs for ever, so one that is done has died."""
        return list(self._tasks)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(s.run(), name=f"watch {s.path}") for s in self.first]
        self._tasks.append(asyncio.create_task(self._then(), name="watch commercejobs"))

    async def _then(self) -> None:
        await asyncio.gather(*(s.synced.wait() for s in self.first))
        tasks = [asyncio.create_task(s.run(), name=f"watch {s.path}") for s in self.then]
        try:
            await asyncio.gather(*(s.synced.wait() for s in self.then))
            self.synced.set()
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)
