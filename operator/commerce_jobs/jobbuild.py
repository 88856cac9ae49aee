"""spec -> manifest: the batch/v1 Job that runs one attempt of a CommerceJob (pure, no API calls).

The console command goes into the container as an argv list: ``consoleCommand + [command] + params``. No shell ever
sees it, so a parameter such as ``$(rm -rf /)`` reaches PHP as exactly those characters.
"""

from __future__ import annotations

import copy
from typing import Any

from commerce_jobs import policy
from commerce_jobs.api_names import (
    API_VERSION,
    ATTEMPT_LABEL,
    COMMERCEJOB_ANNOTATION,
    CONTAINER,
    MANAGED_BY,
    OWNER_LABEL,
)
from commerce_jobs.config import OperatorConfig
from commerce_jobs.fields import spec_of
from commerce_jobs.names import shortened

DEFAULT_CONSOLE = ["php", "bin/console"]
MAX_JOB_NAME = 63  # a Job's name becomes a label value of its pods

# maxRuntimeSeconds is the pod's activeDeadlineSeconds: past it, the kubelet stops the container (SIGTERM, then SIGKILL
# after the pod's grace period) and the pod stays, Failed with reason DeadlineExceeded, its log readable: the job's
# output. The Job's own activeDeadlineSeconds is only a safety net for a pod whose deadline never started (it never
# reached a node); it comes after the pod's deadline and the grace period, because when it passes the Job controller
# deletes the pod at once, and its log with it.
POD_GRACE_SECONDS = 30  # Kubernetes' default terminationGracePeriodSeconds: the builder sets none
JOB_DEADLINE_MARGIN_SECONDS = POD_GRACE_SECONDS + 30

# The restricted Pod Security Standard: what a job pod gets unless the defaults or the job loosen it.
RESTRICTED_POD_SECURITY: dict[str, Any] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}

# Fields where the job's value replaces the default's as a whole.
REPLACED_FIELDS = (
    "image", "consoleCommand", "workingDir", "resources", "serviceAccountName", "nodeSelector", "tolerations",
    "imagePullSecrets", "imagePullPolicy", "podSecurityContext", "securityContext",
)  # fmt: skip
# List fields merged by key: the job's entries override the defaults' entries with the same key. Mounts are keyed by
# mountPath, not name: one volume is often mounted twice (var/cache and var/log from subPaths of one emptyDir).
MERGED_BY_KEY = {"env": "name", "volumes": "name", "volumeMounts": "mountPath"}


class InvalidSpec(ValueError):
    """A CommerceJob that the schema let through but that cannot run; the message tells the user what to fix."""

    reason = "InvalidSpec"  # of the status condition that refuses the job


class CommandNotAllowed(InvalidSpec):
    """The job's command (or a dependent's, or its console) is outside the operator's allowedCommands."""

    reason = "CommandNotAllowed"


