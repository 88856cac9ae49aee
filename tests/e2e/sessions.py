"""aiohttp sessions on the test cluster, as the operator's own streams and calls open them (their ``Connect``)."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable

import aiohttp

from tests.conftest import Cluster


def connector(cluster: Cluster, token: str | None = None) -> Callable[[], Awaitable[tuple[aiohttp.ClientSession, str]]]:
    """Sessions with the test's admin credentials (a bearer token), or for the first one a token that the
    apiserver refuses, when ``token`` is given. ``connect.calls`` holds the token of each session made."""
    settings = cluster.api.configuration
    calls: list[str | None] = []

    async def connect() -> tuple[aiohttp.ClientSession, str]:
        context = ssl.create_default_context(cafile=settings.ssl_ca_cert)
        bad = token if not calls else None
        calls.append(bad)
        authorization = f"Bearer {bad}" if bad else settings.api_key["BearerToken"]
        headers = {"Authorization": authorization}
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context), headers=headers), settings.host

    connect.calls = calls  # type: ignore[attr-defined]
    return connect
