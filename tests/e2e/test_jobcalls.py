"""The calls that every job makes (jobcalls.py: its Job, its output, its status, its Event), sent through aiohttp on
the event loop, against the real apiserver: they keep the semantics that the controller relies on (a repeated create is
a no-op, a namesake of someone else's is refused, a stale write is a Conflict, the apiserver's refusal names the
field) and log in again when the credentials are refused.

The Jobs here are owned by a ConfigMap and carry no managed-by label: an operator that the suite runs meanwhile
neither streams nor touches them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from commerce_jobs.api_names import FIELD_MANAGER
from commerce_jobs.jobcalls import JobCalls
from commerce_jobs.kubeapi import Conflict, ForeignObject, api_message
from commerce_jobs.watchstream import Connect
from tests.cjobs import CommerceJobs
from tests.conftest import Cluster
from tests.e2e.sessions import connector

T = TypeVar("T")


def run(cluster: Cluster, scenario: Callable[[JobCalls], Awaitable[T]], connect: Connect | None = None) -> T:
    async def main() -> T:
        calls = JobCalls(connect or connector(cluster))
        try:
            return await scenario(calls)
        finally:
            await calls.close()

    return asyncio.run(main())


def owner_of(core: client.CoreV1Api, namespace: str) -> dict[str, Any]:
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    created = plain(core.api_client, core.create_namespaced_config_map(namespace, body))
    return {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": created["metadata"]["uid"]}


def plain(api: client.ApiClient, model: object) -> dict[str, Any]:
    """A model of the client as the apiserver's JSON (camelCase keys)."""
    result: dict[str, Any] = api.sanitize_for_serialization(model)
    return result


def job(namespace: str, name: str, owner: dict[str, Any], container: str = "console") -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "ownerReferences": [{**owner, "controller": True}]},
        "spec": {
            "suspend": True,  # never runs: only its object matters here
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": container,
                            "image": "shop:e2e",
                            "command": ["php", "bin/console", "silver:import", "tmp"],
                        },
                    ],
                }
            },
        },
    }


def test_a_job_is_created_once_and_a_namesake_of_someone_else_is_refused(
    cluster: Cluster, core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str
) -> None:
    owner = owner_of(core, namespace)
    theirs = job(namespace, "theirs", owner)
    theirs["metadata"].pop("ownerReferences")  # someone else's Job, in the way of an attempt's name
    batch.create_namespaced_job(namespace, theirs)

    async def scenario(calls: JobCalls) -> ForeignObject:
        await calls.create_job(job(namespace, "import-1", owner), owner["uid"])
        await calls.create_job(job(namespace, "import-1", owner), owner["uid"])  # again, as after a crash: a no-op
        with pytest.raises(ForeignObject) as refused:
            await calls.create_job(job(namespace, "theirs", owner), owner["uid"])
        return refused.value

    refusal = run(cluster, scenario)
    created = batch.read_namespaced_job("import-1", namespace)
    assert created.spec.template.spec.containers[0].command == ["php", "bin/console", "silver:import", "tmp"]
    assert created.metadata.managed_fields[0].manager == FIELD_MANAGER
    assert [j.metadata.name for j in batch.list_namespaced_job(namespace).items] == ["import-1", "theirs"]
    assert not refusal.transient
    assert "Job theirs exists and belongs to someone else" in str(refusal)


def test_the_apiserver_refusing_a_job_raises_its_reason_naming_the_field(
    cluster: Cluster, core: client.CoreV1Api, namespace: str
) -> None:
    owner = owner_of(core, namespace)

    async def scenario(calls: JobCalls) -> ApiException:
        with pytest.raises(ApiException) as refused:
            await calls.create_job(job(namespace, "import-1", owner, container="Not_A_Name"), owner["uid"])
        return refused.value

    refusal = run(cluster, scenario)
    assert refusal.status == 422
    assert "spec.template.spec.containers[0].name" in api_message(refusal)


def test_a_status_write_is_conditional_on_the_version_it_was_decided_from(
    cluster: Cluster, crds: None, namespace: str
) -> None:
    cjobs = CommerceJobs(cluster.api, namespace)
    cjobs.create("import", command="silver:import")

    async def scenario(calls: JobCalls) -> dict[str, Any]:
        with pytest.raises(Conflict):
            await calls.patch_status(namespace, "import", "1", {"message": "from a stale view"})
        while True:  # an operator that the suite runs may write it meanwhile: then decide again, as it does
            current = cjobs.get("import")
            try:
                return await calls.patch_status(
                    namespace, "import", current["metadata"]["resourceVersion"], {"message": "from the test"}
                )
            except Conflict:
                continue

    answer = run(cluster, scenario)
    assert answer["status"]["message"] == "from the test"
    assert answer["metadata"]["name"] == "import"
    assert int(answer["metadata"]["resourceVersion"]) > 1


def test_an_event_is_posted_about_the_job_with_its_message_bounded(
    cluster: Cluster, core: client.CoreV1Api, crds: None, namespace: str
) -> None:
    cjob = CommerceJobs(cluster.api, namespace).create("import", command="silver:import")
    message = "exit code 1: Catalogue 🛒 not found. " + "x" * 2000

    run(cluster, lambda calls: calls.post_event(cjob, "CommerceJob", "Failed", message, "Warning"))
    uid = cjob["metadata"]["uid"]
    events = [e for e in core.list_namespaced_event(namespace, field_selector=f"involvedObject.uid={uid}").items
              if e.reason == "Failed"]  # fmt: skip
    assert len(events) == 1
    event = events[0]
    assert (event.type, event.count, event.source.component) == ("Warning", 1, FIELD_MANAGER)
    assert (event.involved_object.kind, event.involved_object.name) == ("CommerceJob", "import")
    assert event.message == message[:1024]
    assert event.metadata.name.startswith("import.")


def test_the_output_of_a_pod_that_is_gone_is_none_not_an_error(cluster: Cluster, namespace: str) -> None:
    assert run(cluster, lambda calls: calls.log_tail(namespace, "import-1-abcde", 1024)) is None


def test_refused_credentials_log_in_again(cluster: Cluster, core: client.CoreV1Api, namespace: str) -> None:
    owner = owner_of(core, namespace)
    connect = connector(cluster, token="not-a-token")

    run(cluster, lambda calls: calls.create_job(job(namespace, "import-1", owner), owner["uid"]), connect)
    assert connect.calls == ["not-a-token", None]  # type: ignore[attr-defined]
    assert client.BatchV1Api(cluster.api).read_namespaced_job("import-1", namespace).metadata.name == "import-1"
