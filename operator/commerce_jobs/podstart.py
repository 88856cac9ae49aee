"""Why a job's container has not started, and whether it ever will: read from its pod's status (pure).

While a container cannot start, Kubernetes tries again and again (an image pull with a backoff, a missing Secret
until it appears), and the pod waits for ever. The operator gives such an attempt ``podStartTimeoutSeconds``. But
some refusals cannot go away by themselves: the same image, pod spec and node give the same answer at every try.
Those fail the attempt at once, with the kubelet's message and what to change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from commerce_jobs.fields import status_of
from commerce_jobs.lifecycle import PodProblem

# Waiting reasons of a container that will not start by itself soon: without the operator, the pod would wait.
WAITING_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError",
     "CreateContainerError"}
)  # fmt: skip

_RUN_AS_USER = (
    "set jobDefaults.podSecurityContext.runAsUser in the operator's configuration (or the job's "
    "podSecurityContext.runAsUser) to a numeric non-root uid"
)

# CreateContainerConfigError is also the reason for a Secret or ConfigMap that does not exist yet, which GitOps may
# apply a moment later: only these messages, about the image's user, are final. Matched on the kubelet's wording
# (pkg/kubelet/kuberuntime/security_context_others.go), which has not changed since Kubernetes 1.x.
_CONFIG_ERRORS = (
    (
        "runAsNonRoot and image will run as root",
        f"The image runs as root and the pod must not: {_RUN_AS_USER}, or build the image with USER <numeric uid>.",
    ),
    (
        "runAsNonRoot and image has non-numeric user",
        f"The image's USER is a name, which the kubelet cannot check against runAsNonRoot: {_RUN_AS_USER} (that "
        "user's uid), or build the image with USER <numeric uid>.",
    ),
    (
        "runAsUser breaks non-root policy",
        "runAsUser is 0 (root) while runAsNonRoot is true: set podSecurityContext.runAsUser to a non-root uid.",
    ),
)

_PERMANENT_REASONS = {
    "InvalidImageName": "The image is not a valid image reference: correct the job's image (or jobDefaults.image).",
    "ErrImageNeverPull": (
        "The image is not on the node and imagePullPolicy is Never: put the image on the node, or set "
        "imagePullPolicy to IfNotPresent."
    ),
}


def remedy(reason: str, message: str) -> str | None:
    """What to change when a container refused for this reason and message will never start; None when the
    refusal may go away by itself (an image that is being pushed, a Secret that is being created ...)."""
    if reason in _PERMANENT_REASONS:
        return _PERMANENT_REASONS[reason]
    if reason == "CreateContainerConfigError":
        return next((fix for wording, fix in _CONFIG_ERRORS if wording in message), None)
    return None


def pod_problem(pod: dict[str, Any], now: datetime) -> PodProblem | None:
    """Why the pod's container cannot start, if it waits for one of WAITING_REASONS; None otherwise (it runs, it
    ended, or it is being deleted: a pod on its way out has no start left to wait for)."""
    status = status_of(pod)
    if status.get("phase") != "Pending" or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return None
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in WAITING_REASONS:
            kubelet = str(waiting.get("message") or "")
            message = f"container {container.get('name')}: {reason}: {kubelet}".rstrip(": ")
            return PodProblem(reason, message, now, remedy(reason, kubelet))
    return None
