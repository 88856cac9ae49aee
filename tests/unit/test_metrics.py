"""The operator's /metrics: the exposition of every documented name, what the hooks count, and bounded labels."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from commerce_jobs import lifecycle, metrics, metrics_cache
from commerce_jobs.config import OperatorConfig
from commerce_jobs.controller import CommerceJobController
from commerce_jobs.cron_controller import CronController, controllers
from commerce_jobs.jobcalls import JobCalls
from commerce_jobs.kubeapi import KubeApi
from commerce_jobs.metrics import Metrics
from commerce_jobs.metrics_labels import LabelVocabulary, api_route, error_reason
from commerce_jobs.metrics_server import MetricsServer, MetricsSettings
from commerce_jobs.watchhealth import WatchHealth
from commerce_jobs.workqueue import Requeue, WorkQueue, serve

NOW = datetime.now(UTC).replace(microsecond=0)
CONFIG = OperatorConfig(queue_limits={"imports": 1, "default": 4}, allowed_commands=("silver:*", "ibexa:commerce:*"))

# Every name that the README's Metrics section lists.
DOCUMENTED = {
    "commerce_jobs_jobs", "commerce_jobs_job_completions", "commerce_jobs_job_duration_seconds",
    "commerce_jobs_queue_wait_seconds", "commerce_jobs_attempts", "commerce_jobs_queue_running",
    "commerce_jobs_queue_waiting", "commerce_jobs_queue_oldest_waiting_seconds", "commerce_jobs_queue_limit",
    "commerce_jobs_cron_last_schedule_timestamp_seconds", "commerce_jobs_cron_last_success_timestamp_seconds",
    "commerce_jobs_cron_next_schedule_timestamp_seconds", "commerce_jobs_cron_missed_schedules",
    "commerce_jobs_cron_ready", "commerce_jobs_cron_suspended", "commerce_jobs_workqueue_depth",
    "commerce_jobs_workqueue_adds", "commerce_jobs_workqueue_queue_duration_seconds", "commerce_jobs_workqueue_retries",
    "commerce_jobs_reconcile", "commerce_jobs_reconcile_errors", "commerce_jobs_reconcile_duration_seconds",
    "commerce_jobs_api_requests", "commerce_jobs_api_request_duration_seconds", "commerce_jobs_watch_healthy",
    "commerce_jobs_watch_requests", "commerce_jobs_watch_restarts", "commerce_jobs_retention_deletions",
    "commerce_jobs_retention_deleted_jobs", "commerce_jobs_events_dropped", "commerce_jobs_leader",
    "commerce_jobs_build_info", "process_resident_memory_bytes", "process_cpu_seconds", "python_info",
    "python_gc_objects_collected",
}  # fmt: skip


def stamp(moment: datetime) -> str:
    return lifecycle.format_time(moment)


def cjob(name: str, state: str | None = None, queue: str = "imports", command: str = "silver:import",
         age: timedelta = timedelta(minutes=10), **status: Any) -> dict[str, Any]:  # fmt: skip
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "shop", "uid": f"uid-{name}", "resourceVersion": "1",
                     "creationTimestamp": stamp(NOW - age)},
        "spec": {"command": command, "queue": queue},
        "status": {**({"state": state} if state else {}), **status},
    }  # fmt: skip
    return body


def scrape(m: Metrics) -> dict[str, list[Any]]:
    """Samples by family name, as Prometheus would read them."""
    text = generate_latest(m.registry).decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(samples: list[Any], sample: str | None = None, **labels: str) -> float:
    found = [s.value for s in samples if all(s.labels.get(k) == v for k, v in labels.items())
             and (sample is None or s.name == sample)]  # fmt: skip
    assert len(found) == 1, (labels, samples)
    return float(found[0])


async def no_apiserver() -> Any:
    raise AssertionError("these tests make no API call")


@pytest.fixture
def attached(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Metrics, CommerceJobController, CronController, WatchHealth]]:
    # Scrapes see the clock that the test's objects were stamped with (NOW is taken at import, and a whole-suite
    # run reaches these tests half an hour later).
    monkeypatch.setattr(metrics_cache, "_now", lambda: NOW)
    api = KubeApi(client.ApiClient(client.Configuration()))
    controller, crons = controllers(api, JobCalls(no_apiserver), CONFIG)
    health = WatchHealth(grace=30)
    m = Metrics(CONFIG)
    m.attach(controller, crons, health)
    yield m, controller, crons, health
    m.detach()


def test_a_standby_serves_process_metrics_and_leader_0_only() -> None:
    families = scrape(Metrics(CONFIG))
    assert value(families["commerce_jobs_leader"]) == 0
    assert "process_resident_memory_bytes" in families
    assert not any(name.startswith("commerce_jobs_jobs") or name.startswith("commerce_jobs_queue_running")
                   for name in families)  # fmt: skip
    assert metrics._active is None  # the hooks record nothing on a standby


def test_every_documented_name_is_exposed_with_values_from_the_cache(attached: Any) -> None:
    m, controller, crons, health = attached
    for body in [
        cjob("running", lifecycle.RUNNING, attempts=1, startTime=stamp(NOW - timedelta(minutes=1))),
        cjob("waiting-1", lifecycle.PENDING, age=timedelta(minutes=7)),
        cjob("waiting-2", None, age=timedelta(minutes=3)),
        {
            **cjob("later", lifecycle.PENDING),
            "spec": {"queue": "imports", "executeAfter": stamp(NOW + timedelta(hours=1))},
        },
        cjob("done", lifecycle.FINISHED, queue="default"),
        cjob("broken", lifecycle.FAILED, queue="a-queue-nobody-configured"),
    ]:
        controller.observe_commercejob("ADDED", body)
    crons.observe_cron("ADDED", {
        "metadata": {"name": "lost-orders", "namespace": "shop", "creationTimestamp": stamp(NOW - timedelta(days=1))},
        "spec": {"schedule": "*/5 * * * *", "command": "ibexa:commerce:process-lost-orders"},
        "status": {"lastScheduleTime": stamp(NOW - timedelta(minutes=12)),
                   "lastSuccessfulTime": stamp(NOW - timedelta(minutes=31)),
                   "conditions": [{"type": "Ready", "status": "True"}]},
    })  # fmt: skip
    health.count("/apis/batch/v1/jobs", "watch", "200")
    health.count("/apis/batch/v1/jobs", "watch", "200")
    health.succeeded("/apis/batch/v1/jobs", time.monotonic())
    m.status_written(cjob("x", lifecycle.RUNNING, attempts=1), cjob("x", lifecycle.FINISHED, attempts=1))
    m.retention_deleted("shop", 3)
    m.api_requests.labels("get", "jobs", "200").inc()
    m.api_latency.labels("get", "jobs").observe(0.01)
    m.queue_retries.labels("commercejobs").inc()
    m.reconciles.labels("commercejobs", "error").inc()
    m.reconcile_errors.labels("commercejobs", "ApiException:500").inc()
    m.reconcile_time.labels("commercejobs").observe(0.01)
    controller.queue.add(("shop", "x"))

    families = scrape(m)
    assert set(families) >= DOCUMENTED, DOCUMENTED - set(families)
    assert value(families["commerce_jobs_leader"]) == 1
    jobs = families["commerce_jobs_jobs"]
    assert value(jobs, queue="imports", state="Pending") == 3  # a job without a status yet is Pending
    assert value(jobs, queue="imports", state="Running") == 1
    assert value(jobs, queue="other", state="Failed") == 1  # an unconfigured queue is "other"
    assert value(families["commerce_jobs_queue_running"], queue="imports") == 1
    assert value(families["commerce_jobs_queue_waiting"], queue="imports") == 2  # not the executeAfter one
    assert 7 * 60 <= value(families["commerce_jobs_queue_oldest_waiting_seconds"], queue="imports") < 8 * 60
    assert value(families["commerce_jobs_queue_waiting"], queue="default") == 0
    assert value(families["commerce_jobs_queue_limit"], queue="imports") == 1
    assert value(families["commerce_jobs_queue_limit"], queue="default") == 4
    cron = {"namespace": "shop", "name": "lost-orders"}
    assert (
        value(families["commerce_jobs_cron_last_success_timestamp_seconds"], **cron)
        == (NOW - timedelta(minutes=31)).timestamp()
    )
    assert value(families["commerce_jobs_cron_missed_schedules"], **cron) in (6, 7)  # every 5 min for 31 min
    assert value(families["commerce_jobs_cron_ready"], **cron) == 1
    assert value(families["commerce_jobs_cron_suspended"], **cron) == 0
    next_run = value(families["commerce_jobs_cron_next_schedule_timestamp_seconds"], **cron)
    assert 0 < next_run - NOW.timestamp() <= 300
    assert next_run % 300 == 0
    assert value(families["commerce_jobs_workqueue_depth"], name="commercejobs") == 5  # 4 live jobs' events, and x
    assert value(families["commerce_jobs_watch_restarts"], resource="jobs") == 1
    assert value(families["commerce_jobs_watch_healthy"], resource="jobs") == 1
    assert value(families["commerce_jobs_retention_deleted_jobs"], namespace="shop") == 3


def test_a_run_that_succeeded_on_a_retry_is_the_tasks_last_success(attached: Any) -> None:
    m, controller, crons, _ = attached
    crons.observe_cron("ADDED", {
        "metadata": {"name": "lost-orders", "namespace": "shop", "creationTimestamp": stamp(NOW - timedelta(days=1))},
        "spec": {"schedule": "@hourly", "command": "ibexa:commerce:process-lost-orders", "suspend": True},
        "status": {"lastSuccessfulTime": stamp(NOW - timedelta(hours=5))},
    })  # fmt: skip
    run = cjob("lost-orders-29000000", lifecycle.FINISHED, completionTime=stamp(NOW - timedelta(minutes=2)))
    run["metadata"]["ownerReferences"] = [{"kind": "CommerceCronJob", "name": "lost-orders"}]
    controller.observe_commercejob("ADDED", run)
    families = scrape(m)
    cron = {"namespace": "shop", "name": "lost-orders"}
    assert value(families["commerce_jobs_cron_last_success_timestamp_seconds"], **cron) == run_time(run)
    assert value(families["commerce_jobs_cron_missed_schedules"], **cron) <= 1
    assert value(families["commerce_jobs_cron_suspended"], **cron) == 1
    assert value(families["commerce_jobs_cron_ready"], **cron) == 0


def run_time(run: dict[str, Any]) -> float:
    completed = lifecycle.parse_time(run["status"]["completionTime"])
    assert completed is not None
    return completed.timestamp()


def test_a_job_with_a_retry_counts_each_attempt_its_wait_its_duration_and_its_completion(attached: Any) -> None:
    m = attached[0]
    created, started = NOW - timedelta(seconds=40), NOW - timedelta(seconds=30)
    pending = cjob("job", lifecycle.PENDING, age=timedelta(seconds=40))
    running = cjob("job", lifecycle.RUNNING, attempts=1, startTime=stamp(started), age=timedelta(seconds=40))
    backoff = cjob("job", lifecycle.RUNNING, attempts=1, reason="RetryBackoff", startTime=stamp(started))
    second = cjob("job", lifecycle.RUNNING, attempts=2, reason="Running", startTime=stamp(started))
    third = cjob("job", lifecycle.RUNNING, attempts=3, reason="Running", startTime=stamp(started))  # retried at once
    finished = cjob("job", lifecycle.FINISHED, attempts=3, startTime=stamp(started), completionTime=stamp(NOW))
    for before, after in [(pending, running), (running, backoff), (backoff, second), (second, third),
                          (third, finished), (finished, finished)]:  # fmt: skip
        m.status_written(before, after)
    families = scrape(m)
    attempts = families["commerce_jobs_attempts"]
    labels = {"namespace": "shop", "queue": "imports", "command": "silver:*"}
    assert value(attempts, result="started", **labels) == 3
    assert value(attempts, result="failed", **labels) == 2
    assert value(attempts, result="succeeded", **labels) == 1
    assert value(families["commerce_jobs_job_completions"], state="Finished", **labels) == 1  # once, not twice
    duration = families["commerce_jobs_job_duration_seconds"]
    assert value(duration, "commerce_jobs_job_duration_seconds_sum", state="Finished") == 30
    assert value(duration, "commerce_jobs_job_duration_seconds_bucket", state="Finished", le="30.0") == 1
    assert value(duration, "commerce_jobs_job_duration_seconds_bucket", state="Finished", le="15.0") == 0
    wait = families["commerce_jobs_queue_wait_seconds"]
    assert value(wait, "commerce_jobs_queue_wait_seconds_sum", queue="imports") == (started - created).seconds


def test_a_job_refused_or_canceled_before_it_started_counts_no_attempt(attached: Any) -> None:
    m = attached[0]
    m.status_written(cjob("a", None), cjob("a", lifecycle.FAILED, reason="CommandNotAllowed", command="rm"))
    m.status_written(cjob("b", lifecycle.PENDING), cjob("b", lifecycle.CANCELED, command="rm"))
    families = scrape(m)
    assert not families["commerce_jobs_attempts"]
    completions = families["commerce_jobs_job_completions"]
    assert value(completions, state="Failed", command="other") == 1
    assert value(completions, state="Canceled", command="other") == 1


def test_a_template_or_a_crontab_task_makes_its_command_a_label(attached: Any) -> None:
    m, _, crons, _ = attached
    metrics.template_resolved({"command": "app:export", "dependingJobs": [{"command": "app:notify"}]})
    crons.observe_cron("ADDED", {"metadata": {"name": "cleanup", "namespace": "shop"},
                                 "spec": {"schedule": "@daily", "command": "app:cleanup"}})  # fmt: skip
    run = cjob("cleanup-1", lifecycle.RUNNING, command="app:cleanup", attempts=1)
    run["metadata"]["ownerReferences"] = [{"kind": "CommerceCronJob", "name": "cleanup"}]
    fake = cjob("fake-1", lifecycle.RUNNING, command="app:pretends", attempts=1)  # claims the task, other command
    fake["metadata"]["ownerReferences"] = [{"kind": "CommerceCronJob", "name": "cleanup"}]
    m.status_written(run, {**run, "status": {"state": lifecycle.FINISHED, "attempts": 1}})
    m.status_written(fake, {**fake, "status": {"state": lifecycle.FINISHED, "attempts": 1}})
    assert m.labels.learned == {"app:export", "app:notify", "app:cleanup"}
    assert m.labels.command("silver:import") == "silver:*"
    assert m.labels.command("app:pretends") == "other"


TEXT = st.text(max_size=80)
ANY_VALUE = st.one_of(TEXT, st.none(), st.integers(), st.lists(TEXT, max_size=2))


@settings(max_examples=300, deadline=None)
@given(
    patterns=st.lists(st.text(min_size=1, max_size=10), max_size=5),
    queues=st.lists(TEXT, max_size=5),
    learned=st.lists(TEXT, max_size=300),
    asked=st.lists(ANY_VALUE, max_size=50),
)
def test_label_values_stay_within_the_vocabulary_whatever_the_input(
    patterns: list[str], queues: list[str], learned: list[str], asked: list[Any]
) -> None:
    vocabulary = LabelVocabulary(queues, patterns, cap=20)
    for command in learned:
        vocabulary.learn(command)
    assert len(vocabulary.learned) <= 20
    commands = {vocabulary.command(value) for value in [*asked, *learned]}
    assert commands <= vocabulary.learned | set(patterns) | {"other"}
    assert {vocabulary.queue(value) for value in asked} <= set(queues) | {"default", "other"}


@settings(max_examples=100, deadline=None)
@given(
    names=st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=30),
    hostile=st.lists(st.text(min_size=1, max_size=80), max_size=30),
)  # the client refuses empty path parameters
def test_no_job_name_namespace_path_or_query_becomes_an_api_label(names: list[str], hostile: list[str]) -> None:
    from urllib.parse import quote as client_quote  # as the kubernetes client quotes path parameters

    def quote(text: str) -> str:
        return client_quote(text, safe="")

    resources = set()
    for name, other in zip(names, [*hostile, *names], strict=False):
        for url in (f"https://k/apis/commercejobs.dev/v1alpha1/namespaces/{quote(other)}/commercejobs/{quote(name)}",
                    f"https://k/api/v1/namespaces/{quote(other)}/pods/{quote(name)}/log?x={quote(name)}"):  # fmt: skip
            resources.add(api_route("GET", url))
    assert resources <= {("get", "commercejobs"), ("get", "pods/log")}


@pytest.mark.parametrize(
    ("method", "url", "route"),
    [
        ("POST", "https://k/apis/batch/v1/namespaces/shop/jobs", ("create", "jobs")),
        ("GET", "https://k/apis/batch/v1/namespaces/shop/jobs/imp-1", ("get", "jobs")),
        ("GET", "https://k/api/v1/namespaces/shop/pods?labelSelector=a%3Db", ("list", "pods")),
        ("GET", "https://k/api/v1/pods?watch=true", ("watch", "pods")),
        ("PATCH", "https://k/apis/commercejobs.dev/v1alpha1/namespaces/shop/commercejobs/x/status",
         ("patch", "commercejobs/status")),
        ("DELETE", "https://k/apis/commercejobs.dev/v1alpha1/namespaces/shop/commercejobs/x",
         ("delete", "commercejobs")),
        ("PUT", "https://k/apis/coordination.k8s.io/v1/namespaces/cj/leases/cj", ("update", "leases")),
        ("POST", "https://k/apis/authorization.k8s.io/v1/subjectaccessreviews", ("create", "subjectaccessreviews")),
        ("GET", "https://k/api/v1/namespaces/shop", ("get", "namespaces")),
        ("GET", "https://k/version", ("get", "other")),
    ],
)  # fmt: skip
def test_api_requests_are_labelled_by_verb_and_resource(method: str, url: str, route: tuple[str, str]) -> None:
    assert api_route(method, url) == route


def test_the_kubernetes_client_is_counted_by_verb_resource_and_code() -> None:
    class Response:
        status = 201

    calls: list[str] = []

    class Rest:
        def request(self, method: str, url: str, **_: Any) -> Any:
            calls.append(url)
            if url.endswith("/gone"):
                raise ApiException(status=404)
            if url.endswith("/down"):
                raise ApiException(status=0, reason="connection refused")
            return Response()

    api = type("ApiClient", (), {"rest_client": Rest()})()
    m = Metrics(CONFIG)
    m.instrument(api)
    m.instrument(api)  # twice: counted once
    api.rest_client.request("POST", "https://k/apis/batch/v1/namespaces/shop/jobs")
    for suffix in ("gone", "down"):
        with pytest.raises(ApiException):
            api.rest_client.request("GET", f"https://k/apis/batch/v1/namespaces/shop/jobs/{suffix}")
    samples = scrape(m)["commerce_jobs_api_requests"]
    assert value(samples, verb="create", resource="jobs", code="201") == 1
    assert value(samples, verb="get", resource="jobs", code="404") == 1
    assert value(samples, verb="get", resource="jobs", code="error") == 1
    assert len(calls) == 3


def test_the_operators_other_clients_count_once_attached(attached: Any) -> None:
    """The console's and the Lease's clients are made apart from the controller's (api_client tracks each)."""

    class Response:
        status = 200

    class Rest:
        def request(self, method: str, url: str, **_: Any) -> Any:
            return Response()

    m = attached[0]
    before, after = type("Client", (), {"rest_client": Rest()})(), type("Client", (), {"rest_client": Rest()})()
    metrics.track(before)  # made before the metrics were attached (a replica that waited for the Lease)
    m.detach()
    m.attach(*attached[1:])
    metrics.track(after)  # made after (the console starts later)
    before.rest_client.request("PUT", "https://k/apis/coordination.k8s.io/v1/namespaces/cj/leases/cj")
    after.rest_client.request("POST", "https://k/apis/authorization.k8s.io/v1/subjectaccessreviews")
    samples = scrape(m)["commerce_jobs_api_requests"]
    assert value(samples, verb="update", resource="leases", code="200") == 1
    assert value(samples, verb="create", resource="subjectaccessreviews", code="200") == 1


