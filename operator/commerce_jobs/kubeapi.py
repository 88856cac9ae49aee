"""The operator's calls to the apiserver, each idempotent: a create that finds its object tolerates 409, a delete
that finds nothing tolerates 404. Blocking (the official client); the controller runs them in threads. The calls that
every job makes are on the event loop instead (jobcalls.py)."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from commerce_jobs.api_names import (
    API_VERSION,
    COMMERCECRONJOBS,
    COMMERCEJOB,
    COMMERCEJOBS,
    COMMERCEJOBTEMPLATES,
    CONTAINER,
    FIELD_MANAGER,
    GROUP,
    VERSION,
)
from commerce_jobs.fields import status_of
from commerce_jobs.jobpods import job_pods, newest_pod
from commerce_jobs.lifecycle import DEADLINE_EXCEEDED, AttemptResult, PodOutcome
from commerce_jobs.output import OutputTail
from commerce_jobs.workqueue import Requeue

log = logging.getLogger(__name__)


class Conflict(Requeue):
    """The object changed since the cache saw it; reconcile again from the newer version."""


class ForeignObject(Exception):
    """An object with the name that the operator needs exists but is not owned by the expected owner.
    ``transient``: it will go by itself (see conflict_resolves); else only a person can resolve the conflict."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def conflict_resolves(existing: dict[str, Any], owner_name: str) -> bool:
    """Whether an object in the way of one that the operator creates will go by itself: it is being deleted, or it
    belongs to an earlier CommerceJob of the same name (deleted, then created again), which the garbage collector
    deletes after it. Anything else (a Job of someone else's) stays until a person deletes or renames it."""
    meta = existing.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return True
    return any(r.get("kind") == COMMERCEJOB and r.get("name") == owner_name for r in meta.get("ownerReferences") or [])


def foreign_job(existing: dict[str, Any], manifest: dict[str, Any], owner_uid: str) -> ForeignObject | None:
    """Why an attempt's Job cannot be created, when a Job of its name exists already (409): None if that Job is
    the same owner's (created before a crash: nothing to do)."""
    owners = {ref.get("uid") for ref in existing["metadata"].get("ownerReferences") or []}
    if owner_uid in owners:
        return None
    name = manifest["metadata"]["name"]
    owner_name = next(r["name"] for r in manifest["metadata"]["ownerReferences"] if r["uid"] == owner_uid)
    if conflict_resolves(existing, owner_name):
        return ForeignObject(f"Job {name} of an earlier CommerceJob of this name is in the way", transient=True)
    return ForeignObject(f"Job {name} exists and belongs to someone else: the job cannot run under this name until "
                         "that Job is deleted")  # fmt: skip


def api_message(error: ApiException) -> str:
    """The apiserver's message of a refused request (its Status), or the HTTP reason."""
    try:
        return str(json.loads(error.body or "{}").get("message") or error.reason)
    except (ValueError, AttributeError):
        return str(error.reason)


# Characters that JSON carries raw but YAML does not (DEL, C1 controls, U+FFFE/U+FFFF), or reads as line breaks and
# folds into a space inside a quoted string (NEL, U+2028, U+2029): escaped as \uXXXX.
_NOT_YAML_PRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ufffe\uffff]")


def apply_body(manifest: dict[str, Any]) -> str:
    """A server-side apply body: JSON, which the apiserver parses as YAML. The client's own serializer escapes
    characters outside the BMP as UTF-16 surrogate pairs, which YAML refuses ("invalid Unicode character escape"),
    so a job param such as an emoji would keep its CronJob from ever being applied; here they stay raw UTF-8."""
    text = json.dumps(manifest, ensure_ascii=False)
    return _NOT_YAML_PRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def json_object(answer: object) -> dict[str, Any]:
    """An answer of the custom objects API: a JSON object, which the client's annotations call ``object``."""
    if not isinstance(answer, dict):
        raise TypeError(f"the apiserver answered {type(answer).__name__}, not a JSON object")
    return answer


def pod_outcome(pod: dict[str, Any]) -> PodOutcome:
    """The console container's exit code (None while it has not terminated), why the pod ended, if it says, and
    whether the kubelet stopped it at its activeDeadlineSeconds."""
    meta, status = pod.get("metadata") or {}, status_of(pod)
    exit_code = None
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated")
        if container.get("name") == CONTAINER and terminated:
            exit_code = terminated.get("exitCode")
    reason = ": ".join(x for x in (status.get("reason"), status.get("message")) if x)
    ended = status.get("phase") in ("Succeeded", "Failed")
    deadline_exceeded = status.get("reason") == DEADLINE_EXCEEDED
    return PodOutcome(meta.get("name", ""), meta.get("creationTimestamp") or "", exit_code, reason, ended,
                      deadline_exceeded)  # fmt: skip


def settled(known: PodOutcome | None) -> bool:
    """Whether what the pod watch reported of an attempt's pod is enough to judge it: its container's exit code and
    the pod's end. A report from before the pod's end (its container had exited, the kubelet had not yet written the
    pod's phase and reason, e.g. DeadlineExceeded) is not: then the pod is read, if it is still there."""
    return known is not None and known.exit_code is not None and known.ended


