"""The project's three CustomResourceDefinitions (CommerceJob, CommerceJobTemplate, CommerceCronJob), generated here
and written to crds/ (a test checks they agree).

Generated rather than hand-written because ``dependingJobs`` nests: an OpenAPI schema of a CRD cannot refer to
itself, so each level is spelled out, down to MAX_DEPENDENCY_DEPTH levels below a job.

    python -m commerce_jobs.crd      # writes crds/ and charts/commerce-jobs/crds/
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from commerce_jobs.api_names import (
    COMMERCECRONJOB,
    COMMERCECRONJOBS,
    COMMERCEJOB,
    COMMERCEJOBS,
    COMMERCEJOBTEMPLATE,
    COMMERCEJOBTEMPLATES,
    GROUP,
    STATES,
    VERSION,
)
from commerce_jobs.retention import DURATION_PATTERN

MAX_DEPENDENCY_DEPTH = 3  # levels of dependingJobs below a job
MAX_DEPENDENTS = 20  # dependingJobs items per level
MAX_PARAMS = 128
MAX_PARAM_LENGTH = 4096

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
CONSOLE_COMMAND = r"^[A-Za-z0-9_][A-Za-z0-9_:.\-]*$"
NO_NUL = r"^[^\x00]*$"  # execve ends an argument at NUL: such a param could never reach the command verbatim


def _string(description: str, max_length: int = 253, **extra: Any) -> dict[str, Any]:
    # No `description: ''`: the apiserver drops empty strings when it stores a CRD, and a stored CRD that differs
    # from the applied one makes server-side apply of a second manager (helm after kubectl, or the other way round)
    # conflict on .spec.versions.
    schema: dict[str, Any] = {"type": "string", "maxLength": max_length, **extra}
    if description:
        schema["description"] = description
    return schema


def _strings(description: str, max_items: int, max_length: int) -> dict[str, Any]:
    return {"type": "array", "description": description, "maxItems": max_items, "items": _string("", max_length)}


def _objects(description: str, max_items: int = 64, key: str | None = None) -> dict[str, Any]:
    """A list of Kubernetes objects whose schema the apiserver checks when the operator creates the Job; ``key`` is
    the field that the operator merges them by, so it is required here already."""
    items: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if key:
        items["required"] = [key]
        items["properties"] = {key: _string("", 4096, minLength=1)}
    return {"type": "array", "description": description, "maxItems": max_items, "items": items}


def _kubernetes_object(description: str) -> dict[str, Any]:
    """A Kubernetes object that the operator passes into the Job as it is: its keys are kept as written (none pruned
    here), and the apiserver checks them when the operator creates the Job, as it would in a Job written by hand."""
    return {"type": "object", "description": description, "x-kubernetes-preserve-unknown-fields": True}


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
        "params": {
            **_strings(
                "Arguments of the command, each passed as one argv item: never through a shell, so spaces, quotes, "
                "newlines and $(...) reach the command verbatim. Only NUL cannot be in an argv item.",
                MAX_PARAMS,
                MAX_PARAM_LENGTH,
            ),
            "items": _string("", MAX_PARAM_LENGTH, pattern=NO_NUL),
        },
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
    schema: dict[str, Any] = {"type": "object", "required": ["name", "command"], "properties": properties}
    if depth < MAX_DEPENDENCY_DEPTH:
        properties["dependingJobs"] = _dependents(depth + 1)
    else:
        # Declared only to be refused with a message: left out, a deeper level would be an unknown field, which
        # clients without strict field validation (the Python client, kopf) would see silently pruned.
        properties["dependingJobs"] = {
            "type": "array",
            "maxItems": MAX_DEPENDENTS,
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        }
        schema["x-kubernetes-validations"] = [
            {
                "rule": "!has(self.dependingJobs)",
                "message": f"dependingJobs nest at most {MAX_DEPENDENCY_DEPTH} levels below a job",
            }
        ]
    return schema


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


def job_properties() -> dict[str, Any]:
    """The fields of a job: a CommerceJob's spec, and what a CommerceJobTemplate holds for one."""
    return {
        **_command_fields(),
        "image": _string("The shop's image. Default: jobDefaults.image of the operator's configuration.", 1024),
        "imagePullPolicy": {"type": "string", "enum": ["Always", "IfNotPresent", "Never"]},
        "consoleCommand": _strings("How the console is started. Default: [php, bin/console].", 16, 1024),
        "workingDir": _string("The container's working directory, e.g. /var/www/html.", 1024),
        "env": _objects(
            "Environment variables (core/v1 EnvVar), merged by name over the operator's defaults.", key="name"
        ),
        "envFrom": _objects("Sources of environment variables (core/v1 EnvFromSource), e.g. the database secret."),
        "volumes": _objects("Volumes of the pod (core/v1 Volume), merged by name over the defaults.", key="name"),
        "volumeMounts": _objects(
            "Volume mounts of the container (core/v1 VolumeMount), merged by mountPath over the defaults.",
            key="mountPath",
        ),
        "resources": _kubernetes_object("Requests and limits of the container (core/v1 ResourceRequirements)."),
        "podSecurityContext": _kubernetes_object(
            "The pod's securityContext (core/v1 PodSecurityContext), laid over the restricted baseline (runAsNonRoot, "
            "seccomp RuntimeDefault); replaces jobDefaults.podSecurityContext as a whole."
        ),
        "securityContext": _kubernetes_object(
            "The container's securityContext (core/v1 SecurityContext), laid over the restricted baseline (no "
            "privilege escalation, all capabilities dropped); replaces jobDefaults.securityContext as a whole."
        ),
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


def _immutable(name: str) -> dict[str, str]:
    # Once set, a field keeps its value. An unset one may be filled only in a job started from a template: the
    # operator copies the template's fields into the job once, before it starts.
    return {
        "rule": f"has(oldSelf.{name}) ? (has(self.{name}) && self.{name} == oldSelf.{name})"
        f" : (!has(self.{name}) || has(self.templateRef))",
        "message": f"spec.{name} is immutable: create a new CommerceJob instead",
    }


def _present_once_set(name: str) -> dict[str, str]:
    return {
        "rule": f"has(oldSelf.{name}) ? has(self.{name}) : (!has(self.{name}) || has(self.templateRef))",
        "message": f"spec.{name} is immutable: create a new CommerceJob instead",
    }


def spec_schema() -> dict[str, Any]:
    properties = job_properties()
    properties["templateRef"] = {
        "type": "object",
        "description": "Take the job from this CommerceJobTemplate (of the same namespace); fields set here win.",
        "required": ["name"],
        "properties": {"name": _string("The template's name.", 253)},
        "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "spec.templateRef is immutable"}],
    }
    rules = [
        {"rule": "has(self.command) || has(self.templateRef)",
         "message": "spec.command is required (or spec.templateRef, to take it from a template)"},
        {"rule": "!has(oldSelf.cancel) || !oldSelf.cancel || (has(self.cancel) && self.cancel)",
         "message": "cancel cannot be undone"},
        {"rule": "has(self.templateRef) == has(oldSelf.templateRef)", "message": "spec.templateRef is immutable"},
    ]  # fmt: skip
    rules += [_immutable(name) for name in IMMUTABLE_SCALARS]
    # A field's own rule compares its value (CEL sees inside the free-form Kubernetes objects too); it runs only when
    # the field is in both versions, so the spec-level rule decides whether it may appear or go.
    for name in ("params", "consoleCommand", "podAnnotations", "podLabels", "nodeSelector", "dependingJobs", "env",
                 "envFrom", "volumes", "volumeMounts", "resources", "tolerations", "imagePullSecrets",
                 "podSecurityContext", "securityContext"):  # fmt: skip
        properties[name]["x-kubernetes-validations"] = [
            {"rule": "self == oldSelf", "message": f"spec.{name} is immutable: create a new CommerceJob instead"}
        ]
        rules.append(_present_once_set(name))
    return {"type": "object", "properties": properties, "x-kubernetes-validations": rules}


def template_spec_schema() -> dict[str, Any]:
    properties = job_properties()
    del properties["cancel"], properties["executeAfter"]
    return {"type": "object", "required": ["command"], "properties": properties}


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
            "state": {"type": "string", "enum": list(STATES), "description": "JMSJobQueueBundle's state of the job."},
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


def _crd(
    kind: str, plural: str, short: str, description: str, schema: dict[str, Any], columns: list[dict[str, Any]]
) -> dict[str, Any]:
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "additionalPrinterColumns": columns,
        "schema": {
            "openAPIV3Schema": {
                "type": "object",
                "description": description,
                "required": ["spec"],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object"},
                    **schema,
                },
            }
        },
    }
    if "status" in schema:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short],
                "categories": ["commerce"],
            },
            "versions": [version],
            # The apiserver's default, written out: the stored CRD then equals this file, field for field.
            "conversion": {"strategy": "None"},
        },
    }


