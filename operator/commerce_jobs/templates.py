"""The platform's configured jobs (``siso_control_center.<scope>.add_jobs``) as CommerceJobTemplates (pure).

parameters:
    siso_control_center.default.add_jobs:
        import_solr:
            label: "Import from eZ"
            desc: "Starts import from a remote system"
            command: "silver:import"
            params: [tmp]
            depending_jobs:
                index_solr:
                    label: "Index econtent tmp cores"
                    command: "ibexa:commerce:index-econtent-job"
"""

from __future__ import annotations

import re
from typing import Any

from commerce_jobs.api_names import ADD_JOBS_ID_ANNOTATION, API_VERSION, COMMERCEJOBTEMPLATE
from commerce_jobs.names import shortened

MAX_NAME = 63  # a template's name is also a dependingJobs item's name, a DNS label
ADD_JOBS = re.compile(r"^siso_control_center\.([^.]+)\.add_jobs$")
# The keys of an add_jobs entry, in the order that the platform's documentation gives them.
ACCEPTED_KEYS = ("label", "desc", "command", "params", "depending_jobs")


class ConfigImportError(ValueError):
    """The file is not the platform's add_jobs configuration; the message names the offending entry."""


def dns_name(job_id: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", str(job_id).lower()).strip("-")
    if not name:
        raise ConfigImportError(f"job id {job_id!r} gives no usable name")
    # Cut with a hash: two long ids that begin alike stay two templates.
    return shortened(name, MAX_NAME)


def _params(job_id: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(p, str | int | float) for p in value):
        raise ConfigImportError(f"{job_id}: params must be a list of strings")
    return [str(p) for p in value]


def _job(job_id: str, entry: Any, depth: int) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise ConfigImportError(f"{job_id}: expected a mapping with the keys {', '.join(ACCEPTED_KEYS)}")
    command = entry.get("command")
    if not isinstance(command, str) or not command.strip():
        raise ConfigImportError(f"{job_id}: no command")
    unknown = set(map(str, entry)) - set(ACCEPTED_KEYS)
    if unknown:
        raise ConfigImportError(
            f"{job_id}: unknown keys {', '.join(sorted(unknown))} (an entry has only {', '.join(ACCEPTED_KEYS)})"
        )
    job: dict[str, Any] = {"command": command.strip()}
    if entry.get("label"):
        job["label"] = str(entry["label"])
    if entry.get("desc"):
        job["description"] = str(entry["desc"])
    params = _params(job_id, entry.get("params"))
    if params:
        job["params"] = params
    depending = entry.get("depending_jobs") or {}
    if depending:
        if depth >= 3:
            raise ConfigImportError(f"{job_id}: depending_jobs nest deeper than 3 levels")
        if isinstance(depending, list):  # also accept a list of entries that carry their own ids
            depending = {d.get("name", f"job-{i}"): d for i, d in enumerate(depending)}
        if not isinstance(depending, dict):
            raise ConfigImportError(f"{job_id}: depending_jobs must be a mapping")
        job["dependingJobs"] = [
            {"name": dns_name(sub_id), **_job(f"{job_id}.{sub_id}", sub, depth + 1)}
            for sub_id, sub in depending.items()
        ]
    return job


def add_jobs_of(config: Any) -> dict[str, Any]:
    """Finds the add_jobs mapping: under parameters (any scope), at the top, or the file is the mapping itself."""
    if not isinstance(config, dict):
        raise ConfigImportError("expected a YAML mapping")
    parameters = config.get("parameters", config)
    if not isinstance(parameters, dict):
        raise ConfigImportError("parameters must be a mapping")
    found: dict[str, Any] = {}
    for key, value in parameters.items():
        if ADD_JOBS.match(str(key)) or key == "add_jobs":
            if not isinstance(value, dict):
                raise ConfigImportError(f"{key} must be a mapping of job ids")
            found.update(value)
    if not found and "parameters" not in config:
        found = parameters
    if not found:
        raise ConfigImportError("no siso_control_center.<scope>.add_jobs found")
    return found


def templates_from_config(config: Any, namespace: str | None = None) -> list[dict[str, Any]]:
    templates = []
    for job_id, entry in add_jobs_of(config).items():
        metadata: dict[str, Any] = {"name": dns_name(job_id), "annotations": {ADD_JOBS_ID_ANNOTATION: job_id}}
        if namespace:
            metadata["namespace"] = namespace
        templates.append(
            {
                "apiVersion": API_VERSION,
                "kind": COMMERCEJOBTEMPLATE,
                "metadata": metadata,
                "spec": _job(job_id, entry, 1),
            }
        )
    return templates
