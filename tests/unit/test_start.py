"""What `commerce-jobs start --wait/--follow` prints, from the successive versions of a job (no cluster: the versions
and the pods' logs are given)."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

from kubernetes import client

from commerce_jobs.start import Starter

BACKOFF = "attempt 1 failed (exit code 3); next attempt at 2026-01-01T00:00:20Z"


class FakeFollower:
    def __init__(self, out: io.StringIO, text: str) -> None:
        out.write(text)  # the pod's log, as if it arrived while the attempt ran
        self.printed = bool(text)

    def finish_printed(self) -> bool:
        return self.printed


class Recorded(Starter):
    """A Starter whose jobs' versions and pods' logs are given."""

    def __init__(self, versions: dict[str, list[dict[str, Any]]], logs: dict[str, str]) -> None:
        super().__init__(client.ApiClient(), "shop", io.StringIO())
        self.recorded = versions
        self.logs = logs
        self.followed: list[str] = []

    def versions(self, name: str) -> Iterable[dict[str, Any]]:
        return iter(self.recorded[name])

    def follow_attempt(self, job_name: str) -> FakeFollower | None:
        self.followed.append(job_name)
        assert isinstance(self.out, io.StringIO)
        return FakeFollower(self.out, self.logs[job_name]) if job_name in self.logs else None

    def printed(self) -> list[str]:
        assert isinstance(self.out, io.StringIO)
        return self.out.getvalue().splitlines()


def status(**fields: Any) -> dict[str, Any]:
    return {"metadata": {"name": "x"}, "status": fields}


def retried(name: str = "x") -> list[dict[str, Any]]:
    """A job whose attempt 1 fails with exit code 3 and whose attempt 2 succeeds."""
    return [
        {"metadata": {"name": name}},
        status(state="Running", reason="Running", message="started", attempts=1, jobName=f"{name}-1"),
        status(state="Running", reason="RetryBackoff", message=BACKOFF, attempts=1, jobName=f"{name}-1",
               exitCode=3, output="attempt 1 output\n"),
        status(state="Running", reason="Running", message="retry: attempt 2 started", attempts=2,
               jobName=f"{name}-2", exitCode=3, output="attempt 1 output\n"),
        status(state="Finished", reason="Completed", message="a:b succeeded after 2 attempts", attempts=2,
               jobName=f"{name}-2", exitCode=0, output="attempt 2 output\n"),
    ]  # fmt: skip


def test_follow_follows_each_attempts_pod_in_turn_and_prints_each_state_once() -> None:
    starter = Recorded({"x": retried()}, {"x-1": "attempt 1 output\n", "x-2": "attempt 2 output\n"})

    assert starter.follow("x", show_output=True)

    assert starter.followed == ["x-1", "x-2"]
    assert starter.printed() == [
        "x: Pending",
        "x: Running",
        "attempt 1 output",
        f"x: Running (RetryBackoff: {BACKOFF})",
        "x: Running (attempt 2)",
        "attempt 2 output",
        "x: Finished, exit code 0",
    ]


def test_an_attempt_whose_pod_could_not_be_followed_shows_its_output_from_the_status() -> None:
    starter = Recorded({"x": retried()}, {"x-2": "attempt 2 output\n"})  # attempt 1's pod never seen running
    starter.follow("x", show_output=True)
    assert starter.printed()[2:4] == ["attempt 1 output", f"x: Running (RetryBackoff: {BACKOFF})"]
    assert starter.printed().count("attempt 2 output") == 1


def test_wait_prints_each_state_once_and_the_final_output() -> None:
    versions = retried()
    versions.insert(2, versions[1])  # the same version twice (a watch restarted): printed once
    starter = Recorded({"x": versions}, {})

    assert starter.follow("x", show_output=False)

    assert starter.followed == []
    assert starter.printed() == [
        "x: Pending",
        "x: Running",
        f"x: Running (RetryBackoff: {BACKOFF})",
        "x: Running (attempt 2)",
        "attempt 2 output",
        "x: Finished, exit code 0",
    ]


def test_a_refused_job_says_why_in_its_final_line() -> None:
    refused = status(state="Failed", reason="CommandNotAllowed", message="spec.command 'rm' is not allowed")
    starter = Recorded({"x": [refused]}, {})
    assert not starter.follow("x", show_output=True)
    assert starter.printed() == ["x: Failed (CommandNotAllowed: spec.command 'rm' is not allowed)"]


def test_dependents_are_followed_once_each_after_their_parent() -> None:
    done = {"state": "Finished", "reason": "Completed", "attempts": 1, "exitCode": 0, "output": ""}
    dependents = [{"name": "x-a", "state": "Pending"}, {"name": "x-a-b", "state": "Pending"},
                  {"name": "x-c", "state": "Canceled"}]  # fmt: skip
    starter = Recorded(
        {
            "x": [status(**done, dependents=dependents)],
            # The parent lists the whole tree; x-a-b is followed as x-a's dependent, and not again.
            "x-a": [{"metadata": {"name": "x-a"}, "status": {**done, "dependents": [dependents[1]]}}],
            "x-a-b": [{"metadata": {"name": "x-a-b"}, "status": done}],
        },
        {},
    )
    assert not starter.follow("x", show_output=False)  # x-c was never created
    assert starter.printed() == [
        "x: Finished, exit code 0",
        "x-a: Finished, exit code 0",
        "x-a-b: Finished, exit code 0",
        "x-c: Canceled",
    ]


def test_the_followed_pod_is_the_newest_started_one_of_the_attempts_job() -> None:
    import json
    from types import SimpleNamespace

    from commerce_jobs.jobpods import started_pod

    def pod(name: str, phase: str, second: int) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "creationTimestamp": f"2026-01-01T00:00:0{second}Z"},
            "status": {"phase": phase},
        }

    # The first started pod in the list is not the newest one: the newest started one is followed.
    pods = [pod("x-2-old", "Failed", 1), pod("x-2-new", "Running", 5), pod("x-2-pending", "Pending", 9)]
    asked: list[str] = []

    class Core:
        def list_namespaced_pod(self, namespace: str, label_selector: str, **_: Any) -> SimpleNamespace:
            asked.append(label_selector)
            return SimpleNamespace(data=json.dumps({"items": pods}))

    assert started_pod(Core(), "shop", "x-2") == "x-2-new"  # type: ignore[arg-type]
    assert asked == ["batch.kubernetes.io/job-name=x-2"]
