"""The CommerceJob CustomResourceDefinition, generated here and written to crds/ (a test checks they agree).

Generated rather than hand-written because ``dependingJobs`` nests: an OpenAPI schema of a CRD cannot refer to
itself, so each level is spelled out, down to MAX_DEPENDENCY_DEPTH levels below a job.

    python -m commerce_jobs.crd > crds/commercejobs.dev_commercejobs.yaml
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from commerce_jobs.retention import DURATION_PATTERN

GROUP = "commercejobs.dev"
VERSION = "v1alpha1"
MAX_DEPENDENCY_DEPTH = 3  # levels of dependingJobs below a job
MAX_DEPENDENTS = 20  # dependingJobs items per level
MAX_PARAMS = 128
MAX_PARAM_LENGTH = 4096

STATES = ["Pending", "Running", "Finished", "Failed", "Terminated", "Canceled", "Incomplete"]
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
CONSOLE_COMMAND = r"^[A-Za-z0-9_][A-Za-z0-9_:.\-]*$"


def _string(description: str, max_length: int = 253, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, "maxLength": max_length, **extra}


def _strings(description: str, max_items: int, max_length: int) -> dict[str, Any]:
    return {"type": "array", "description": description, "maxItems": max_items, "items": _string("", max_length)}


def _objects(description: str, max_items: int = 64) -> dict[str, Any]:
    """A list of Kubernetes objects whose schema the apiserver checks when the operator creates the Job."""
    return {
        "type": "array",
        "description": description,
        "maxItems": max_items,
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    }


def _string_map(description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "maxProperties": 64,
        "additionalProperties": _string("", 4096),
    }


def _command_fields() -> dict[str, Any]:
    return {
        "command": _string(
            "The console command, e.g. silver:import. It runs as consoleCommand + [command] + params.",
            253,
            pattern=CONSOLE_COMMAND,
        ),
        "params": _strings(
            "Arguments of the command, each passed as one argv item: never through a shell, so spaces, quotes "
            "and $(...) reach the command verbatim.",
            MAX_PARAMS,
            MAX_PARAM_LENGTH,
        ),
        "label": _string("A short title for people, e.g. 'Import products'.", 253),
        "description": _string("What the job does, for people.", 4096),
    }


def _dependent_schema(depth: int) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "name": _string(
            "Unique among its siblings; the dependent CommerceJob is named <parent>-<name>.", 63, pattern=DNS_LABEL
        ),
        **_command_fields(),
        "maxRuntimeSeconds": {"type": "integer", "minimum": 1, "description": "Overrides the parent's value."},
        "maxRetries": {"type": "integer", "minimum": 0, "maximum": 20, "description": "Retries after a failure."},
        "podAnnotations": _string_map("Annotations of the dependent's pods, added to the parent's."),
    }
    if depth < MAX_DEPENDENCY_DEPTH:
        properties["dependingJobs"] = _dependents(depth + 1)
    return {"type": "object", "required": ["name", "command"], "properties": properties}


def _dependents(depth: int) -> dict[str, Any]:
    return {
        "type": "array",
        "description": (
            "Jobs created as CommerceJobs after this one succeeded, and recorded as Canceled if it did not. "
            f"At most {MAX_DEPENDENTS} per job and {MAX_DEPENDENCY_DEPTH} levels deep."
        ),
        "maxItems": MAX_DEPENDENTS,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
        "items": _dependent_schema(depth),
    }


# Fields that may not change once the job exists; cancel may.
IMMUTABLE_SCALARS = (
    "command", "image", "workingDir", "serviceAccountName", "queue", "priority", "maxRuntimeSeconds",
    "maxRetries", "retryBackoffSeconds", "executeAfter", "label", "description",
)  # fmt: skip


def spec_schema() -> dict[str, Any]:
    properties: dict[str, Any] = {
        **_command_fields(),
        "image": _string("The shop's image. Default: jobDefaults.image of the operator's configuration.", 1024),
        "imagePullPolicy": {"type": "string", "enum": ["Always", "IfNotPresent", "Never"]},
        "consoleCommand": _strings("How the console is started. Default: [php, bin/console].", 16, 1024),
        "workingDir": _string("The container's working directory, e.g. /var/www/html.", 1024),
        "env": _objects("Environment variables (core/v1 EnvVar), merged by name over the operator's defaults."),
        "envFrom": _objects("Sources of environment variables (core/v1 EnvFromSource), e.g. the database secret."),
        "volumes": _objects("Volumes of the pod (core/v1 Volume), merged by name over the defaults."),
        "volumeMounts": _objects("Volume mounts of the container (core/v1 VolumeMount), merged by name."),
        "resources": {
            "type": "object",
            "description": "Requests and limits of the container (core/v1 ResourceRequirements).",
            "x-kubernetes-preserve-unknown-fields": True,
        },
        "serviceAccountName": _string("The pod's ServiceAccount.", 253),
        "nodeSelector": _string_map("Node labels that the pod requires."),
        "tolerations": _objects("Tolerations of the pod (core/v1 Toleration)."),
        "imagePullSecrets": {
            "type": "array",
            "maxItems": 16,
            "description": "Secrets to pull the image with.",
            "items": {"type": "object", "required": ["name"], "properties": {"name": _string("", 253)}},
        },
        "podAnnotations": _string_map("Annotations of the job's pods."),
        "podLabels": _string_map("Labels of the job's pods."),
        "queue": _string("The queue; the operator limits how many jobs of a queue run at once.", 63, pattern=DNS_LABEL),
        "priority": {
            "type": "integer",
            "minimum": -1000,
            "maximum": 1000,
            "description": "Among waiting jobs of a queue, higher priority starts first; then the oldest.",
        },
        "maxRuntimeSeconds": {
            "type": "integer",
            "minimum": 1,
            "description": "After this many seconds an attempt is stopped and the job becomes Terminated.",
        },
        "maxRetries": {
            "type": "integer",
            "minimum": 0,
            "maximum": 20,
            "description": "How many times a Failed, Terminated or Incomplete attempt is retried.",
        },
        "retryBackoffSeconds": {
            "type": "integer",
            "minimum": 1,
            "maximum": 3600,
            "description": "The wait before the first retry, doubled for each further one (at most one hour).",
        },
        "executeAfter": {
            "type": "string",
            "format": "date-time",
            "description": "The job does not start before this time (RFC 3339).",
        },
        "cancel": {
            "type": "boolean",
            "description": "Set to true to cancel: a running attempt is stopped, and the job becomes Canceled.",
        },
        "dependingJobs": _dependents(1),
        "retention": {
            "type": "object",
            "description": "How long the job is kept once it is final; overrides the operator's retention.",
            "properties": {
                "maxRetention": _string(
                    "Kept this long in any final state, e.g. '7 days'.", 32, pattern=DURATION_PATTERN
                ),
                "maxRetentionSucceeded": _string(
                    "Kept this long once Finished, e.g. '1 hour'.", 32, pattern=DURATION_PATTERN
                ),
            },
        },
    }
    rules = [
        {"rule": "!has(oldSelf.cancel) || !oldSelf.cancel || (has(self.cancel) && self.cancel)",
         "message": "cancel cannot be undone"},
    ]  # fmt: skip
    for name in IMMUTABLE_SCALARS:
        rules.append(
            {
                "rule": f"has(self.{name}) == has(oldSelf.{name})"
                f" && (!has(self.{name}) || self.{name} == oldSelf.{name})",
                "message": f"spec.{name} is immutable: create a new CommerceJob instead",
            }
        )
    for name in ("params", "consoleCommand", "podAnnotations", "podLabels", "nodeSelector", "dependingJobs"):
        properties[name]["x-kubernetes-validations"] = [
            {"rule": "self == oldSelf", "message": f"spec.{name} is immutable: create a new CommerceJob instead"}
        ]
    for name in ("env", "envFrom", "volumes", "volumeMounts", "resources", "tolerations", "imagePullSecrets"):
        rules.append(
            {
                "rule": f"has(self.{name}) == has(oldSelf.{name})",
                "message": f"spec.{name} is immutable: create a new CommerceJob instead",
            }
        )
    return {
        "type": "object",
        "required": ["command"],
        "properties": properties,
        "x-kubernetes-validations": rules,
    }


def status_schema() -> dict[str, Any]:
    condition = {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": _string("", 316),
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": _string("", 1024),
            "message": _string("", 32768),
            "lastTransitionTime": {"type": "string", "format": "date-time"},
            "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
        },
    }
    return {
        "type": "object",
        "description": "Written by the operator.",
        "properties": {
            "state": {"type": "string", "enum": STATES, "description": "JMSJobQueueBundle's state of the job."},
            "reason": _string("Why the job is in its state, in one CamelCase word.", 1024),
            "message": _string("What happened, for people.", 32768),
            "conditions": {
                "type": "array",
                "maxItems": 16,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
                "items": condition,
            },
            "observedGeneration": {"type": "integer", "format": "int64"},
            "startTime": {"type": "string", "format": "date-time"},
            "completionTime": {"type": "string", "format": "date-time"},
            "duration": _string("How long the job ran, e.g. 1m12s.", 64),
            "exitCode": {"type": "integer", "nullable": True},
            "attempts": {"type": "integer", "minimum": 0},
            "nextAttemptTime": {"type": "string", "format": "date-time", "description": "When a retry starts."},
            "jobName": _string("The batch Job of the current attempt.", 253),
            "dependents": {
                "type": "array",
                "maxItems": 8421,  # 20 + 20^2 + 20^3: every level of dependingJobs
                "items": {
                    "type": "object",
                    "properties": {"name": _string("", 253), "state": _string("", 32)},
                },
            },
            "output": _string("The last bytes of the command's output (stdout and stderr).", 600 * 1024),
            "outputTruncated": {"type": "boolean"},
        },
    }


def crd() -> dict[str, Any]:
    columns = [
        {"name": "Command", "type": "string", "jsonPath": ".spec.command"},
        {"name": "State", "type": "string", "jsonPath": ".status.state"},
        {"name": "Exit", "type": "integer", "jsonPath": ".status.exitCode"},
        {"name": "Attempts", "type": "integer", "jsonPath": ".status.attempts"},
        {"name": "Duration", "type": "string", "jsonPath": ".status.duration"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "Queue", "type": "string", "jsonPath": ".spec.queue", "priority": 1},
        {"name": "Priority", "type": "integer", "jsonPath": ".spec.priority", "priority": 1},
        {"name": "Job", "type": "string", "jsonPath": ".status.jobName", "priority": 1},
        {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "priority": 1},
        {"name": "Label", "type": "string", "jsonPath": ".spec.label", "priority": 1},
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"commercejobs.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": "CommerceJob",
                "listKind": "CommerceJobList",
                "plural": "commercejobs",
                "singular": "commercejob",
                "shortNames": ["cjob"],  # not cj: that is CronJob's
                "categories": ["commerce"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "One run of a console command of the shop, as a Kubernetes Job.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


def render() -> str:
    header = "# Generated by `python -m commerce_jobs.crd`; do not edit by hand.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=120)


if __name__ == "__main__":
    sys.stdout.write(render())
