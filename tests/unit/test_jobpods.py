"""Which pod of a Job is read (jobpods.py): the newest one, also when the apiserver lists an older one first."""

from __future__ import annotations

from typing import Any

from commerce_jobs.jobpods import newest_pod


def pod(name: str, created: str, phase: str = "Running") -> dict[str, Any]:
    return {"metadata": {"name": name, "creationTimestamp": created}, "status": {"phase": phase}}


def test_the_newest_pod_is_read_not_the_first_listed() -> None:
    pods = [pod("old", "2026-01-01T00:00:01Z", "Failed"), pod("new", "2026-01-01T00:00:09Z", "Failed"),
            pod("middle", "2026-01-01T00:00:05Z", "Succeeded")]  # fmt: skip
    assert newest_pod(pods) == pods[1]
    assert newest_pod(pods, started_only=True) == pods[1]


def test_only_started_pods_have_a_log_to_follow() -> None:
    pods = [pod("ran", "2026-01-01T00:00:01Z", "Failed"), pod("waits", "2026-01-01T00:00:09Z", "Pending")]
    assert newest_pod(pods)["metadata"]["name"] == "waits"  # type: ignore[index]
    assert newest_pod(pods, started_only=True)["metadata"]["name"] == "ran"  # type: ignore[index]
    assert newest_pod([pod("waits", "2026-01-01T00:00:09Z", "Pending")], started_only=True) is None
    assert newest_pod([]) is None