def test_kopfs_requests_count_by_verb_resource_and_code_through_its_sessions_trace_config(attached: Any) -> None:
    """kopf's LISTs and WATCHes go through the aiohttp session that kopf_handlers.login gives it, not the kubernetes
    client: the trace config on that session counts them in the same counter (a loopback server answers as an
    apiserver)."""
    from aiohttp import ClientSession, web

    async def jobs(_: web.Request) -> web.Response:
        return web.json_response({"items": []})

    async def pods(_: web.Request) -> web.Response:
        return web.json_response({"kind": "Status", "code": 403}, status=403)

    async def scenario() -> None:
        app = web.Application()
        app.router.add_get("/apis/batch/v1/namespaces/shop/jobs", jobs)
        app.router.add_get("/api/v1/namespaces/shop/pods", pods)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        with closing(socket.socket()) as s:  # a port where nothing listens: the apiserver is down
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]
        try:
            async with ClientSession(trace_configs=[metrics.session_trace_config()]) as session:
                base = f"http://127.0.0.1:{port}"
                for query in ("?limit=500", "?watch=true&resourceVersion=7", "?watch=true&resourceVersion=9"):
                    async with session.get(f"{base}/apis/batch/v1/namespaces/shop/jobs{query}") as response:
                        await response.read()
                async with session.get(f"{base}/api/v1/namespaces/shop/pods?watch=true") as response:
                    await response.read()
                with pytest.raises(OSError, match="Cannot connect"):
                    await session.get(f"http://127.0.0.1:{closed}/api/v1/namespaces/shop/pods?limit=500")
        finally:
            await runner.cleanup()

    asyncio.run(scenario())
    families = scrape(attached[0])
    samples = families["commerce_jobs_api_requests"]
    assert value(samples, verb="list", resource="jobs", code="200") == 1
    assert value(samples, verb="watch", resource="jobs", code="200") == 2
    assert value(samples, verb="watch", resource="pods", code="403") == 1
    assert value(samples, verb="list", resource="pods", code="error") == 1
    durations = families["commerce_jobs_api_request_duration_seconds"]
    assert value(durations, "commerce_jobs_api_request_duration_seconds_count", verb="watch", resource="jobs") == 2


