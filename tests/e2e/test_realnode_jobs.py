"""CommerceJobs that run real commands: the demo shop's `php bin/console` in real containers on the real node, with
the operator as a local process against that cluster (the chart's RBAC, the shop image as jobDefaults.image).

What kwok cannot show: the real output in status.output, the real exit code, the real process stopped by
maxRuntimeSeconds (its output kept) and by cancel, a CronJob's run executed on the node. And how long a job takes to
start.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, watch

from commerce_jobs.cronbuild import cronjob_name
from commerce_jobs.devcluster.nodeconfig import REAL_NODE_NAME
from tests.cjobs import GROUP, VERSION, CommerceJobs, state
from tests.conftest import Cluster
from tests.e2e.conftest import REPO, commerce_jobs, kubectl
from tests.e2e.realnode import processes_with
from tests.kube import wait_deleted, wait_for

pytestmark = [pytest.mark.realnode, pytest.mark.timeout(1200)]

IMPORT_OUTPUT = (
    "Importing from remote system into tmp tables...\n"
    "Fetched 1250 products in 5 pages\n"
    "Fetched 48 categories\n"
    "Imported 1250 products, 48 categories\n"
)
INDEX_OUTPUT = (
    "Indexing eContent (siteaccess default) in chunks of 5000...\n"
    "Indexed 1298/1298 objects\n"
    "Indexed 1298 eContent objects into the tmp core\n"
)


def container_started(pod: Any) -> bool:
    statuses = pod.status.container_statuses or []
    return bool(statuses) and (statuses[0].state.running is not None or statuses[0].state.terminated is not None)


def wait_job_pod_started(core: client.CoreV1Api, namespace: str, job: str, timeout: float = 120) -> tuple[Any, float]:
    """The pod of a CommerceJob's attempt once its container runs, and when (time.monotonic()) it was first seen."""
    first_seen = 0.0
    selector = f"commercejobs.dev/job-name={job}"
    deadline = time.monotonic() + timeout
    stream = watch.Watch().stream(
        core.list_namespaced_pod, namespace, label_selector=selector, timeout_seconds=int(timeout)
    )
    for event in stream:
        first_seen = first_seen or time.monotonic()
        if container_started(event["object"]):
            return event["object"], first_seen
        if time.monotonic() > deadline:
            break
    raise TimeoutError(f"no started pod of {job} within {timeout}s")


def test_a_template_started_with_follow_runs_the_real_import_then_its_dependent(
    real_node_cluster: Cluster, real_cjobs: CommerceJobs, real_namespace: str, tmp_path: Path
) -> None:
    """The seed's add_jobs, as a user runs it: `commerce-jobs start import-solr --follow`."""
    converted = commerce_jobs(
        real_node_cluster, "import-config", str(REPO / "examples/platform/add_jobs.yaml"), "-n", real_namespace
    )
    assert converted.returncode == 0, converted.stderr
    (tmp_path / "templates.yaml").write_text(converted.stdout)
    kubectl(real_node_cluster, "apply", "-f", str(tmp_path / "templates.yaml"))

    started = commerce_jobs(real_node_cluster, "start", "import-solr", "-n", real_namespace, "--follow")

    assert started.returncode == 0, started.stdout + started.stderr
    lines = started.stdout.splitlines()
    name = lines[0].split()[0].split("/")[1]
    assert "Imported 1250 products, 48 categories" in lines
    assert f"{name}: Finished, exit code 0" in lines
    assert "Indexed 1298 eContent objects into the tmp core" in lines
    assert f"{name}-index-solr: Finished, exit code 0" in lines
    parent, child = real_cjobs.get(name), real_cjobs.get(f"{name}-index-solr")
    assert (parent["status"]["exitCode"], parent["status"]["output"]) == (0, IMPORT_OUTPUT)
    assert (child["status"]["exitCode"], child["status"]["output"]) == (0, INDEX_OUTPUT)
    # The dependent started only after the import had finished.
    assert child["status"]["startTime"] >= parent["status"]["completionTime"]


def test_a_failing_command_gives_its_real_exit_code_and_both_streams(real_cjobs: CommerceJobs) -> None:
    real_cjobs.create("resend", command="silver:erp:resend-orders", params=["--env=prod"])
    real_cjobs.create("unknown", command="nosuch:command")

    resend, unknown = real_cjobs.wait_final("resend"), real_cjobs.wait_final("unknown")

    assert (state(resend), resend["status"]["exitCode"]) == ("Failed", 3)
    assert "Resending 3 lost orders to the ERP..." in resend["status"]["output"]  # stdout
    assert "ERP request failed: connection refused" in resend["status"]["output"]  # stderr
    assert (state(unknown), unknown["status"]["exitCode"]) == ("Failed", 1)
    assert 'There are no commands defined in the "nosuch" namespace.' in unknown["status"]["output"]


