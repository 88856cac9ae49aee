"""Helpers for tests of CommerceJobs: create them, and wait on them through watches."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from kubernetes import client

from tests.kube import wait_deleted, wait_for

GROUP, VERSION, PLURAL = "commercejobs.dev", "v1alpha1", "commercejobs"
SIM = "sim.commercejobs.dev/"
FINAL = {"Finished", "Failed", "Terminated", "Canceled", "Incomplete"}


def sim(exit_code: int = 0, duration: str | None = None, output: str | None = None, **extra: str) -> dict[str, str]:
    """Pod annotations that tell kwok's stages how the simulated command behaves."""
    annotations = {SIM + "exit-code": str(exit_code)}
    if duration:
        annotations[SIM + "duration"] = duration
    if output is not None:
        annotations[SIM + "output"] = output
    annotations.update({SIM + k.replace("_", "-"): v for k, v in extra.items()})
    return annotations


class CommerceJobs:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace

    def create(self, name: str, **spec: Any) -> dict[str, Any]:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CommerceJob", "metadata": {"name": name}, "spec": spec}
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body
        )
        return result

    def get(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        return result

    def patch(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec}
        )
        return result

    def delete(self, name: str) -> None:
        """Deletes a CommerceJob as kubectl does: its Jobs, pods and dependents go after it (garbage collector)."""
        self.custom.delete_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, body={"propagationPolicy": "Background"}
        )

    def list(self, **kwargs: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, **kwargs
        )["items"]
        return items

    def wait(self, name: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 90) -> dict[str, Any]:
        list_fn = functools.partial(self.custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL)
        result: dict[str, Any] = wait_for(list_fn, name, predicate, timeout=timeout)
        return result

    def wait_deleted(self, name: str, timeout: float = 60) -> None:
        list_fn = functools.partial(self.custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL)
        wait_deleted(list_fn, name, timeout=timeout)

    def wait_state(self, name: str, *states: str, timeout: float = 90) -> dict[str, Any]:
        return self.wait(name, lambda o: state(o) in states, timeout=timeout)

    def wait_final(self, name: str, timeout: float = 90) -> dict[str, Any]:
        return self.wait(name, lambda o: state(o) in FINAL, timeout=timeout)


def state(obj: dict[str, Any]) -> str | None:
    return (obj.get("status") or {}).get("state")


def condition(obj: dict[str, Any], kind: str = "Succeeded") -> dict[str, Any] | None:
    """The status condition of this type of a custom object (a dict), if it has one."""
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind), None)


def ready_reason(obj: dict[str, Any]) -> str | None:
    """The reason of a CommerceCronJob's Ready condition; None before the operator has set one."""
    ready = condition(obj, "Ready")
    return ready.get("reason") if ready else None
