"""What makes the console live: the controller's CommerceJob events fanned out to the open pages, and a running
pod's log followed in a thread of its own (the kubernetes client blocks)."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import threading
from collections.abc import AsyncGenerator
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from commerce_jobs.api_names import CONTAINER

Key = tuple[str, str]


class Subscriber:
    def __init__(self) -> None:
        self.keys: set[Key] = set()
        self.event = asyncio.Event()

    async def changes(self, within: float) -> set[Key]:
        """The jobs that changed since the last call; empty after ``within`` seconds without a change."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), within)
        keys, self.keys = self.keys, set()
        self.event.clear()
        return keys


class Changes:
    """A listener of the controller (called on the event loop for every CommerceJob event): it only records which
    job changed; each page's event stream renders from the cache afterwards, at its own pace."""

    def __init__(self) -> None:
        self._subscribers: set[Subscriber] = set()
        self.version = 0  # counts the events: what was computed from the cache at one version can be reused

    def __call__(self, namespace: str, name: str) -> None:
        self.version += 1
        for subscriber in self._subscribers:
            subscriber.keys.add((namespace, name))
            subscriber.event.set()

    def subscribe(self) -> Subscriber:
        subscriber = Subscriber()
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    def __len__(self) -> int:
        return len(self._subscribers)


async def follow_log(core: client.CoreV1Api, namespace: str, pod: str, idle: float = 15.0) -> AsyncGenerator[str]:
    """The pod's log as it is written, until it ends or the caller closes the iterator (a page closed); an empty
    string after ``idle`` seconds without output, so that the caller can check its page is still there."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    try:
        response: Any = await asyncio.to_thread(
            core.read_namespaced_pod_log, pod, namespace, container=CONTAINER, follow=True, _preload_content=False
        )
    except ApiException:
        return
    stopped = threading.Event()

    def copy() -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character may span two chunks
        try:
            for chunk in response.stream(4096):
                if stopped.is_set():
                    return
                loop.call_soon_threadsafe(queue.put_nowait, decoder.decode(chunk))
        except Exception:  # noqa: S110  the stream was shut down or broke: the follower just ends
            pass
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(queue.put_nowait, None)

    # A daemon thread of its own, not the shared executor: a log can stay open for hours.
    threading.Thread(target=copy, name=f"console-log-{pod}", daemon=True).start()
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(queue.get(), idle)
            except TimeoutError:
                yield ""
                continue
            if chunk is None:
                return
            yield chunk
    finally:
        stopped.set()
        # Unblocks the thread's read from here (urllib3's shutdown is meant to be called from another thread).
        with contextlib.suppress(Exception):
            response.shutdown()
