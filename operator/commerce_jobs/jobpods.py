"""The pod of a batch Job that the operator and its tools read: the newest one (a Job's pod that was evicted or
deleted may be followed by another). One look-up for the operator (an attempt's exit code and output), the console
and the CLI (a running attempt's log)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from kubernetes import client

from commerce_jobs.api_names import JOB_NAME_LABEL
from commerce_jobs.fields import status_of

STARTED_PHASES = ("Running", "Succeeded", "Failed")  # a pod in one of these has a container that ran: it has a log


def newest_pod(pods: Iterable[dict[str, Any]], started_only: bool = False) -> dict[str, Any] | None:
    """The newest of a Job's pods (by creation time); with ``started_only``, the newest whose container started."""
    candidates = [p for p in pods if not started_only or status_of(p).get("phase") in STARTED_PHASES]
    if not candidates:
        return None
    return max(candidates, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")


def job_pods(core: client.CoreV1Api, namespace: str, job_name: str) -> list[dict[str, Any]]:
    """A Job's pods, as the apiserver sends them (unparsed: the client's models are slow to build)."""
    response: Any = core.list_namespaced_pod(
        namespace, label_selector=f"{JOB_NAME_LABEL}={job_name}", _preload_content=False
    )
    items: list[dict[str, Any]] = json.loads(response.data).get("items") or []
    return items


def started_pod(core: client.CoreV1Api, namespace: str, job_name: str) -> str | None:
    """The name of the newest pod of a Job whose container has started (only those have a log)."""
    pod = newest_pod(job_pods(core, namespace, job_name), started_only=True)
    return None if pod is None else str(pod["metadata"]["name"])
