"""The watch stream's reading of the apiserver's answers (watchstream.py): an ERROR event, a BOOKMARK, and lines
split anywhere across the chunks of the HTTP body. Its behaviour against the real apiserver:
tests/e2e/test_watchstream.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from commerce_jobs.watchhealth import WatchHealth
from commerce_jobs.watchstream import Gone, HTTPError, Resource, WatchStream, _lines


def stream(told: list[tuple[str | None, dict[str, Any]]]) -> WatchStream:
    async def connect() -> Any:
        raise AssertionError("no connection in a unit test")

    return WatchStream(
        Resource("", "v1", "pods", "Pod"), "shop", lambda t, b: told.append((t, b)), connect, WatchHealth()
    )


def pod(name: str, version: str, uid: str = "u1") -> dict[str, Any]:
    return {"metadata": {"namespace": "shop", "name": name, "uid": uid, "resourceVersion": version}}


def test_a_410_error_event_means_list_again() -> None:
    s = stream([])
    with pytest.raises(Gone):
        s._event({"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old resource version"}})
    with pytest.raises(HTTPError):
        s._event({"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "etcd"}})


def test_events_move_the_resource_version_and_bookmarks_tell_nothing() -> None:
    told: list[tuple[str | None, dict[str, Any]]] = []
    s = stream(told)
    s._event({"type": "ADDED", "object": pod("a", "10")})
    s._event({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}})
    assert s.resource_version == "15"
    s._event({"type": "DELETED", "object": pod("a", "16")})
    assert [t for t, _ in told] == ["ADDED", "DELETED"]
    assert s.known == {}  # a deleted object is forgotten: a later LIST cannot tell its deletion twice


def test_lines_are_whole_whatever_the_chunks() -> None:
    class Content:
        async def iter_any(self) -> Any:
            for chunk in (b'{"a":', b'1}\n{"b"', b":2}\n\n", b'{"c":3}\n{"d":', b"4}"):
                yield chunk

    async def read() -> list[bytes]:
        return [line async for line in _lines(Content())]  # type: ignore[arg-type]

    assert asyncio.run(read()) == [b'{"a":1}', b'{"b":2}', b'{"c":3}', b'{"d":4}']
