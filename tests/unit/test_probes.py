"""The operator's probes: what liveness and readiness answer in each phase, and what a standby sees of the Lease."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from commerce_jobs import probes
from commerce_jobs.leader import LeaderElection, LeaseTimings
from commerce_jobs.probes import Phase, Snapshot, liveness, readiness
from commerce_jobs.runner import last_words
from commerce_jobs.watchhealth import WatchHealth

JOBS, PODS = "/apis/batch/v1/jobs", "/api/v1/pods"


def acting(**fields: Any) -> Snapshot:
    return Snapshot(Phase.ACTING, **{"workers_running": True, "watch_summary": {"streams": 2}, **fields})


def test_the_acting_replica_is_ready_once_every_stream_listed_none_fails_and_the_workers_run() -> None:
    assert readiness(acting()).ok
    assert readiness(acting()).body == {"phase": "acting", "ready": True}
    waiting = readiness(acting(unlisted=[PODS]))
    assert (waiting.ok, waiting.status) == (False, 503)
    assert waiting.body["reasons"] == [f"not listed yet: {PODS}"]
    assert readiness(acting(failing=[f"{JOBS}: HTTP 403"])).body["reasons"] == [f"failing: {JOBS}: HTTP 403"]
    assert readiness(acting(workers_running=False)).body["reasons"] == ["the workers do not run"]


def test_a_failing_watch_is_not_ready_at_once_but_alive_until_the_grace_ends() -> None:
    """A restart of the apiserver takes the replica out of a Service for a moment; only an outage that lasts
    restarts it."""
    snapshot = acting(failing=[f"{JOBS}: ClientConnectorError"])
    assert not readiness(snapshot).ok
    assert liveness(snapshot).ok
    lasting = acting(failing=[f"{JOBS}: x"], watch_problems=[f"{JOBS}: failing for 30s: x"])
    assert (liveness(lasting).ok, liveness(lasting).status) == (False, 500)
    assert liveness(acting(workers_running=False)).status == 500
    assert liveness(acting()).body == {"watches": {"streams": 2}}


def test_a_standby_is_ready_only_behind_a_live_holder_and_never_when_it_serves_the_console() -> None:
    behind_live = Snapshot(Phase.STANDBY, lease_holder="pod-a-1f2e3d", holder_renewing=True)
    assert readiness(behind_live).ok
    assert readiness(behind_live).body == {"phase": "standby", "holder": "pod-a-1f2e3d", "ready": True}
    stale = readiness(Snapshot(Phase.STANDBY, lease_holder="pod-a-1f2e3d", holder_renewing=False))
    assert not stale.ok
    assert stale.body["reasons"] == ["the Lease's holder pod-a-1f2e3d is not seen renewing it: nobody may act"]
    console = readiness(Snapshot(Phase.STANDBY, serves_console=True, lease_holder="a", holder_renewing=True))
    assert not console.ok
    assert console.body["reasons"] == ["a standby serves no console: only the Lease holder is Ready"]
    # Alive either way: the kubelet must not restart a standby for waiting.
    assert liveness(Snapshot(Phase.STANDBY, lease_holder="a", holder_renewing=False)).body == {"leader": False}


@pytest.mark.parametrize("phase", [Phase.STARTING, Phase.STOPPING])
def test_a_starting_or_stopping_process_is_not_ready(phase: Phase) -> None:
    verdict = readiness(Snapshot(phase, workers_running=True))
    assert (verdict.ok, verdict.status, verdict.body["reasons"]) == (False, 503, [phase.value])


def test_liveness_waits_for_the_start_and_spares_a_clean_stop() -> None:
    assert liveness(Snapshot(Phase.STARTING)).status == 503  # as a port that does not listen yet
    assert liveness(Snapshot(Phase.STOPPING)).ok


def test_watch_health_knows_the_streams_that_never_listed_and_those_failing_now() -> None:
    health = WatchHealth(grace=30)
    health.succeeded(JOBS, now=0)
    health.failed(PODS, now=1, error="HTTP 403")
    assert health.unlisted({JOBS, PODS, "/apis/batch/v1/cronjobs"}) == ["/api/v1/pods", "/apis/batch/v1/cronjobs"]
    assert health.failing() == [f"{PODS}: HTTP 403"]
    health.failed(JOBS, now=2, error="ServerDisconnectedError")
    assert health.unlisted({JOBS}) == []  # it listed once: a later failure is "failing", not "unlisted"
    assert health.failing() == [f"{PODS}: HTTP 403", f"{JOBS}: ServerDisconnectedError"]
    health.succeeded(PODS, now=3)
    assert health.failing() == [f"{JOBS}: ServerDisconnectedError"]


class FakeLeases:
    """The Lease as the apiserver would return it: each renewal by the holder bumps its resourceVersion."""

    def __init__(self, holder: str) -> None:
        self.lease = client.V1Lease(
            metadata=client.V1ObjectMeta(name="ops", namespace="ns", resource_version="1"),
            spec=client.V1LeaseSpec(holder_identity=holder, lease_duration_seconds=15),
        )

    def renew(self) -> None:
        self.lease.metadata.resource_version = str(int(self.lease.metadata.resource_version) + 1)

    def read_namespaced_lease(self, *_: Any, **__: Any) -> client.V1Lease:
        return self.lease


def test_a_standby_sees_whether_the_holder_renews(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("commerce_jobs.leader.time.monotonic", lambda: clock[0])
    election = LeaderElection(client.ApiClient(), "ns", "ops", "pod-b-2", LeaseTimings(15, 10, 2))
    leases = FakeLeases("pod-a-1")
    election.leases = leases  # type: ignore[assignment]
    assert (election.holder, election.holder_renewing()) == (None, False)  # nothing read yet
    assert not election.try_acquire_or_renew()
    # One read proves nothing: a holder that crashed left the same Lease (the restart of a single replica).
    assert (election.holder, election.holder_renewing()) == ("pod-a-1", False)
    for _ in range(10):  # the holder renews every 2 s: it is live from the first renewal seen
        clock[0] += 2
        leases.renew()
        assert not election.try_acquire_or_renew()
        assert election.holder_renewing()
    clock[0] += 9.9  # no renewal since: the holder may still act until its renew deadline
    assert not election.try_acquire_or_renew()
    assert election.holder_renewing()
    clock[0] += 0.1  # 10 s: it has stopped acting (it exits), 5 s before this candidate may take over
    assert not election.try_acquire_or_renew()
    assert not election.holder_renewing()


def _free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310  (http://127.0.0.1 only)
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_the_server_answers_both_probes_on_one_port() -> None:
    port = _free_port()
    current = [Snapshot(Phase.STARTING)]

    async def scenario() -> list[tuple[int, Any]]:
        runner = await probes.serve(f"http://127.0.0.1:{port}/healthz", lambda: current[0])
        try:
            answers = []
            for snapshot in (Snapshot(Phase.STARTING), acting(), acting(unlisted=[PODS])):
                current[0] = snapshot
                for path in ("/healthz", "/readyz"):
                    answers.append(await asyncio.to_thread(_get, f"http://127.0.0.1:{port}{path}"))
            return answers
        finally:
            await runner.cleanup()

    answers = asyncio.run(scenario())
    assert [status for status, _ in answers] == [503, 503, 200, 200, 200, 503]
    assert answers[5][1]["reasons"] == [f"not listed yet: {PODS}"]


@pytest.mark.parametrize(
    "endpoint", ["http://0.0.0.0/healthz", "https://0.0.0.0:8080/healthz", "http://0.0.0.0:8080/readyz", "0.0.0.0:80"]
)
def test_a_wrong_probe_address_is_refused(endpoint: str) -> None:
    with pytest.raises(ValueError, match=r"probes' address|liveness path"):
        probes.parse_endpoint(endpoint)
    assert probes.parse_endpoint("http://0.0.0.0:8080/healthz") == ("0.0.0.0", 8080, "/healthz")  # noqa: S104


def test_the_last_words_go_to_the_termination_log_only_where_the_kubelet_made_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "termination-log"
    last_words("commerce-jobs: invalid configuration: x", log)
    assert not log.exists()  # not in a pod: nothing created
    log.touch()
    last_words("commerce-jobs: invalid configuration: x", log)
    assert log.read_text() == "commerce-jobs: invalid configuration: x\n"
    assert capsys.readouterr().err.count("invalid configuration") == 2
