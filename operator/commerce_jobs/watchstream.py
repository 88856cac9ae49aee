"""One resource's list-then-watch stream, straight from the apiserver's bytes to an observer (client-go's reflector,
in small). The controller's three busy streams (CommerceJobs, their Jobs, their pods) use it instead of kopf's
per-event machinery, which took 43 % of the operator's CPU in the steady benchmark (a task per object, handler
dispatch, body wrappers, and json's decoder) for what is, per event, one dictionary handed to the cache.

- The first LIST comes in pages; then a WATCH from the list's resourceVersion, with bookmarks, opened again from the
  last resourceVersion seen whenever the server ends it (every ``server_timeout`` seconds) or the connection breaks.
- 410 Gone (that resourceVersion is too old) lists again. An object that the new list lacks was deleted meanwhile:
  the observer is told DELETED, with the identity that it last had (name, uid, labels, owners).
- A 401 builds the session again from fresh credentials (a ServiceAccount's token is rotated).
- Every outcome goes to WatchHealth (the probes): a stream counts as listed once its whole first LIST was told,
  which is also when ``synced`` is set.

The observer is called on the event loop's thread, with ``None`` for a listed object (as kopf does) or the watch
event's type, and a plain dict that it may keep.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from commerce_jobs.watchhealth import WatchHealth

log = logging.getLogger("commerce_jobs.watchstream")

Observer = Callable[[str | None, dict[str, Any]], None]
# A new session on the apiserver, from fresh credentials, and the server's base URL.
Connect = Callable[[], Awaitable[tuple[aiohttp.ClientSession, str]]]

PAGE_SIZE = 500  # 10,000 finished jobs with their output tails, parsed at once, would be the operator's peak memory
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str

    def path(self, namespace: str | None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        return f"{base}/namespaces/{namespace}/{self.plural}" if namespace else f"{base}/{self.plural}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


class Gone(Exception):
    """The resourceVersion to watch from is too old (410): only a new LIST can go on."""


class Unauthorized(Exception):
    """401: the credentials expired."""


class HTTPError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text[:200]}")
        self.status = status


# What is kept of every object for a DELETED that only a new LIST reveals: (uid, labels, ownerReferences).
_Identity = tuple[str, dict[str, str] | None, list[dict[str, Any]] | None]


class WatchStream:
    def __init__(
        self,
        resource: Resource,
        namespace: str | None,
        observe: Observer,
        connect: Connect,
        health: WatchHealth,
        label_selector: str | None = None,
        server_timeout: int = 300,
        client_timeout: float = 330.0,
        connect_timeout: float = 30.0,
    ) -> None:
        self.resource = resource
        self.path = resource.path(namespace)
        self.observe = observe
        self.connect = connect
        self.health = health
        self.label_selector = label_selector
        self.server_timeout = server_timeout
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=client_timeout)
        self.synced = asyncio.Event()
        self.known: dict[tuple[str, str], _Identity] = {}
        self.resource_version = ""
        self._session: aiohttp.ClientSession | None = None
        self._server = ""

    async def run(self) -> None:
        """Lists and watches for ever; only cancelling it ends it."""
        backoff = BACKOFF_FIRST
        try:
            while True:
                try:
                    if self._session is None:
                        self._session, self._server = await self.connect()
                    if not self.resource_version:
                        await self._list()
                    await self._watch()
                    backoff = BACKOFF_FIRST  # the server ended a watch that worked: open it again at once
                    continue
                except Gone:
                    self.resource_version = ""
                    continue
                except Unauthorized:
                    await self._close()
                    self._fail("HTTP 401 (credentials renewed)")
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # the apiserver is away, a proxy cut the stream, an answer was not JSON ...
                    self._fail(f"{type(e).__name__}: {e}")
                    log.warning("%s: %s: %s; again in %.1fs", self.path, type(e).__name__, e, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
        finally:
            await self._close()

    # -- LIST -----------------------------------------------------------------------------------------------------
    async def _list(self) -> None:
        listed: set[tuple[str, str]] = set()
        continue_token = ""
        while True:
            params = {"limit": str(PAGE_SIZE)}
            if continue_token:
                params["continue"] = continue_token
            async with self._request(params, "list") as response:
                page = orjson.loads(await response.read())
            for item in page.get("items") or ():
                item.setdefault("kind", self.resource.kind)
                item.setdefault("apiVersion", self.resource.api_version)
                key = _key(item)
                before = self.known.get(key)
                if before is not None and before[0] != (item["metadata"].get("uid") or ""):
                    self.observe("DELETED", self._tombstone(key, before))  # replaced by a namesake meanwhile
                listed.add(self._remember(item))
                self.observe(None, item)
            metadata = page.get("metadata") or {}
            continue_token = metadata.get("continue") or ""
            if not continue_token:
                self.resource_version = metadata.get("resourceVersion") or ""
                break
        for key in [k for k in self.known if k not in listed]:  # deleted while nobody watched
            self.observe("DELETED", self._tombstone(key, self.known.pop(key)))
        self.health.succeeded(self.path, time.monotonic())
        self.synced.set()

    # -- WATCH ----------------------------------------------------------------------------------------------------
    async def _watch(self) -> None:
        params = {
            "watch": "true",
            "resourceVersion": self.resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self.server_timeout),
        }
        async with self._request(params, "watch") as response:
            self.health.succeeded(self.path, time.monotonic())
            async for line in _lines(response.content):
                self._event(orjson.loads(line))

    def _event(self, event: dict[str, Any]) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone(obj.get("message", ""))
            raise HTTPError(int(obj.get("code") or 500), obj.get("message", ""))
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self.resource_version = version
        if kind == "BOOKMARK":
            return
        key = self._remember(obj)
        if kind == "DELETED":
            self.known.pop(key, None)
        self.observe(kind, obj)

    # -- the connection ---------------------------------------------------------------------------------------------
    def _request(self, params: dict[str, str], verb: str) -> _Request:
        if self.label_selector:
            params["labelSelector"] = self.label_selector
        if self._session is None:
            raise ConnectionError("no session")
        return _Request(self, self._session.get(self._server + self.path, params=params, timeout=self.timeout), verb)

    def _fail(self, error: str) -> None:
        self.health.failed(self.path, time.monotonic(), error)

    async def _close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    # -- what is kept of each object ----------------------------------------------------------------------------------
    def _remember(self, obj: dict[str, Any]) -> tuple[str, str]:
        meta = obj.get("metadata") or {}
        key = _key(obj)
        self.known[key] = (meta.get("uid") or "", meta.get("labels"), meta.get("ownerReferences"))
        return key

    def _tombstone(self, key: tuple[str, str], identity: _Identity) -> dict[str, Any]:
        uid, labels, owners = identity
        meta: dict[str, Any] = {"namespace": key[0], "name": key[1], "uid": uid}
        if labels is not None:
            meta["labels"] = labels
        if owners is not None:
            meta["ownerReferences"] = owners
        return {"apiVersion": self.resource.api_version, "kind": self.resource.kind, "metadata": meta}


class _Request:
    """A request whose outcome is counted (WatchHealth's requests, for the metrics) and judged: 410, 401 and any
    other error status become exceptions."""

    def __init__(self, stream: WatchStream, request: Any, verb: str) -> None:
        self.stream, self.request, self.verb = stream, request, verb

    async def __aenter__(self) -> aiohttp.ClientResponse:
        health, path = self.stream.health, self.stream.path
        try:
            response: aiohttp.ClientResponse = await self.request.__aenter__()
        except Exception:
            health.count(path, self.verb, "error")
            raise
        health.count(path, self.verb, str(response.status))
        if response.status < 400:
            return response
        text = await response.text()
        await self.request.__aexit__(None, None, None)
        if response.status == 410:
            raise Gone(text)
        if response.status == 401:
            raise Unauthorized()
        raise HTTPError(response.status, text)

    async def __aexit__(self, *exc: Any) -> None:
        await self.request.__aexit__(*exc)


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


async def _lines(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The stream's lines, of any length (one event is one line; a CommerceJob with its output tail can be longer
    than aiohttp's line limit)."""
    buffer = b""
    async for chunk in content.iter_any():
        buffer += chunk
        if b"\n" not in chunk:
            continue
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer
