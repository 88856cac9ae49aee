"""spec -> manifest for the CommerceJobs that a person starts (pure): from a template (the CLI's `start`, the
console's Start button), and again after a failure (the console's Retry button)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from commerce_jobs.api_names import (
    API_VERSION,
    COMMERCEJOB,
    RETRY_OF_ANNOTATION,
    STARTED_BY_ANNOTATION,
    TEMPLATE_LABEL,
)
from commerce_jobs.fields import spec_of

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
    return {"apiVersion": API_VERSION, "kind": COMMERCEJOB, "metadata": metadata, "spec": spec}


def retry_of(job: dict[str, Any], started_by: str | None = None) -> dict[str, Any]:
    """A new CommerceJob that runs a failed (or canceled) one again, under a fresh name; not owned by the old job's
    parent: it is a new run of its own. A job started from a template is started from that template again (what an
    admission policy lets a user start); any other job gets the same spec (command, params, queue, dependents ...).
    """
    meta, spec = job["metadata"], spec_of(job)
    template = (spec.get("templateRef") or {}).get("name")
    if template:
        # Not the spec that the operator filled in from the template: that would be a job with a command, params,
        # image ... of the user's making, which a policy such as "only from a template" rightly refuses.
        body = from_template(template, started_by)
    else:
        body = {
            "apiVersion": API_VERSION,
            "kind": COMMERCEJOB,
            "metadata": {"annotations": {STARTED_BY_ANNOTATION: started_by}} if started_by else {},
            "spec": {k: v for k, v in spec.items() if k not in NOT_RETRIED},
        }
    body["metadata"]["generateName"] = f"{meta['name'][:50]}-retry-"
    body["metadata"].setdefault("annotations", {})[RETRY_OF_ANNOTATION] = meta["name"]
    return body