def test_kopfs_requests_count_nothing_on_a_standby() -> None:
    """Before the Lease (or on a standby) no Metrics is attached: the trace config's hook records nothing."""
    m = Metrics(CONFIG)
    metrics.api_request("GET", "https://k/api/v1/pods?watch=true", "200", 0.01)
    assert "commerce_jobs_api_requests" not in {name for name, samples in scrape(m).items() if samples}


def test_a_work_queue_reports_adds_waits_retries_and_reconcile_results() -> None:
    m = Metrics(CONFIG)

    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue(base_delay=0.01)
        m.observe_queue(queue, "commercejobs")
        outcomes = {"ok": None, "conflict": Requeue(), "broken": ApiException(status=500)}

        failed = asyncio.Event()

        async def reconcile(key: str) -> None:
            outcome = outcomes[key]
            if key == "broken" and failed_before.is_set():
                failed.set()  # its retry: the first failure was reported
            if outcome is not None:
                if key == "broken":
                    failed_before.set()
                raise outcome

        failed_before = asyncio.Event()

        for key in outcomes:
            queue.add(key)
        worker = asyncio.create_task(serve(queue, reconcile, __import__("logging").getLogger("test")))
        await failed.wait()
        worker.cancel()

    asyncio.run(scenario())
    families = scrape(m)
    assert value(families["commerce_jobs_workqueue_adds"], name="commercejobs") >= 3
    assert value(families["commerce_jobs_workqueue_retries"], name="commercejobs") >= 1
    reconciles = families["commerce_jobs_reconcile"]
    assert value(reconciles, controller="commercejobs", result="success") == 1
    assert value(reconciles, controller="commercejobs", result="requeue") >= 1
    errors = families["commerce_jobs_reconcile_errors"]
    assert value(errors, controller="commercejobs", reason="ApiException:500") >= 1
    latency = families["commerce_jobs_workqueue_queue_duration_seconds"]
    assert value(latency, "commerce_jobs_workqueue_queue_duration_seconds_count", name="commercejobs") >= 3