def _column(name: str, json_path: str, kind: str = "string", wide: bool = False) -> dict[str, Any]:
    """A printer column of `kubectl get`; a wide one shows only with `-o wide` (priority 1)."""
    column: dict[str, Any] = {"name": name, "type": kind, "jsonPath": json_path}
    if wide:
        column["priority"] = 1
    return column


AGE_COLUMN = _column("Age", ".metadata.creationTimestamp", "date")


def commercejob_crd() -> dict[str, Any]:
    columns: list[dict[str, Any]] = [
        _column("Command", ".spec.command"),
        _column("State", ".status.state"),
        _column("Exit", ".status.exitCode", "integer"),
        _column("Attempts", ".status.attempts", "integer"),
        _column("Duration", ".status.duration"),
        AGE_COLUMN,
        _column("Queue", ".spec.queue", wide=True),
        _column("Priority", ".spec.priority", "integer", wide=True),
        _column("Job", ".status.jobName", wide=True),
        _column("Reason", ".status.reason", wide=True),
        _column("Label", ".spec.label", wide=True),
        _column("Template", ".spec.templateRef.name", wide=True),
        DEPENDENCIES_COLUMN,
    ]
    # cjob, not cj: that is CronJob's.
    description = "One run of a console command of the shop, as a Kubernetes Job."
    schema = {"spec": with_depends_on(spec_schema()), "status": with_dependencies(status_schema())}
    crd = _crd(COMMERCEJOB, COMMERCEJOBS, "cjob", description, schema, columns)
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"] = [NOT_ITSELF]
    return crd