def test_max_runtime_stops_the_real_process_keeps_its_own_reason_and_what_it_printed(
    real_cjobs: CommerceJobs, real_core: client.CoreV1Api, real_namespace: str
) -> None:
    """The slow command traps SIGTERM and exits 0, as many workers do: the job's result is the operator's reason,
    never that exit code (nor the 137 of a kill). The kubelet stops it at the pod's deadline and the pod stays, so
    the job's output holds what it printed up to the stop, its last words included: what a user whose import ran
    too long needs most."""
    real_cjobs.create("overrun", command="shop:slow", params=["--seconds=313"], maxRuntimeSeconds=6)
    pod, _ = wait_job_pod_started(real_core, real_namespace, "overrun")
    assert pod.spec.node_name == REAL_NODE_NAME
    assert processes_with("shop:slow", "--seconds=313")  # the real process, seen from the node

    final = real_cjobs.wait_final("overrun")

    status = final["status"]
    assert (status["state"], status["reason"]) == ("Terminated", "MaxRuntimeExceeded")
    assert status.get("exitCode") is None
    lines = status["output"].splitlines()
    assert lines, "status.output is empty: the pod's log was not read"
    assert lines[0].startswith("Working for 313 seconds (pid "), status["output"]
    progress = lines[1:-1]
    assert progress, status["output"]
    assert progress == [f"Progress: {i}/313 seconds" for i in range(1, len(progress) + 1)]
    assert re.fullmatch(r"Received SIGTERM after [0-9.]+ seconds: stopping cleanly", lines[-1]), status["output"]
    stopped = real_core.read_namespaced_pod(pod.metadata.name, real_namespace)  # kept by the kubelet, log and all
    assert (stopped.status.phase, stopped.status.reason) == ("Failed", "DeadlineExceeded")
    assert processes_with("shop:slow", "--seconds=313") == []


def test_cancel_kills_the_real_process(
    real_cjobs: CommerceJobs, real_core: client.CoreV1Api, real_namespace: str
) -> None:
    real_cjobs.create("to-cancel", command="shop:slow", params=["--seconds=311"])
    pod, _ = wait_job_pod_started(real_core, real_namespace, "to-cancel")
    assert processes_with("shop:slow", "--seconds=311")

    real_cjobs.patch("to-cancel", {"cancel": True})

    final = real_cjobs.wait_final("to-cancel")
    assert state(final) == "Canceled"
    assert final["status"].get("exitCode") is None
    wait_deleted(real_core.list_namespaced_pod, pod.metadata.name, namespace=real_namespace)
    assert processes_with("shop:slow", "--seconds=311") == []


def test_a_commercecronjob_run_executes_on_the_node(
    real_node_cluster: Cluster, real_cjobs: CommerceJobs, real_namespace: str
) -> None:
    """A run started by hand (`kubectl create job --from=cronjob/...`), rather than waiting for the schedule."""
    cron = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "CommerceCronJob", "metadata": {"name": "refresh-cache"},
        "spec": {"schedule": "0 4 1 1 *", "command": "ibexa:commerce:refresh-cache", "params": ["--env=prod"]},
    }  # fmt: skip
    client.CustomObjectsApi(real_node_cluster.api).create_namespaced_custom_object(
        GROUP, VERSION, real_namespace, "commercecronjobs", cron
    )
    batch = client.BatchV1Api(real_node_cluster.api)
    wait_for(batch.list_namespaced_cron_job, cronjob_name("refresh-cache"), lambda _: True, namespace=real_namespace)

    kubectl(real_node_cluster, "create", "job", f"--from=cronjob/{cronjob_name('refresh-cache')}", "manual-run",
            f"-n={real_namespace}")  # fmt: skip

    run = real_cjobs.wait_final("manual-run")
    assert (state(run), run["status"]["exitCode"]) == ("Finished", 0)
    assert run["status"]["output"] == (
        "Checking for changes in translations and navigation...\n"
        "Refreshed the navigation cache (2 changes), translations unchanged\n"
    )
    assert run["metadata"]["ownerReferences"][0]["kind"] == "CommerceCronJob"


def test_how_long_a_job_takes_to_run_its_command(
    real_cjobs: CommerceJobs, real_core: client.CoreV1Api, real_namespace: str
) -> None:
    """The figures of the README: from creating a CommerceJob to its real command running, and the pod's own start
    (pod seen -> container running). Printed; bounded loosely, as the machine is shared."""
    figures: dict[str, list[float]] = {"create -> command running": [], "pod start": []}
    for index in range(3):
        name = f"timed-{index}"
        created = time.monotonic()
        real_cjobs.create(name, command="shop:slow", params=["--seconds=2"])
        _, pod_seen = wait_job_pod_started(real_core, real_namespace, name)
        running = time.monotonic()
        figures["create -> command running"].append(running - created)
        figures["pod start"].append(running - pod_seen)
        assert state(real_cjobs.wait_final(name)) == "Finished"
    print()
    for label, values in figures.items():
        print(f"{label}: " + ", ".join(f"{v:.2f}s" for v in values) + f" (median {sorted(values)[1]:.2f}s)")
    assert max(figures["create -> command running"]) < 30
    report = REPO / "test-artifacts" / "realnode-timings.yaml"
    report.parent.mkdir(exist_ok=True)
    report.write_text(yaml.safe_dump(figures))
