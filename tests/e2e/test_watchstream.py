"""The controller's own list-then-watch stream (watchstream.py) against the real apiserver: what it tells in what
order, an object longer than a line buffer, a new LIST after a gap (as after 410 Gone: it tells the deletions that it
missed), and credentials refused (401: a new session). ConfigMaps stand in for any resource: the stream is generic."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from kubernetes import client

from commerce_jobs.watchhealth import WatchHealth
from commerce_jobs.watchstream import Resource, WatchStream
from tests.conftest import Cluster
from tests.e2e.sessions import connector

CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap")


class Told(list[tuple[str | None, str, str]]):
    """What a stream told: (event type, name, uid), in order; a test waits until it holds what it expects."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def tell(self, event_type: str | None, name: str, uid: str) -> None:
        self.append((event_type, name, uid))
        self.changed.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(20):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


def stream_of(
    cluster: Cluster, namespace: str, told: Told, health: WatchHealth, token: str | None = None
) -> WatchStream:
    def observe(event_type: str | None, body: dict[str, Any]) -> None:
        told.tell(event_type, body["metadata"]["name"], body["metadata"]["uid"])

    return WatchStream(CONFIGMAPS, namespace, observe, connector(cluster, token), health, server_timeout=30)


def configmap(core: client.CoreV1Api, namespace: str, name: str, data: dict[str, str] | None = None) -> str:
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data=data or {"a": "1"})
    created = core.create_namespaced_config_map(namespace, body)
    return str(created.metadata.uid)  # type: ignore[union-attr]


def test_lists_then_tells_each_change_in_order(cluster: Cluster, core: client.CoreV1Api, namespace: str) -> None:
    before = configmap(core, namespace, "before")
    told = Told()
    health = WatchHealth()
    stream = stream_of(cluster, namespace, told, health)

    async def scenario() -> None:
        task = asyncio.create_task(stream.run())
        try:
            assert health.unlisted({stream.path}) == [stream.path]
            await asyncio.wait_for(stream.synced.wait(), 20)
            assert health.unlisted({stream.path}) == []
            assert (None, "before", before) in told
            after = await asyncio.to_thread(configmap, core, namespace, "after", {"big": "x" * 300_000})
            await asyncio.to_thread(core.delete_namespaced_config_map, "before", namespace)
            await told.until(lambda: ("DELETED", "before", before) in told)
            assert told.index(("ADDED", "after", after)) < told.index(("DELETED", "before", before))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_a_new_list_tells_what_was_missed(cluster: Cluster, core: client.CoreV1Api, namespace: str) -> None:
    kept, gone, replaced = (configmap(core, namespace, n) for n in ("kept", "gone", "replaced"))
    told = Told()
    stream = stream_of(cluster, namespace, told, WatchHealth())

    async def scenario() -> None:
        task = asyncio.create_task(stream.run())
        await asyncio.wait_for(stream.synced.wait(), 20)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        # While nobody watches: one is deleted, one replaced by a namesake, one created.
        await asyncio.to_thread(core.delete_namespaced_config_map, "gone", namespace)
        await asyncio.to_thread(core.delete_namespaced_config_map, "replaced", namespace)
        namesake = await asyncio.to_thread(configmap, core, namespace, "replaced")
        new = await asyncio.to_thread(configmap, core, namespace, "new")
        told.clear()
        # What a 410 Gone leaves (tests/unit/test_watchstream.py): no resourceVersion to watch from, so a new LIST.
        # (A real 410 needs etcd to compact the history away: minutes, not a test's seconds.)
        stream.resource_version = ""
        task = asyncio.create_task(stream.run())
        try:
            await told.until(lambda: ("DELETED", "gone", gone) in told and (None, "new", new) in told)
            assert ("DELETED", "replaced", replaced) in told
            assert told.index(("DELETED", "replaced", replaced)) < told.index((None, "replaced", namesake))
            assert (None, "kept", kept) in told
            assert [t for t in told if t[0] == "DELETED"] == [
                ("DELETED", "replaced", replaced),
                ("DELETED", "gone", gone),
            ]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_refused_credentials_are_renewed(cluster: Cluster, core: client.CoreV1Api, namespace: str) -> None:
    uid = configmap(core, namespace, "seen")
    told = Told()
    health = WatchHealth()
    stream = stream_of(cluster, namespace, told, health, token="not-a-valid-token")

    async def scenario() -> None:
        task = asyncio.create_task(stream.run())
        try:
            await asyncio.wait_for(stream.synced.wait(), 20)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert (None, "seen", uid) in told
    assert stream.connect.calls == ["not-a-valid-token", None]  # type: ignore[attr-defined]
    assert health.requests[("configmaps", "list", "401")] == 1
    assert health.failing() == []  # the list that followed succeeded