# -- spec.dependsOn (commerce_jobs.dependencies): CommerceJobs only, not templates or CommerceCronJobs ----------------
MAX_DEPENDS_ON = 100
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DEPENDENCIES_COLUMN = _column("Waiting On", ".status.waitingOn", wide=True)
# Only at the root does CEL see the job's name.
NOT_ITSELF = {
    "rule": "!has(self.spec.dependsOn) || !(self.metadata.name in self.spec.dependsOn)",
    "message": "a job cannot depend on itself",
    "fieldPath": ".spec.dependsOn",
}


def with_depends_on(spec: dict[str, Any]) -> dict[str, Any]:
    spec["properties"]["dependsOn"] = {
        "type": "array",
        "description": (
            "CommerceJobs of this namespace that must all be Finished before this one starts (JMSJobQueueBundle's "
            "addDependency). If one ends otherwise, this job is Canceled. A name must exist, or be created within "
            "the operator's dependencyGraceSeconds, else the job fails; a cycle fails its jobs."
        ),
        "maxItems": MAX_DEPENDS_ON,
        "x-kubernetes-list-type": "set",  # a name twice is refused ("Duplicate value")
        "items": {
            "type": "string",
            "minLength": 1,
            "maxLength": 253,
            # A rule with a message rather than `pattern`, whose refusal would quote the regular expression.
            "x-kubernetes-validations": [
                {
                    "rule": f"self.matches({DNS_SUBDOMAIN!r})",
                    "message": "must be the name of a CommerceJob: lowercase letters, digits, '-' and '.'",
                }
            ],
        },
        "x-kubernetes-validations": [
            {"rule": "self == oldSelf", "message": "spec.dependsOn is immutable: create a new CommerceJob instead"}
        ],
    }
    spec["x-kubernetes-validations"].append(
        {"rule": "has(self.dependsOn) == has(oldSelf.dependsOn)",
         "message": "spec.dependsOn is immutable: create a new CommerceJob instead"}
    )  # fmt: skip
    return spec


def with_dependencies(status: dict[str, Any]) -> dict[str, Any]:
    status["properties"]["dependencies"] = {
        "type": "array",
        "description": "Each job of spec.dependsOn with its state (NotFound while it does not exist).",
        "maxItems": MAX_DEPENDS_ON,
        "items": {
            "type": "object",
            "properties": {"name": _string("A job of spec.dependsOn.", 253), "state": _string("Its state.", 32)},
        },
    }
    status["properties"]["waitingOn"] = _string(
        "The jobs of spec.dependsOn that are not Finished yet, while this one waits for them.", MAX_DEPENDS_ON * 255
    )
    return status


def commercejobtemplate_crd() -> dict[str, Any]:
    columns: list[dict[str, Any]] = [
        _column("Label", ".spec.label"),
        _column("Command", ".spec.command"),
        AGE_COLUMN,
        _column("Description", ".spec.description", wide=True),
    ]
    description = "A configured job that people start with one click (the Back Office's add_jobs)."
    return _crd(COMMERCEJOBTEMPLATE, COMMERCEJOBTEMPLATES, "cjobtpl", description,
                {"spec": template_spec_schema()}, columns)  # fmt: skip


