"""`commerce-jobs start TEMPLATE`: the Back Office's Start button, on the command line (and as `kubectl commercejob`).

Creates a CommerceJob from the template; with --wait, follows it (and then its dependents) until they are final,
printing each state as it changes; with --follow, also prints the command's output as it is written.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, TextIO

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from commerce_jobs.api_names import (
    COMMERCEJOBS,
    COMMERCEJOBTEMPLATES,
    CONTAINER,
    GROUP,
    VERSION,
)
from commerce_jobs.fields import status_of
from commerce_jobs.jobpods import started_pod
from commerce_jobs.kubeapi import json_object
from commerce_jobs.lifecycle import CANCELED, FINAL_REASONS, FINAL_STATES, FINISHED, RUNNING
from commerce_jobs.startbuild import from_template


class NoSuchDependency(LookupError):
    """A name given to --after is not a CommerceJob of the namespace."""


# The reasons that the state says all about; any other (CommandNotAllowed, TemplateNotFound ...) is printed.
USUAL_FINAL_REASONS = frozenset({reason for _, reason in FINAL_REASONS.values()} | {CANCELED})


def state_line(name: str, status: dict[str, Any]) -> str:
    """A job's state as `start --wait` prints it while the job is not final."""
    state = status.get("state") or "Pending"
    line = f"{name}: {state}"
    attempts = int(status.get("attempts") or 0)
    reason = status.get("reason")
    if reason and reason not in (state, "Running", "Completed"):
        line += f" ({reason}: {status.get('message', '')})"
    elif state == RUNNING and attempts > 1:
        line += f" (attempt {attempts})"
    return line


def final_line(name: str, status: dict[str, Any]) -> str:
    code = status.get("exitCode")
    line = f"{name}: {status['state']}" + (f", exit code {code}" if code is not None else "")
    if status.get("reason") not in USUAL_FINAL_REASONS and status.get("message"):
        line += f" ({status['reason']}: {status['message']})"  # e.g. CommandNotAllowed, TemplateNotFound
    return line


def running_attempt(status: dict[str, Any]) -> str | None:
    """The Job of the attempt that runs now; None while the job waits (its queue, its time, a retry's backoff)."""
    if status.get("state") == RUNNING and status.get("reason") == "Running" and status.get("jobName"):
        return str(status["jobName"])
    return None


def ended_attempt(status: dict[str, Any]) -> bool:
    """Whether this status records the end of an attempt, with that attempt's output."""
    return status.get("state") in FINAL_STATES or status.get("reason") == "RetryBackoff"


class Follower(Protocol):
    def finish_printed(self) -> bool:
        """Stops following once the attempt ended; whether any output was printed."""
        ...


class Starter:
    def __init__(self, api: client.ApiClient, namespace: str, out: TextIO = sys.stdout) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.out = out
        self._shown: set[str] = set()  # the jobs of the tree already followed (a parent may list a whole tree)

    def create(self, template: str, after: Sequence[str] = ()) -> str:
        self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, COMMERCEJOBTEMPLATES, template)
        for dependency in after:  # a typo is refused here, not 5 minutes later by the operator (DependencyNotFound)
            try:
                self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, COMMERCEJOBS, dependency)
            except ApiException as e:
                if e.status == 404:
                    message = f"no CommerceJob {dependency!r} in namespace {self.namespace!r} (--after)"
                    raise NoSuchDependency(message) from e
                raise
        created = json_object(
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, COMMERCEJOBS, from_template(template, after=after)
            )
        )
        name: str = created["metadata"]["name"]
        self._say(f"commercejob.{GROUP}/{name} created from template {template}")
        return name

    def follow(self, name: str, show_output: bool) -> bool:
        """Waits until the job and every dependent it created are final. True when all of them Finished."""
        self._shown.add(name)
        final = self.progress(name, self.versions(name), show_output)
        ok = status_of(final).get("state") == FINISHED
        for dependent in status_of(final).get("dependents") or []:
            if dependent["name"] in self._shown:
                continue
            if dependent.get("state") == CANCELED:
                # Never created (the job did not succeed): there is nothing to follow.
                self._shown.add(dependent["name"])
                self._say(f"{dependent['name']}: {CANCELED}")
                ok = False
            else:
                ok = self.follow(dependent["name"], show_output) and ok
        return ok

    def progress(self, name: str, versions: Iterable[dict[str, Any]], show_output: bool) -> dict[str, Any]:
        """Prints a job's states from the successive versions of its object, each once, and its output: with
        ``show_output``, each attempt's pod's log as it is written (a retry's attempt is another Job, so another
        pod); an attempt whose log could not be followed, and without ``show_output`` the last one, from the
        status. Returns the first final version."""
        last_line = ""
        follower: Follower | None = None
        followed = (0, "")  # the attempt, and its Job, whose pod the follower reads
        printed: set[int] = set()  # the attempts whose output was printed
        try:
            for obj in versions:
                status = status_of(obj)
                attempt = int(status.get("attempts") or 0)
                final = status.get("state") in FINAL_STATES
                if ended_attempt(status):
                    # The attempt's output first, then the line that says how it ended.
                    if follower is not None and follower.finish_printed():
                        printed.add(followed[0])
                    follower = None
                    if (show_output or final) and attempt not in printed:
                        self._output(status.get("output") or "")
                        printed.add(attempt)
                if final:
                    self._say(final_line(name, status))
                    return obj
                line = state_line(name, status)
                if line != last_line:
                    self._say(line)
                    last_line = line
                job = running_attempt(status)
                if show_output and job and (follower is None or followed[1] != job):
                    if follower is not None and follower.finish_printed():
                        printed.add(followed[0])
                    follower, followed = self.follow_attempt(job), (attempt, job)
        finally:
            if follower is not None:
                follower.finish_printed()
        raise RuntimeError(f"the watch of {name} ended")  # _object_versions never ends by itself

    def versions(self, name: str) -> Iterable[dict[str, Any]]:
        list_fn = functools.partial(
            self.custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace, COMMERCEJOBS
        )
        return _object_versions(list_fn, name)

    def follow_attempt(self, job_name: str) -> Follower | None:
        return LogFollower.start(self.core, self.namespace, job_name, self.out)

    def _output(self, text: str) -> None:
        if text:
            self.out.write(text if text.endswith("\n") else text + "\n")
            self.out.flush()

    def _say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()


class LogFollower:
    """Prints a running pod's output as it is written, in a thread, until its attempt ended."""

    def __init__(self, response: Any, out: TextIO) -> None:
        self.response = response
        self.out = out
        self.printed = False
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._copy, daemon=True)

    @classmethod
    def start(cls, core: client.CoreV1Api, namespace: str, job_name: str, out: TextIO) -> LogFollower | None:
        """Follows the newest started pod of the Job (None when none has started yet: asked again at the next
        change of the job)."""
        pod = started_pod(core, namespace, job_name)
        if pod is None:
            return None
        try:
            response = core.read_namespaced_pod_log(
                pod, namespace, container=CONTAINER, follow=True, _preload_content=False
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

    def finish_printed(self) -> bool:
        """The attempt ended: its output has arrived, or is in the status. A stream that a runtime keeps open after
        the container ended is left to the daemon thread (closing it from here can block); it writes no more."""
        self.thread.join(timeout=1)
        self.stopped.set()
        return self.printed


def _object_versions(list_fn: Callable[..., object], name: str) -> Iterator[dict[str, Any]]:
    """Every version of one object: the current one, then each change, across watch restarts."""
    selector = f"metadata.name={name}"
    while True:
        listed = json_object(list_fn(field_selector=selector))
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
