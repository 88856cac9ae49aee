"""``/metrics`` over HTTP, on a port of its own (``commerce-jobs run --metrics HOST:PORT``).

Served by aiohttp on the operator's event loop rather than by prometheus-client's threaded server: the collectors
read the controller's cache, which only the event loop's thread may touch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from commerce_jobs.config import OperatorConfig
from commerce_jobs.http_site import serve_app
from commerce_jobs.metrics import Metrics

log = logging.getLogger("commerce_jobs.metrics")
DEFAULT_PORT = 8082


@dataclass(frozen=True)
class MetricsSettings:
    host: str
    port: int

    @classmethod
    def parse(cls, listen: str) -> MetricsSettings:
        """``HOST:PORT`` or ``PORT``."""
        host, _, port = listen.rpartition(":")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"--metrics: expected HOST:PORT or PORT, got {listen!r}")
        return cls(host or "0.0.0.0", int(port))  # noqa: S104  a pod's port


class MetricsServer:
    def __init__(self, settings: MetricsSettings, config: OperatorConfig) -> None:
        self.settings = settings
        self.metrics = Metrics(config)
        self._runner: web.AppRunner | None = None

    async def scrape(self, request: web.Request) -> web.Response:
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(self.metrics.registry), headers={"Content-Type": content_type})

    async def start(self) -> None:
        app = web.Application()
        app.add_routes([web.get("/metrics", self.scrape)])
        self._runner = await serve_app(app, self.settings.host, self.settings.port)
        log.info("metrics on http://%s:%d/metrics", self.settings.host, self.settings.port)

    async def stop(self) -> None:
        self.metrics.detach()
        if self._runner is not None:
            await self._runner.cleanup()