SCHEDULE_PATTERN = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|([^\s]+\s+){4}[^\s]+)$"
SCHEDULE_HELP = (
    'a schedule is 5 fields (minute hour day-of-month month day-of-week, e.g. "*/5 * * * *") '
    "or one of @hourly, @daily (@midnight), @weekly, @monthly, @yearly (@annually)"
)


def cron_spec_schema() -> dict[str, Any]:
    properties = job_properties()
    del properties["cancel"], properties["executeAfter"]
    properties.update(
        {
            "schedule": {
                **_string("When runs start, in cron syntax: '*/5 * * * *', or @hourly, @daily ...", 256),
                # A rule with a message rather than `pattern`, whose refusal would quote the regular expression.
                "x-kubernetes-validations": [
                    # The apiserver puts the refused value before the message: `Invalid value: "* * * *": ...`.
                    {"rule": f"self.matches({SCHEDULE_PATTERN!r})", "message": SCHEDULE_HELP}
                ],
            },
            "timeZone": _string("The schedule's time zone, e.g. Europe/Berlin (default: the controller's, UTC).", 64),
            "concurrencyPolicy": {
                "type": "string",
                "enum": ["Allow", "Forbid", "Replace"],
                "description": "Whether a run may start while the previous one still runs. Default: Forbid.",
            },
            "suspend": {"type": "boolean", "description": "No new runs while true; running ones go on."},
            "startingDeadlineSeconds": {
                "type": "integer",
                "minimum": 1,
                "description": "A run that missed its time by more than this is skipped.",
            },
            "successfulJobsHistoryLimit": {"type": "integer", "minimum": 0, "maximum": 100},
            "failedJobsHistoryLimit": {"type": "integer", "minimum": 0, "maximum": 100},
        }
    )
    return {"type": "object", "required": ["schedule", "command"], "properties": properties}


def cron_status_schema() -> dict[str, Any]:
    status = status_schema()
    condition = status["properties"]["conditions"]
    return {
        "type": "object",
        "description": "Written by the operator.",
        "properties": {
            "conditions": condition,
            "observedGeneration": {"type": "integer", "format": "int64"},
            "cronJobName": _string("The batch CronJob that schedules the runs.", 253),
            "lastScheduleTime": {"type": "string", "format": "date-time"},
            "lastSuccessfulTime": {"type": "string", "format": "date-time"},
            "active": {"type": "integer", "minimum": 0, "description": "Runs that have not finished."},
            "lastRun": {
                "type": "object",
                "description": "The newest run, a CommerceJob.",
                "properties": {
                    "name": _string("", 253),
                    "state": _string("", 32),
                    "completionTime": {"type": "string", "format": "date-time"},
                },
            },
        },
    }


def commercecronjob_crd() -> dict[str, Any]:
    columns: list[dict[str, Any]] = [
        _column("Schedule", ".spec.schedule"),
        _column("Command", ".spec.command"),
        _column("Suspend", ".spec.suspend", "boolean"),
        _column("Last Run", ".status.lastRun.state"),
        _column("Last Schedule", ".status.lastScheduleTime", "date"),
        AGE_COLUMN,
        _column("Ready", '.status.conditions[?(@.type=="Ready")].status', wide=True),
        _column("Time Zone", ".spec.timeZone", wide=True),
    ]  # fmt: skip
    description = "A crontab task of the shop: runs its console command on a schedule, each run a CommerceJob."
    return _crd(COMMERCECRONJOB, COMMERCECRONJOBS, "cjcron", description,
                {"spec": cron_spec_schema(), "status": cron_status_schema()}, columns)  # fmt: skip


CRDS = {
    f"{GROUP}_{COMMERCEJOBS}.yaml": commercejob_crd,
    f"{GROUP}_{COMMERCEJOBTEMPLATES}.yaml": commercejobtemplate_crd,
    f"{GROUP}_{COMMERCECRONJOBS}.yaml": commercecronjob_crd,
}


def render(builder: Any = commercejob_crd) -> str:
    header = "# Generated by `python -m commerce_jobs.crd`; do not edit by hand.\n"
    return header + yaml.safe_dump(builder(), sort_keys=False, width=120)


def write_all(directory: Path) -> None:
    for filename, builder in CRDS.items():
        (directory / filename).write_text(render(builder))


if __name__ == "__main__":
    # crds/ for `kubectl apply`, and the chart's copy, which helm installs before the templates.
    for target in sys.argv[1:] or ["crds", "charts/commerce-jobs/crds"]:
        write_all(Path(target))
