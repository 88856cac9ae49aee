"""`commerce-jobs start TEMPLATE`: the Back Office's Start button, on the command line (and as `kubectl commercejob`).

Creates a CommerceJob from the template; with --wait, follows it (and then its dependents) until they are final,
printing each state as it changes; with --follow, also prints the command's output as it is written.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from commerce_jobs.kubeapi import CONTAINER, GROUP, PLURAL, VERSION
from commerce_jobs.lifecycle import FINAL_STATES, FINISHED

TEMPLATE_LABEL = "commercejobs.dev/template"


STARTED_BY_ANNOTATION = "commercejobs.dev/started-by"
RETRY_OF_ANNOTATION = "commercejobs.dev/retry-of"
# What a retry does not take from the job it repeats: a cancel, and a start time that has passed.
NOT_RETRIED = ("cancel", "executeAfter")


def from_template(template: str, started_by: str | None = None, after: Sequence[str] = ()) -> dict[str, Any]:
    """A new CommerceJob that runs a template (the operator copies the template's fields into it); ``after``: the
    jobs that must have Finished before it starts (spec.dependsOn)."""
    metadata: dict[str, Any] = {"generateName": f"{template[:56]}-", "labels": {TEMPLATE_LABEL: template[:63]}}
    if started_by:
        metadata["annotations"] = {STARTED_BY_ANNOTATION: started_by}
    spec: dict[str, Any] = {"templateRef": {"name": template}}
    if after:
        spec["dependsOn"] = list(dict.fromkeys(after))
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CommerceJob", "metadata": metadata, "spec": spec}


class NoSuchDependency(LookupError):
    """A name given to --after is not a CommerceJob of the namespace."""


def retry_of(job: dict[str, Any], started_by: str | None = None) -> dict[str, Any]:
    """A new CommerceJob that runs a failed (or canceled) one again: the same spec (command, params, queue,
    dependents ...), a fresh name. Not owned by the old job's parent: it is a new run of its own."""
    meta = job["metadata"]
    annotations = {RETRY_OF_ANNOTATION: meta["name"]}
    if started_by:
        annotations[STARTED_BY_ANNOTATION] = started_by
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k == TEMPLATE_LABEL}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CommerceJob",
        "metadata": {"generateName": f"{meta['name'][:50]}-retry-", "labels": labels, "annotations": annotations},
        "spec": {k: v for k, v in (job.get("spec") or {}).items() if k not in NOT_RETRIED},
    }


class Starter:
    def __init__(self, api: client.ApiClient, namespace: str, out: TextIO = sys.stdout) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.out = out

    def create(self, template: str, after: Sequence[str] = ()) -> str:
        self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "commercejobtemplates", template)
        for dependency in after:  # a typo is refused here, not 5 minutes later by the operator (DependencyNotFound)
            try:
                self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, dependency)
            except ApiException as e:
                if e.status == 404:
                    message = f"no CommerceJob {dependency!r} in namespace {self.namespace!r} (--after)"
                    raise NoSuchDependency(message) from e
                raise
        created = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, from_template(template, after=after)
        )
        name: str = created["metadata"]["name"]
        self._say(f"commercejob.{GROUP}/{name} created from template {template}")
        return name

    def follow(self, name: str, show_output: bool) -> bool:
        """Waits until the job and every dependent it created are final. True when all of them Finished."""
        final = self._watch(name, show_output)
        ok = (final.get("status") or {}).get("state") == FINISHED
        for dependent in (final.get("status") or {}).get("dependents") or []:
            if dependent.get("state") == "Created":
                ok = self.follow(dependent["name"], show_output) and ok
            else:
                self._say(f"{dependent['name']}: {dependent.get('state')}")
        return ok

    def _watch(self, name: str, show_output: bool) -> dict[str, Any]:
        list_fn = functools.partial(self.custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL)
        last_line = ""
        follower: LogFollower | None = None
        try:
            for obj in _object_versions(list_fn, name):
                status = obj.get("status") or {}
                line = f"{name}: {status.get('state', 'Pending')}"
                if status.get("reason") and status.get("reason") not in (status.get("state"), "Running", "Completed"):
                    line += f" ({status['reason']}: {status.get('message', '')})"
                if line != last_line:
                    self._say(line)
                    last_line = line
                if show_output and follower is None and status.get("state") == "Running" and status.get("jobName"):
                    follower = LogFollower.start(self.core, self.namespace, status["jobName"], self.out)
                if status.get("state") in FINAL_STATES:
                    if follower is not None:
                        follower.finish()
                    if status.get("output") and (follower is None or not follower.printed):
                        self.out.write(status["output"])
                    code = status.get("exitCode")
                    self._say(f"{name}: {status['state']}" + (f", exit code {code}" if code is not None else ""))
                    return obj
        finally:
            if follower is not None:
                follower.finish()
        raise RuntimeError(f"the watch of {name} ended")  # _object_versions never ends by itself

    def _say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()


class LogFollower:
    """Prints a running pod's output as it is written, in a thread, until the job is final."""

    def __init__(self, response: Any, out: TextIO) -> None:
        self.response = response
        self.out = out
        self.printed = False
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._copy, daemon=True)

    @classmethod
    def start(cls, core: client.CoreV1Api, namespace: str, job_name: str, out: TextIO) -> LogFollower | None:
        pods = core.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={job_name}").items
        started = [p for p in pods if p.status and p.status.phase in ("Running", "Succeeded", "Failed")]
        if not started:
            return None
        try:
            response = core.read_namespaced_pod_log(
                started[0].metadata.name, namespace, container=CONTAINER, follow=True, _preload_content=False
            )
        except ApiException:
            return None
        follower = cls(response, out)
        follower.thread.start()
        return follower

    def _copy(self) -> None:
        with contextlib.suppress(Exception):
            for chunk in self.response.stream(4096):
                if self.stopped.is_set():
                    return
                self.out.write(chunk.decode("utf-8", errors="replace"))
                self.out.flush()
                self.printed = True

    def finish(self) -> None:
        """The job is final: its output has arrived, or is in the status. A stream that a runtime keeps open after
        the container ended is left to the daemon thread (closing it from here can block); it writes no more."""
        self.thread.join(timeout=1)
        self.stopped.set()


def _object_versions(list_fn: Callable[..., dict[str, Any]], name: str) -> Any:
    """Every version of one object: the current one, then each change, across watch restarts."""
    selector = f"metadata.name={name}"
    while True:
        listed = list_fn(field_selector=selector)
        yield from listed["items"]
        version = listed["metadata"].get("resourceVersion")
        try:
            for event in watch.Watch().stream(list_fn, field_selector=selector, resource_version=version,
                                              timeout_seconds=300):  # fmt: skip
                if event["type"] in ("ADDED", "MODIFIED"):
                    yield event["object"]
        except ApiException as e:
            if e.status != 410:
                raise
