"""Dependent jobs: the CommerceJobs that a job's ``dependingJobs`` become once it succeeded, and the states that its
``status.dependents`` lists for them (pure)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from commerce_jobs.api_names import (
    API_VERSION,
    CANCELED,
    FINAL_STATES,
    FINISHED,
    MANAGED_BY,
    PARENT_ANNOTATION,
    PARENT_LABEL,
    PENDING,
    RUNNING,
)
from commerce_jobs.fields import spec_of, status_of
from commerce_jobs.jobbuild import controller_reference
from commerce_jobs.names import shortened

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
    return shortened(f"{parent}-{child}", MAX_NAME, digest_chars=10)


def build_dependent(parent: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    meta = parent["metadata"]
    parent_spec = spec_of(parent)
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
            "labels": {PARENT_LABEL: meta["uid"], **MANAGED_BY},
            "annotations": {PARENT_ANNOTATION: meta["name"]},
            "ownerReferences": [controller_reference(parent, "CommerceJob")],
        },
        "spec": spec,
    }


STATES = frozenset({PENDING, RUNNING} | FINAL_STATES)


def tree_states(
    root: str,
    root_state: str,
    items: list[dict[str, Any]],
    state_of: Callable[[str], str | None],
    recorded: list[dict[str, Any]] | None = None,
) -> list[dict[str, str]]:
    """``status.dependents`` of the job ``root``: every dependent of its whole tree, depth first, each with its
    state. A dependent's state is its own (``state_of``, None when it is not known); one that does not exist is
    Pending while its parent may still create it, and Canceled once its parent ended otherwise than Finished
    (it never will be). An unknown dependent keeps the state ``recorded`` earlier, when that is one of the
    documented states."""
    known = {str(d.get("name")): d.get("state") for d in recorded or []}
    entries: list[dict[str, str]] = []

    def walk(parent: str, parent_state: str, children: list[dict[str, Any]]) -> None:
        for item in children:
            name = dependent_name(parent, item["name"])
            state = state_of(name)
            if state is None:
                if parent_state in FINAL_STATES and parent_state != FINISHED:
                    state = CANCELED
                else:
                    before = known.get(name)
                    state = before if isinstance(before, str) and before in STATES else PENDING
            entries.append({"name": name, "state": state})
            walk(name, state, item.get("dependingJobs") or [])

    walk(root, root_state, items)
    return entries


def dependents_status(cjob: dict[str, Any], state: str, state_of: Callable[[str], str | None]) -> list[dict[str, str]]:
    """``status.dependents`` of a job whose own state is (or is about to be) ``state``: its whole tree, each
    dependent with its state (``state_of``, by name)."""
    items = spec_of(cjob).get("dependingJobs") or []
    recorded = status_of(cjob).get("dependents") or []
    return tree_states(cjob["metadata"]["name"], state, items, state_of, recorded)


def canceled_tree(parent: str, items: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Every dependent below ``parent`` that will now never be created, depth first, each marked Canceled."""
    return tree_states(parent, CANCELED, items, lambda _: None)
