"""The calls that every CommerceJob makes (create its attempt's Job, read its output, write its status, post its
Event), sent on the event loop through an aiohttp session instead of the kubernetes client in a thread.

Through the kubernetes client they were 43 % of the operator's CPU in the steady benchmark: each call built the
client's request models, went through urllib3, and was handed to a thread and back (the GIL twice). Here a call is a
JSON body (orjson), one request on a kept-alive connection, and its answer decoded once.

The semantics are those of the client's calls, so that the callers cannot tell: a refusal raises the client's
``ApiException`` (status, reason and the apiserver's Status as its body); a create that finds its Job tolerates 409
unless the Job is someone else's (``ForeignObject``); a status write on a stale resourceVersion is ``Conflict``. A
401 logs in again (a rotated ServiceAccount token) and a connection that the server closed is tried again, once each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from kubernetes.client.exceptions import ApiException

from commerce_jobs.api_names import API_VERSION, COMMERCEJOBS, CONTAINER, FIELD_MANAGER, GROUP, VERSION
from commerce_jobs.kubeapi import Conflict, foreign_job
from commerce_jobs.output import OutputTail, TailBuffer
from commerce_jobs.watchstream import Connect

log = logging.getLogger(__name__)

# No total: a long log is streamed for as long as it keeps coming.
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
# A kept-alive connection that the server closed meanwhile fails before anything was sent or read: sent again.
_CLOSED = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


def event_body(
    obj: dict[str, Any], kind: str, reason: str, message: str, event_type: str, now: datetime
) -> dict[str, Any]:
    """A core/v1 Event about ``obj``, as ``kubectl describe`` and ``kubectl get events`` show it."""
    meta = obj["metadata"]
    involved = {"apiVersion": API_VERSION, "kind": kind, "name": meta["name"], "namespace": meta["namespace"],
                "uid": meta["uid"]}  # fmt: skip
    if meta.get("resourceVersion"):
        involved["resourceVersion"] = meta["resourceVersion"]
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name'][:200]}.", "namespace": meta["namespace"]},
        "involvedObject": involved,
        "reason": reason,
        "message": message[:1024],
        "type": event_type,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "source": {"component": FIELD_MANAGER},
        "reportingComponent": f"{GROUP}/operator",
        "reportingInstance": FIELD_MANAGER,
    }


class JobCalls:
    def __init__(self, connect: Connect) -> None:
        self._connect = connect
        self._session: aiohttp.ClientSession | None = None
        self._server = ""
        self._connecting = asyncio.Lock()

    async def create_job(self, manifest: dict[str, Any], owner_uid: str) -> None:
        """Creates an attempt's Job; one that exists already is fine if it is this owner's (a create repeated after a
        crash), else ``ForeignObject``."""
        meta = manifest["metadata"]
        jobs = f"/apis/batch/v1/namespaces/{meta['namespace']}/jobs"
        try:
            await self._send("POST", jobs, manifest, JSON)
        except ApiException as e:
            if e.status != 409:
                raise
            existing = await self._send("GET", f"{jobs}/{meta['name']}")
            refusal = foreign_job(existing, manifest, owner_uid)
            if refusal is not None:
                raise refusal from e

    async def patch_status(
        self, namespace: str, name: str, resource_version: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """A merge patch of a CommerceJob's status, conditional on the resourceVersion that the decision was made
        from; its answer is the object as it is now."""
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{COMMERCEJOBS}/{name}/status"
        body = {"metadata": {"resourceVersion": resource_version}, "status": status}
        try:
            return await self._send("PATCH", path, body, MERGE_PATCH)
        except ApiException as e:
            if e.status == 409:
                raise Conflict(f"{namespace}/{name} changed") from e
            raise

    async def post_event(
        self, obj: dict[str, Any], kind: str, reason: str, message: str, event_type: str = "Normal"
    ) -> None:
        """Best effort: an Event that cannot be posted is logged, never retried."""
        meta = obj["metadata"]
        body = event_body(obj, kind, reason, message, event_type, datetime.now(UTC))
        try:
            await self._send("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body, JSON, answer=False)
        except ApiException as e:
            log.warning("could not post event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], e.reason)

    async def log_tail(self, namespace: str, pod: str, max_bytes: int) -> OutputTail | None:
        """The last ``max_bytes`` of the console container's log, streamed (never held whole); None when the
        container never ran or the pod is gone."""
        path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
        try:
            async with self._response("GET", path, params={"container": CONTAINER}) as response:
                buffer = TailBuffer(max_bytes)
                async for chunk in response.content.iter_chunked(64 * 1024):
                    buffer.add(chunk)
                return buffer.tail()
        except ApiException as e:
            if e.status in (400, 404):
                return None
            raise

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def _send(
        self, method: str, path: str, body: Any = None, content_type: str = JSON, answer: bool = True
    ) -> dict[str, Any]:
        data = None if body is None else orjson.dumps(body)
        params = {"fieldManager": FIELD_MANAGER} if method in ("POST", "PATCH") else None
        async with self._response(method, path, data, content_type, params) as response:
            content = await response.read()
        if not answer:
            return {}
        result = orjson.loads(content)
        if not isinstance(result, dict):
            raise TypeError(f"the apiserver answered {type(result).__name__}, not a JSON object")
        return result

    @contextlib.asynccontextmanager
    async def _response(
        self,
        method: str,
        path: str,
        data: bytes | None = None,
        content_type: str = JSON,
        params: dict[str, str] | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A successful response, its body not read yet; a refusal is raised as ``ApiException``."""
        headers = {"Accept": JSON, **({"Content-Type": content_type} if data is not None else {})}
        for attempt in (1, 2):
            session, server = await self._current()
            try:
                response = await session.request(
                    method, server + path, data=data, headers=headers, params=params, timeout=TIMEOUT
                )
            except _CLOSED:
                if attempt == 2:
                    raise
                continue
            async with response:
                if response.status == 401 and attempt == 1:
                    await self._forget(session)
                    continue
                if response.status >= 300:
                    raise _refusal(response, await response.read())
                yield response
                return
        raise AssertionError("unreachable: the second attempt yields or raises")

    async def _current(self) -> tuple[aiohttp.ClientSession, str]:
        async with self._connecting:
            if self._session is None or self._session.closed:
                self._session, server = await self._connect()
                self._server = server.rstrip("/")
            return self._session, self._server

    async def _forget(self, session: aiohttp.ClientSession) -> None:
        """Credentials refused: the next call logs in again (unless another call did so already)."""
        async with self._connecting:
            if self._session is session:
                self._session = None
        await session.close()


def _refusal(response: aiohttp.ClientResponse, content: bytes) -> ApiException:
    error = ApiException(status=response.status, reason=response.reason)
    error.body = content.decode("utf-8", "replace")
    return error