def attempt_result(outcome: PodOutcome | None, tail: OutputTail | None) -> AttemptResult:
    """An ended attempt: its pod's outcome and its output's tail (None: the container never ran, or its pod went)."""
    if outcome is None:
        return AttemptResult(None, "", False, "its pod is gone")
    text, truncated = (tail.text, tail.truncated) if tail is not None else ("", False)
    return AttemptResult(outcome.exit_code, text, truncated, outcome.pod_reason, outcome.deadline_exceeded)


class KubeApi:
    def __init__(self, api: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    # -- batch Jobs ----------------------------------------------------------------------------------------------
    def job_exists(self, namespace: str, name: str) -> bool:
        try:
            self.batch.read_namespaced_job(name, namespace)
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return True

    def delete_job(self, namespace: str, name: str) -> None:
        try:
            # Background: the Job goes at once and the garbage collector removes its pods (kwok lets them go).
            self.batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
        except ApiException as e:
            if e.status != 404:
                raise

    # -- the finished attempt's pod --------------------------------------------------------------------------------
    def newest_pod_outcome(self, namespace: str, job_name: str) -> PodOutcome | None:
        """What the newest pod of a Job says of its end; None when no pod is left."""
        pod = newest_pod(job_pods(self.core, namespace, job_name))
        return None if pod is None else pod_outcome(pod)

    # -- CommerceJobs ------------------------------------------------------------------------------------------------
    def _conditional_patch(self, patch: Any, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            result = json_object(
                patch(GROUP, VERSION, namespace, COMMERCEJOBS, name, body, field_manager=FIELD_MANAGER)
            )
        except ApiException as e:
            if e.status == 409:
                raise Conflict(f"{namespace}/{name} changed") from e
            raise
        return result

    def delete_commercejob(self, namespace: str, name: str, uid: str) -> bool:
        """Deletes a CommerceJob (its Jobs, pods and dependents follow through ownerReferences), only if it is still
        the one that was judged expired (same uid). False when it was already gone."""
        try:
            options: Any = {"preconditions": {"uid": uid}, "propagationPolicy": "Background"}  # a V1DeleteOptions
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, COMMERCEJOBS, name, body=options)
        except ApiException as e:
            if e.status in (404, 409):
                return False
            raise
        return True

    def list_commercejobs(self, namespace: str | None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token = None
        while True:
            kwargs: dict[str, Any] = {"limit": 500, **({"_continue": token} if token else {})}
            if namespace:
                page = json_object(
                    self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, COMMERCEJOBS, **kwargs)
                )
            else:
                page = json_object(self.custom.list_cluster_custom_object(GROUP, VERSION, COMMERCEJOBS, **kwargs))
            items.extend(page["items"])
            token = page["metadata"].get("continue")
            if not token:
                return items

    def get_template(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            result = json_object(
                self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, COMMERCEJOBTEMPLATES, name)
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return result

    def patch_spec(self, namespace: str, name: str, resource_version: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {"metadata": {"resourceVersion": resource_version}, "spec": spec}
        return self._conditional_patch(self.custom.patch_namespaced_custom_object, namespace, name, body)

    def create_commercejob(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Creates a CommerceJob, or returns the one of that name that exists."""
        namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        try:
            created = json_object(
                self.custom.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, COMMERCEJOBS, manifest, field_manager=FIELD_MANAGER
                )
            )
        except ApiException as e:
            if e.status != 409:
                raise
            return json_object(self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, COMMERCEJOBS, name))
        return created

    def add_job_owner(self, job: dict[str, Any], owner: dict[str, Any]) -> None:
        """Adds a CommerceJob to a Job's owners (not as its controller: that stays its CronJob)."""
        meta = job["metadata"]
        refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != owner["metadata"]["uid"]]
        refs.append({"apiVersion": API_VERSION, "kind": COMMERCEJOB, "name": owner["metadata"]["name"],
                     "uid": owner["metadata"]["uid"]})  # fmt: skip
        self.batch.patch_namespaced_job(meta["name"], meta["namespace"], {"metadata": {"ownerReferences": refs}})

    # -- CronJobs ----------------------------------------------------------------------------------------------------
    def apply_cronjob(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply: creates the CronJob or brings it in step, owning only the fields it sets. The body is
        serialized here (see apply_body), so the request is built one level below the generated method, which
        takes only dicts."""
        meta = manifest["metadata"]
        api = self.batch.api_client
        request = api.param_serialize(
            method="PATCH",
            resource_path="/apis/batch/v1/namespaces/{namespace}/cronjobs/{name}",
            path_params={"namespace": meta["namespace"], "name": meta["name"]},
            query_params=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            header_params={"Accept": "application/json", "Content-Type": "application/apply-patch+yaml"},
            body=apply_body(manifest),
            auth_settings=["BearerToken"],
        )
        response = api.call_api(*request)
        response.read()
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        result: dict[str, Any] = json.loads(response.data)
        return result

    def suspend_cronjob(self, namespace: str, name: str) -> None:
        try:
            self.batch.patch_namespaced_cron_job(
                name, namespace, {"spec": {"suspend": True}}, field_manager=FIELD_MANAGER
            )
        except ApiException as e:
            if e.status != 404:
                raise

    def patch_cron_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        return json_object(
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, COMMERCECRONJOBS, name, {"status": status}, field_manager=FIELD_MANAGER
            )
        )