def test_error_reasons_are_class_names_and_http_statuses() -> None:
    assert error_reason(ApiException(status=409)) == "ApiException:409"
    assert error_reason(TimeoutError("job imp-1 of shop")) == "TimeoutError"  # never the message


def test_the_server_answers_in_the_prometheus_text_format_and_openmetrics_on_request() -> None:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def get(accept: str) -> tuple[str, str]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept": accept})
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310  http to loopback
            return response.headers["Content-Type"], response.read().decode()

    async def scenario() -> list[tuple[str, str]]:
        server = MetricsServer(MetricsSettings.parse(f"127.0.0.1:{port}"), CONFIG)
        await server.start()
        try:
            return [await asyncio.to_thread(get, accept) for accept in ("*/*", "application/openmetrics-text")]
        finally:
            await server.stop()

    (plain_type, plain), (open_type, _) = asyncio.run(scenario())
    assert plain_type.startswith("text/plain; version=0.0.4")
    assert "commerce_jobs_leader 0.0" in plain
    assert open_type.startswith("application/openmetrics-text")


@pytest.mark.parametrize("listen", ["8082", "0.0.0.0:8082", "[::]:8082"])
def test_metrics_settings_accept_a_port_or_host_and_port(listen: str) -> None:
    assert MetricsSettings.parse(listen).port == 8082


@pytest.mark.parametrize("listen", ["", "host", "host:0", "host:70000", "host:http"])
def test_metrics_settings_refuse_what_is_not_a_port(listen: str) -> None:
    with pytest.raises(ValueError, match="--metrics: expected HOST:PORT or PORT"):
        MetricsSettings.parse(listen)


def test_a_hook_that_fails_never_fails_the_controllers_step(attached: Any, caplog: pytest.LogCaptureFixture) -> None:
    broken = cjob("x", lifecycle.RUNNING)
    broken["status"]["attempts"] = "not a number"  # nothing the schema lets through; a hook must survive it anyway
    metrics.status_written(cjob("x", lifecycle.PENDING), broken)
    assert "counting a status write failed" in caplog.text