def effective_spec(spec: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """A job's spec over the operator-wide defaults: a job names only what differs."""
    merged = {k: copy.deepcopy(v) for k, v in defaults.items()}
    for name in REPLACED_FIELDS:
        if spec.get(name) not in (None, "", [], {}):
            merged[name] = copy.deepcopy(spec[name])
    for name, key in MERGED_BY_KEY.items():
        by_key = _keyed(f"jobDefaults.{name}", key, defaults.get(name))
        by_key.update(_keyed(f"spec.{name}", key, spec.get(name)))
        if by_key:
            merged[name] = copy.deepcopy(list(by_key.values()))
    # envFrom entries have no name: the defaults' come first, so the job's win on duplicate keys (later wins).
    env_from = list(defaults.get("envFrom") or []) + list(spec.get("envFrom") or [])
    if env_from:
        merged["envFrom"] = copy.deepcopy(env_from)
    for name in ("podAnnotations", "podLabels"):
        combined = {**(defaults.get(name) or {}), **(spec.get(name) or {})}
        if combined:
            merged[name] = combined
    for name in ("command", "params", "maxRuntimeSeconds"):
        if name in spec:
            merged[name] = copy.deepcopy(spec[name])
    return merged


def _keyed(where: str, key: str, items: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    # The schema keeps these items as free-form objects (the apiserver checks them only in the Job), so an item
    # without its key reaches us: fail the job with a message rather than the reconcile with a KeyError.
    by_key: dict[str, dict[str, Any]] = {}
    for index, item in enumerate(items or []):
        if not isinstance(item, dict) or not isinstance(item.get(key), str) or not item[key]:
            raise InvalidSpec(f"{where}[{index}] has no {key}")
        by_key[item[key]] = item
    return by_key


def job_name(cjob_name: str, attempt: int) -> str:
    """``<commercejob>-<attempt>``; a name too long for a label value is cut and given a stable hash."""
    return shortened(cjob_name, MAX_JOB_NAME, suffix=f"-{attempt}")


def argv(spec: dict[str, Any]) -> list[str]:
    return [*(spec.get("consoleCommand") or DEFAULT_CONSOLE), spec["command"], *(spec.get("params") or [])]


def job_manifest(cjob: dict[str, Any], attempt: int, config: OperatorConfig) -> dict[str, Any]:
    meta = cjob["metadata"]
    spec = effective_spec(spec_of(cjob), config.job_defaults)
    if not spec.get("image"):
        raise InvalidSpec("no image: set spec.image, or jobDefaults.image in the operator's configuration")
    if not spec.get("command"):
        raise InvalidSpec("no command: set spec.command (or spec.templateRef)")
    default_console = config.job_defaults.get("consoleCommand") or DEFAULT_CONSOLE
    refused = policy.refusal(spec_of(cjob), config.allowed_commands, default_console)
    if refused:
        raise CommandNotAllowed(refused)
    name = job_name(meta["name"], attempt)
    # Label values are at most 63 characters; the owner's full name is in an annotation and the ownerReference.
    labels = {**MANAGED_BY, OWNER_LABEL: shortened(meta["name"], MAX_JOB_NAME), ATTEMPT_LABEL: str(attempt)}

    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec["image"],
        "command": argv(spec),
        "securityContext": {**RESTRICTED_CONTAINER_SECURITY, **(spec.get("securityContext") or {})},
    }
    for field_name in ("workingDir", "env", "envFrom", "volumeMounts", "resources", "imagePullPolicy"):
        if spec.get(field_name):
            container[field_name] = spec[field_name]

    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "securityContext": {**RESTRICTED_POD_SECURITY, **(spec.get("podSecurityContext") or {})},
    }
    for field_name in ("volumes", "serviceAccountName", "nodeSelector", "tolerations", "imagePullSecrets"):
        if spec.get(field_name):
            pod_spec[field_name] = spec[field_name]

    job_spec: dict[str, Any] = {
        "backoffLimit": 0,  # the operator owns the retries: one Job per attempt
        "template": {
            "metadata": {
                "labels": {**(spec.get("podLabels") or {}), **labels},
                "annotations": dict(spec.get("podAnnotations") or {}),
            },
            "spec": pod_spec,
        },
    }
    if spec.get("maxRuntimeSeconds"):
        pod_spec["activeDeadlineSeconds"] = int(spec["maxRuntimeSeconds"])
        job_spec["activeDeadlineSeconds"] = int(spec["maxRuntimeSeconds"]) + JOB_DEADLINE_MARGIN_SECONDS

    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": {COMMERCEJOB_ANNOTATION: meta["name"]},
            "ownerReferences": [controller_reference(cjob, "CommerceJob")],
        },
        "spec": job_spec,
    }


def controller_reference(owner: dict[str, Any], kind: str) -> dict[str, Any]:
    """The ownerReference that makes ``owner`` (one of the project's kinds) the controller of an object."""
    meta = owner["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
