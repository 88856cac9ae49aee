"""Whether the operator's watch streams work: the signal behind its liveness and readiness probes (probes.py).

kopf's liveness endpoint only proves that its HTTP server answers; its watches, when the apiserver is gone, retry for
ever in the background while the operator does nothing. So every LIST and WATCH request that kopf sends is traced
(an aiohttp TraceConfig on kopf's session) and its outcome is kept here, per resource:

- a request that failed (no connection, an error status) marks the resource failing, until one succeeds again;
- the watches are reopened at least every ``client_timeout`` seconds (kopf closes them), so a success older than
  that means the stream hangs.

The liveness probe fails once either has lasted ``grace`` seconds: a restart of the apiserver is not a reason to
restart the operator, an outage that lasts is. Readiness is stricter and immediate: every stream that kopf opens has
listed once (``unlisted``), and none fails right now (``failing``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp


@dataclass
class _Stream:
    succeeded_at: float
    failing_since: float | None = None
    last_error: str = ""
    listed: bool = True  # False until a request of this stream succeeded once


@dataclass
class WatchHealth:
    grace: float = 30.0
    client_timeout: float = 330.0
    streams: dict[str, _Stream] = field(default_factory=dict)
    # For the metrics: requests by (resource, verb, HTTP status or "error"), and watches opened again, by resource.
    requests: dict[tuple[str, str, str], int] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    _watched: set[str] = field(default_factory=set)

    def count(self, path: str, verb: str, code: str) -> None:
        key = (resource_of(path), verb, code)
        self.requests[key] = self.requests.get(key, 0) + 1
        if verb == "watch":
            if path in self._watched:
                self.restarts[key[0]] = self.restarts.get(key[0], 0) + 1
            self._watched.add(path)

    def resources(self) -> set[str]:
        return {resource_of(path) for path in self.streams}

    def failing_resources(self, now: float) -> list[tuple[str, str]]:
        """(resource, why) of each resource whose watch does not work; empty when they all do."""
        return [(resource_of(path), why) for path, why in self._problems(now)]

    def succeeded(self, path: str, now: float) -> None:
        self.streams[path] = _Stream(succeeded_at=now)

    def failed(self, path: str, now: float, error: str) -> None:
        stream = self.streams.setdefault(path, _Stream(succeeded_at=now, listed=False))
        if stream.failing_since is None:
            stream.failing_since = now
        stream.last_error = error

    def problems(self, now: float) -> list[str]:
        """Why the watches do not work, one line per resource; empty when they do."""
        return [f"{path}: {why}" for path, why in self._problems(now)]

    def _problems(self, now: float) -> list[tuple[str, str]]:
        found = []
        for path, stream in sorted(self.streams.items()):
            if stream.failing_since is not None and now - stream.failing_since >= self.grace:
                found.append((path, f"failing for {now - stream.failing_since:.0f}s: {stream.last_error}"))
            elif now - stream.succeeded_at >= self.client_timeout + self.grace:
                found.append((path, f"no watch (re)connected for {now - stream.succeeded_at:.0f}s"))
        return found

    def unlisted(self, expected: set[str]) -> list[str]:
        """The expected streams (URL paths) that have not listed their objects once yet."""
        return sorted(p for p in expected if p not in self.streams or not self.streams[p].listed)

    def failing(self) -> list[str]:
        """The streams whose last request failed, with its error: at once, without the grace of ``problems``."""
        return [f"{path}: {s.last_error}" for path, s in sorted(self.streams.items()) if s.failing_since is not None]

    def summary(self, now: float) -> dict[str, Any]:
        return {
            "streams": len(self.streams),
            "failing": sum(1 for s in self.streams.values() if s.failing_since is not None),
            "oldestConnectionSeconds": round(max((now - s.succeeded_at for s in self.streams.values()), default=0)),
        }


def resource_of(path: str) -> str:
    """The resource of a LIST or WATCH path (``/apis/batch/v1/namespaces/shop/jobs`` -> ``jobs``)."""
    return path.rstrip("/").rsplit("/", 1)[-1]


def _verb(query: Any) -> str:
    return "watch" if query.get("watch") == "true" else "list"


def is_list_or_watch(method: str, query: Any) -> bool:
    """kopf's LIST (paged: ``limit``) and WATCH (``watch=true``) requests; not its other calls (discovery, events)."""
    return method.upper() == "GET" and (query.get("watch") == "true" or "limit" in query)


def trace_config(health: WatchHealth) -> aiohttp.TraceConfig:
    async def on_end(_: aiohttp.ClientSession, __: SimpleNamespace, params: aiohttp.TraceRequestEndParams) -> None:
        if is_list_or_watch(params.method, params.url.query):
            health.count(params.url.path, _verb(params.url.query), str(params.response.status))
            if params.response.status < 400:
                health.succeeded(params.url.path, time.monotonic())
            else:
                health.failed(params.url.path, time.monotonic(), f"HTTP {params.response.status}")

    async def on_error(
        _: aiohttp.ClientSession, __: SimpleNamespace, params: aiohttp.TraceRequestExceptionParams
    ) -> None:
        if is_list_or_watch(params.method, params.url.query):
            health.count(params.url.path, _verb(params.url.query), "error")
            health.failed(params.url.path, time.monotonic(), f"{type(params.exception).__name__}: {params.exception}")

    config = aiohttp.TraceConfig()
    config.on_request_end.append(on_end)
    config.on_request_exception.append(on_error)
    return config
