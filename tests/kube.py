"""Test helpers that wait on the apiserver through watches, never by sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException


def wait_for(
    list_fn: Callable[..., Any],
    name: str,
    predicate: Callable[[Any], bool],
    timeout: float = 60,
    **list_kwargs: Any,
) -> Any:
    """Returns the object called ``name`` as soon as ``predicate`` holds for it.

    Lists once (the object may already be there), then watches from that list's resourceVersion, so that no change
    is missed between the two. ``list_fn`` is a list call of the kubernetes client, e.g.
    ``batch.list_namespaced_job`` with ``namespace=...``, or a ``functools.partial`` of a custom-objects list call
    (whose watch then yields plain dicts).
    """
    deadline = time.monotonic() + timeout
    selector = f"metadata.name={name}" if name else None  # no name: the first object of the list that matches
    last = None
    while (remaining := deadline - time.monotonic()) > 0:
        listed = list_fn(field_selector=selector, **list_kwargs)
        items, resource_version = _items_and_version(listed)
        for item in items:
            last = item
            if predicate(item):
                return item
        stream = watch.Watch().stream(
            list_fn,
            field_selector=selector,
            resource_version=resource_version,
            timeout_seconds=max(1, int(remaining)),
            **list_kwargs,
        )
        try:
            for event in stream:
                if event["type"] in ("ADDED", "MODIFIED"):
                    last = event["object"]
                    if predicate(last):
                        return last
        except ApiException as e:
            if e.status != 410:  # an expired resourceVersion: list again
                raise
    raise TimeoutError(f"{name or 'no object'} did not reach the expected state in {timeout}s; last seen: {last}")


def wait_deleted(list_fn: Callable[..., Any], name: str, timeout: float = 60, **list_kwargs: Any) -> None:
    """Returns once the object called ``name`` is gone (it may be gone already)."""
    deadline = time.monotonic() + timeout
    selector = f"metadata.name={name}"
    while (remaining := deadline - time.monotonic()) > 0:
        items, resource_version = _items_and_version(list_fn(field_selector=selector, **list_kwargs))
        if not items:
            return
        stream = watch.Watch().stream(
            list_fn, field_selector=selector, resource_version=resource_version,
            timeout_seconds=max(1, int(remaining)), **list_kwargs,
        )  # fmt: skip
        try:
            for event in stream:
                if event["type"] == "DELETED":
                    return
        except ApiException as e:
            if e.status != 410:
                raise
    raise TimeoutError(f"{name} still exists after {timeout}s")


def _items_and_version(listed: Any) -> tuple[list[Any], str]:
    """A typed list (core, batch) or a plain dict (custom objects)."""
    if isinstance(listed, dict):
        return listed["items"], listed["metadata"].get("resourceVersion", "")
    return listed.items, listed.metadata.resource_version


def condition(obj: Any, kind: str) -> Any | None:
    for cond in (obj.status and obj.status.conditions) or []:
        if cond.type == kind:
            return cond
    return None


def has_condition(kind: str, status: str = "True") -> Callable[[Any], bool]:
    def check(obj: Any) -> bool:
        found = condition(obj, kind)
        return found is not None and found.status == status

    return check
