"""Dependent jobs: the CommerceJobs that a job's ``dependingJobs`` become once it succeeded (pure builders)."""

from __future__ import annotations

import hashlib
from typing import Any

from commerce_jobs.jobbuild import API_VERSION, controller_reference
from commerce_jobs.lifecycle import CANCELED

PARENT_LABEL = "commercejobs.dev/parent-uid"
PARENT_ANNOTATION = "commercejobs.dev/parent"
MAX_NAME = 253

# What a dependent inherits from its parent: it runs in the same shop, with the same runtime, unless it says otherwise.
INHERITED_FIELDS = (
    "image", "consoleCommand", "workingDir", "env", "envFrom", "volumes", "volumeMounts", "resources",
    "serviceAccountName", "nodeSelector", "tolerations", "imagePullSecrets", "podLabels", "queue", "priority",
    "retention",
)  # fmt: skip
# The fields of a dependingJobs item that are not part of the child's spec.
ITEM_ONLY_FIELDS = ("name",)


def dependent_name(parent: str, child: str) -> str:
    name = f"{parent}-{child}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: MAX_NAME - len(digest) - 1]}-{digest}"


def build_dependent(parent: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    meta = parent["metadata"]
    parent_spec = parent.get("spec") or {}
    spec = {k: parent_spec[k] for k in INHERITED_FIELDS if k in parent_spec}
    spec.update({k: v for k, v in item.items() if k not in ITEM_ONLY_FIELDS})
    return {
        "apiVersion": API_VERSION,
        "kind": "CommerceJob",
        "metadata": {
            "name": dependent_name(meta["name"], item["name"]),
            "namespace": meta["namespace"],
            # The parent's own labels are not copied: a GitOps tool that tracks the parent by a label would
            # otherwise take its dependents for objects of its own and prune them.
            "labels": {PARENT_LABEL: meta["uid"], "app.kubernetes.io/managed-by": "commerce-jobs"},
            "annotations": {PARENT_ANNOTATION: meta["name"]},
            "ownerReferences": [controller_reference(parent, "CommerceJob")],
        },
        "spec": spec,
    }


def canceled_tree(parent: str, items: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Every dependent below ``parent`` that will now never be created, depth first, each marked Canceled."""
    entries: list[dict[str, str]] = []
    for item in items:
        name = dependent_name(parent, item["name"])
        entries.append({"name": name, "state": CANCELED})
        entries.extend(canceled_tree(name, item.get("dependingJobs") or []))
    return entries
