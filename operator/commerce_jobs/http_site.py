"""The operator's three small HTTP servers (the probes, the metrics, the console) start the same way: here."""

from __future__ import annotations

from aiohttp import web


async def serve_app(app: web.Application, host: str, port: int, shutdown_timeout: float = 60.0) -> web.AppRunner:
    """Serves ``app`` on host:port, without an access log (it would show nothing useful) or signal handlers (the
    process has its own). A port that cannot be bound raises, with what was set up cleaned up."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
