"""spec -> manifest for crontab tasks (pure): the batch/v1 CronJob of a CommerceCronJob, and the CommerceJob that
records each of its runs.

The CronJob starts the console command itself, as a Job built like any attempt of a CommerceJob, so schedules keep
running while the operator is down. The operator then adopts each Job it sees: it creates a CommerceJob of the same
name that points at the Job, so every run shows in `kubectl get commercejobs`, with its state, output, retries and
dependents.
"""

from __future__ import annotations

from typing import Any

from commerce_jobs.api_names import ADOPTED_JOB_ANNOTATION, API_VERSION, CRON_LABEL, MANAGED_BY
from commerce_jobs.config import OperatorConfig
from commerce_jobs.fields import spec_of
from commerce_jobs.jobbuild import controller_reference, job_manifest
from commerce_jobs.names import shortened

CRON_ONLY_FIELDS = (
    "schedule", "timeZone", "concurrencyPolicy", "suspend", "startingDeadlineSeconds",
    "successfulJobsHistoryLimit", "failedJobsHistoryLimit",
)  # fmt: skip
MAX_CRONJOB_NAME = 52  # the CronJob controller appends 11 characters to name its Jobs


def run_spec(cron: dict[str, Any]) -> dict[str, Any]:
    """The spec of each run: the CommerceCronJob's job fields."""
    return {k: v for k, v in spec_of(cron).items() if k not in CRON_ONLY_FIELDS}


def cronjob_name(name: str) -> str:
    return shortened(name, MAX_CRONJOB_NAME)


def _owner(cron: dict[str, Any]) -> dict[str, Any]:
    return controller_reference(cron, "CommerceCronJob")


def cronjob_manifest(cron: dict[str, Any], config: OperatorConfig) -> dict[str, Any]:
    """Raises jobbuild.InvalidSpec when the job part cannot run (no image anywhere, ...)."""
    meta, spec = cron["metadata"], spec_of(cron)
    name = cronjob_name(meta["name"])
    run = {"metadata": {"name": name, "namespace": meta["namespace"], "uid": meta["uid"]}, "spec": run_spec(cron)}
    job = job_manifest(run, 1, config)
    cron_label = {CRON_LABEL: name}
    job["spec"]["template"]["metadata"]["labels"].update(cron_label)
    cron_spec: dict[str, Any] = {
        "schedule": spec["schedule"],
        "concurrencyPolicy": spec.get("concurrencyPolicy", "Forbid"),
        "suspend": bool(spec.get("suspend", False)),
        "jobTemplate": {
            "metadata": {"labels": {**job["metadata"]["labels"], **cron_label}, "annotations": {}},
            "spec": job["spec"],
        },
    }
    for field in ("timeZone", "startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        if field in spec:
            cron_spec[field] = spec[field]
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {**MANAGED_BY, **cron_label},
            "ownerReferences": [_owner(cron)],
        },
        "spec": cron_spec,
    }


def adopted_run(cron: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """The CommerceJob that records one run: named as its Job, owned by the CommerceCronJob."""
    job_meta = job["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": "CommerceJob",
        "metadata": {
            "name": job_meta["name"],
            "namespace": job_meta["namespace"],
            "labels": {**MANAGED_BY, CRON_LABEL: (job_meta.get("labels") or {}).get(CRON_LABEL, "")},
            "annotations": {ADOPTED_JOB_ANNOTATION: job_meta["name"]},
            "ownerReferences": [_owner(cron)],
        },
        "spec": run_spec(cron),
    }
