"""Crontab tasks as CommerceCronJobs: a real CronJob schedules the runs, and every run is a CommerceJob."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from tests.cjobs import GROUP, VERSION, CommerceJobs, condition, sim, state
from tests.conftest import Cluster
from tests.e2e.conftest import REPO, commerce_jobs, kubectl, kubectl_apply
from tests.kube import wait_deleted, wait_for

pytestmark = pytest.mark.usefixtures("simulated_cluster")


class Crons:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.list_fn = functools.partial(
            self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, "commercecronjobs"
        )

    def create(self, name: str, **spec: object) -> None:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CommerceCronJob", "metadata": {"name": name}, "spec": spec}
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "commercecronjobs", body)

    def wait(self, name: str, predicate, timeout: float = 90) -> dict:
        return wait_for(self.list_fn, name, predicate, timeout=timeout)


def ready(obj: dict) -> dict | None:
    return condition(obj, "Ready")


@pytest.fixture
def crons(cluster: Cluster, operator: object, namespace: str) -> Crons:
    return Crons(cluster.api, namespace)


def test_the_seed_crontab_converts_into_three_commercecronjobs_that_apply_cleanly(
    cluster: Cluster, crons: Crons, batch: client.BatchV1Api, namespace: str, tmp_path: Path
) -> None:
    converted = commerce_jobs(cluster, "crontab", "convert", str(REPO / "examples/platform/crontab"), "-n", namespace)
    assert converted.returncode == 0, converted.stderr
    path = tmp_path / "crons.yaml"
    path.write_text(converted.stdout)

    applied = kubectl(cluster, "apply", "-f", str(path))

    assert applied.stdout.count("commercecronjob.commercejobs.dev/") == 3
    for manifest in yaml.safe_load_all(converted.stdout):
        name = manifest["metadata"]["name"]
        cron = crons.wait(name, lambda o: (ready(o) or {}).get("status") == "True")
        assert cron["status"]["cronJobName"] == name
        cronjob = batch.read_namespaced_cron_job(name, namespace)
        assert cronjob.spec.schedule == "*/5 * * * *"
        assert cronjob.spec.concurrency_policy == "Forbid"
        container = cronjob.spec.job_template.spec.template.spec.containers[0]
        assert container.working_dir == "/var/www/my_project"
        assert container.command == ["php", "bin/console", manifest["spec"]["command"], *manifest["spec"]["params"]]
    # Applying the same manifests again changes nothing (GitOps).
    assert kubectl(cluster, "apply", "-f", str(path)).stdout.count("unchanged") == 3


def test_runs_of_a_commercecronjob_are_commercejobs_with_output_and_dependents(
    cluster: Cluster, crons: Crons, cjobs: CommerceJobs, batch: client.BatchV1Api, namespace: str
) -> None:
    crons.create(
        "refresh-cache", schedule="* * * * *", command="ibexa:commerce:refresh-cache", params=["--env=prod"],
        podAnnotations=sim(output="Cache refreshed\n"),
        dependingJobs=[{"name": "report", "command": "silver:report", "podAnnotations": sim()}],
    )  # fmt: skip
    crons.wait("refresh-cache", lambda o: (ready(o) or {}).get("status") == "True")

    # A run started by hand, as an operator of the shop would.
    kubectl(cluster, "create", "job", "--from=cronjob/refresh-cache", "manual-run", f"-n={namespace}")
    run = cjobs.wait_final("manual-run")
    assert state(run) == "Finished"
    assert run["status"]["output"] == "Cache refreshed\n"
    assert run["status"]["jobName"] == "manual-run"
    assert run["metadata"]["ownerReferences"][0]["kind"] == "CommerceCronJob"
    assert state(cjobs.wait_final("manual-run-report")) == "Finished"

    # A run that the schedule started: the CronJob controller names it <cronjob>-<minute>, within a minute.
    list_runs = functools.partial(cjobs.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, "commercejobs")
    scheduled = wait_for(
        list_runs, "",
        lambda o: o["metadata"]["name"].startswith("refresh-cache-") and state(o) == "Finished"
        and not o["metadata"]["name"].endswith("-report"),
        timeout=100,
    )  # fmt: skip
    assert scheduled["status"]["output"] == "Cache refreshed\n"
    cron = crons.wait(
        "refresh-cache",
        lambda o: (o.get("status") or {}).get("lastScheduleTime") and o["status"].get("lastSuccessfulTime")
        and (o["status"].get("lastRun") or {}).get("state") == "Finished",
    )  # fmt: skip
    assert cron["status"]["lastRun"]["name"].startswith(("refresh-cache-", "manual-run"))


def test_an_invalid_schedule_is_rejected_at_apply_or_reported_in_a_condition(
    cluster: Cluster, crons: Crons, namespace: str
) -> None:
    # Refused at apply with a message for people, never the regular expression that checks it.
    for schedule in ("* * * *", "every minute"):
        manifest = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CommerceCronJob", "metadata": {"name": "bad"},
                    "spec": {"schedule": schedule, "command": "a:b"}}  # fmt: skip
        rejected = kubectl_apply(cluster, namespace, yaml.safe_dump(manifest))
        assert rejected.returncode != 0
        assert (
            f'spec.schedule: Invalid value: "{schedule}": a schedule is 5 fields (minute '
            'hour day-of-month month day-of-week, e.g. "*/5 * * * *") or one of @hourly, @daily (@midnight), '
            "@weekly, @monthly, @yearly (@annually)"
        ) in rejected.stderr, rejected.stderr
        assert "[^" not in rejected.stderr

    crons.create("out-of-range", schedule="61 * * * *", command="a:b")
    cron = crons.wait("out-of-range", lambda o: ready(o) is not None)
    condition = ready(cron)
    assert (condition["status"], condition["reason"]) == ("False", "InvalidSchedule")
    assert "61" in condition["message"]


def test_deleting_a_commercecronjob_deletes_its_cronjob(
    crons: Crons, batch: client.BatchV1Api, custom: client.CustomObjectsApi, namespace: str
) -> None:
    crons.create("short-lived", schedule="@daily", command="a:b")
    crons.wait("short-lived", lambda o: (ready(o) or {}).get("status") == "True")
    wait_for(batch.list_namespaced_cron_job, "short-lived", lambda _: True, namespace=namespace)

    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "commercecronjobs", "short-lived")

    wait_deleted(batch.list_namespaced_cron_job, "short-lived", namespace=namespace)
