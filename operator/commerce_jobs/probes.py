"""The operator's two probes, served on one port from the moment the process starts.

- **Liveness** (``--liveness`` URL, e.g. ``/healthz``): "restart me". It fails (500) only when a restart is the
  remedy: the acting replica's watches have been down for the grace period (watchhealth.py), or its workers stopped.
  A standby is alive. While the process starts (login, the first Lease read) it answers 503, as a port that does not
  listen yet would.
- **Readiness** (``/readyz`` on the same address): "I am working". The replica that acts (the Lease holder, or the only
  replica) is Ready once every watch stream that kopf opens has listed its objects and none is failing, and its workers
  run. ``helm install --wait`` and Argo CD's health therefore fail on an operator that cannot start or cannot watch.

  A **standby** is Ready when it sees the Lease renewed by a live holder (so that its Deployment with 2 replicas is
  Available while one of them acts), unless this process serves the jobs console: only the holder serves it, and the
  console's Service must send users to the holder alone. A standby behind a Lease that nobody renews (the holder
  crashed, or this is a restart of the only replica) is not Ready: nobody is working.

The verdicts are pure functions of a ``Snapshot`` (tested in tests/unit/test_probes.py); the runner builds the
snapshot from kopf's and the controllers' state.
"""

from __future__ import annotations

import enum
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web

from commerce_jobs.http_site import serve_app

READINESS_PATH = "/readyz"
Handler = Callable[[aiohttp.web.Request], Awaitable[aiohttp.web.Response]]


class Phase(enum.Enum):
    STARTING = "starting"  # before the Lease or the startup handlers
    STANDBY = "standby"  # waiting for the Lease that another replica holds
    ACTING = "acting"  # the controllers run
    STOPPING = "stopping"  # a clean stop is under way


@dataclass(frozen=True)
class Snapshot:
    phase: Phase
    serves_console: bool = False
    # Acting: liveness-grade watch problems (lasting the grace period), the streams that kopf opens but that have not
    # listed yet, the streams that fail right now, and whether every worker task runs.
    watch_problems: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)
    failing: list[str] = field(default_factory=list)
    workers_running: bool = False
    watch_summary: dict[str, Any] = field(default_factory=dict)
    # Standby: who holds the Lease, and whether that holder renewed it within a lease duration.
    lease_holder: str | None = None
    holder_renewing: bool = False


@dataclass(frozen=True)
class Verdict:
    ok: bool
    status: int
    body: dict[str, Any]


def liveness(s: Snapshot) -> Verdict:
    if s.phase is Phase.STARTING:
        return Verdict(False, 503, {"phase": s.phase.value})
    if s.phase is Phase.STANDBY:
        return Verdict(True, 200, {"leader": False})  # who holds the Lease: the readiness answer says
    if s.phase is Phase.STOPPING:
        return Verdict(True, 200, {"phase": s.phase.value})
    if s.watch_problems:
        return Verdict(False, 500, {"watches down": s.watch_problems})
    if not s.workers_running:
        return Verdict(False, 500, {"workers": "stopped"})
    return Verdict(True, 200, {"watches": s.watch_summary})


def readiness(s: Snapshot) -> Verdict:
    body: dict[str, Any] = {"phase": s.phase.value}
    reasons: list[str] = []
    if s.phase is Phase.STANDBY:
        body["holder"] = s.lease_holder
        if s.serves_console:
            reasons.append("a standby serves no console: only the Lease holder is Ready")
        elif not s.holder_renewing:
            reasons.append(f"the Lease's holder {s.lease_holder or '(none)'} is not seen renewing it: nobody may act")
    elif s.phase is Phase.ACTING:
        reasons += [f"not listed yet: {path}" for path in s.unlisted]
        reasons += [f"failing: {problem}" for problem in s.failing]
        if not s.workers_running:
            reasons.append("the workers do not run")
    else:
        reasons.append(s.phase.value)
    if reasons:
        return Verdict(False, 503, {**body, "ready": False, "reasons": reasons})
    return Verdict(True, 200, {**body, "ready": True})


def parse_endpoint(endpoint: str) -> tuple[str, int, str]:
    """(host, port, liveness path) of the ``--liveness`` URL, e.g. http://0.0.0.0:8080/healthz."""
    parts = urllib.parse.urlsplit(endpoint)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not port or parts.query or parts.fragment:
        raise ValueError(f"the probes' address must be http://HOST:PORT/PATH, not {endpoint!r}")
    path = parts.path or "/healthz"
    if path == READINESS_PATH:
        raise ValueError(f"the liveness path cannot be {READINESS_PATH}: the readiness probe answers there")
    return parts.hostname or "localhost", port, path


async def serve(endpoint: str, snapshot: Callable[[], Snapshot]) -> aiohttp.web.AppRunner:
    """Serves the liveness probe at the endpoint's path and the readiness probe at /readyz, on its host and port."""
    host, port, liveness_path = parse_endpoint(endpoint)

    def handler(judge: Callable[[Snapshot], Verdict]) -> Handler:
        async def answer(_: aiohttp.web.Request) -> aiohttp.web.Response:
            verdict = judge(snapshot())
            return aiohttp.web.json_response(verdict.body, status=verdict.status)

        return answer

    app = aiohttp.web.Application()
    app.add_routes(
        [aiohttp.web.get(liveness_path, handler(liveness)), aiohttp.web.get(READINESS_PATH, handler(readiness))]
    )
    return await serve_app(app, host, port, shutdown_timeout=1.0)
