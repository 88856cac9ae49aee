"""A smoke test of an installed operator, the chart's `helm test`: one harmless CommerceJob, run to Finished.

    python -m commerce_jobs.smoketest --namespace shop --name shop-jobs-helm-test --command list

Deletes a CommerceJob of that name left by an earlier run, creates it, follows it until it is final, prints each
state, and deletes it once it Finished (exit 0). Otherwise it prints the state, the reason and the output, keeps the
job for `kubectl describe`, and exits 1. It needs only these rights in the namespace: create CommerceJobs, and get,
list, watch and delete the one named (the chart's test Role; list and watch by the name's field selector).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from commerce_jobs.api_names import API_VERSION, COMMERCEJOB, COMMERCEJOBS, GROUP, VERSION
from commerce_jobs.fields import status_of
from commerce_jobs.lifecycle import FINAL_STATES, FINISHED


def commercejob(name: str, command: str, params: list[str], image: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"command": command, "params": params}
    if image:
        spec["image"] = image
    return {
        "apiVersion": API_VERSION,
        "kind": COMMERCEJOB,
        "metadata": {"name": name, "labels": {"app.kubernetes.io/component": "smoke-test"}},
        "spec": spec,
    }


def describe(obj: dict[str, Any]) -> str:
    """One line of a CommerceJob's state, as `kubectl get commercejobs` would tell it, with its reason."""
    status = status_of(obj)
    line = f"{obj['metadata']['name']}: {status.get('state', 'Pending')}"
    if status.get("reason") and status.get("reason") not in (status.get("state"), "Running", "Completed"):
        line += f" ({status['reason']}: {status.get('message', '')})"
    if status.get("exitCode") is not None:
        line += f", exit code {status['exitCode']}"
    return line


class SmokeTest:
    def __init__(self, api: client.ApiClient, namespace: str, name: str, out: TextIO = sys.stdout) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace, self.name, self.out = namespace, name, out
        self.list_fn: Callable[..., Any] = functools.partial(
            self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, COMMERCEJOBS
        )

    def run(self, command: str, params: list[str], image: str | None, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        self._delete_leftover(deadline)
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, COMMERCEJOBS, commercejob(self.name, command, params, image)
        )
        self._say(f"commercejob.{GROUP}/{self.name} created in {self.namespace}: {' '.join([command, *params])}")
        final = self._follow(deadline)
        if final is None:
            self._say(f"{self.name}: not final after {timeout:.0f}s; kept: kubectl -n {self.namespace} describe "
                      f"commercejob {self.name}")  # fmt: skip
            return False
        status = status_of(final)
        if status.get("state") != FINISHED:
            if status.get("output"):
                self.out.write(status["output"])
            self._say(f"FAILED; kept: kubectl -n {self.namespace} describe commercejob {self.name}")
            return False
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, COMMERCEJOBS, self.name)
        self._say(f"{self.name}: Finished, and deleted")
        return True

    def _delete_leftover(self, deadline: float) -> None:
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, COMMERCEJOBS, self.name)
        except ApiException as e:
            if e.status == 404:
                return
            raise
        self._say(f"{self.name}: deleted the job of an earlier run")
        for obj in self._versions(deadline):
            if obj is None:
                return
        raise TimeoutError(f"{self.name} of an earlier run is not gone")

    def _follow(self, deadline: float) -> dict[str, Any] | None:
        last = ""
        for obj in self._versions(deadline):
            if obj is None:
                raise RuntimeError(f"{self.name} was deleted while it ran")
            line = describe(obj)
            if line != last:
                self._say(line)
                last = line
            if status_of(obj).get("state") in FINAL_STATES:
                return obj
        return None

    def _versions(self, deadline: float) -> Iterator[dict[str, Any] | None]:
        """The object's current version, then each change (None once it is gone), until the deadline."""
        selector = f"metadata.name={self.name}"
        while (remaining := deadline - time.monotonic()) > 0:
            listed = self.list_fn(field_selector=selector)
            if not listed["items"]:
                yield None
            yield from listed["items"]
            stream = watch.Watch().stream(self.list_fn, field_selector=selector, timeout_seconds=max(1, int(remaining)),
                                          resource_version=listed["metadata"].get("resourceVersion"))  # fmt: skip
            try:
                for event in stream:
                    yield None if event["type"] == "DELETED" else event["object"]
            except ApiException as e:
                if e.status != 410:  # an expired resourceVersion: list again
                    raise

    def _say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m commerce_jobs.smoketest", description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--namespace", required=True, help="a namespace that the operator watches")
    parser.add_argument("--name", required=True, help="the CommerceJob's name")
    parser.add_argument("--command", required=True, help="a harmless console command, e.g. list")
    parser.add_argument("--param", action="append", default=[], help="a parameter of the command (repeatable)")
    parser.add_argument("--image", help="the shop's image (default: the operator's jobDefaults.image)")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds until it must be final (default: 240)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from commerce_jobs.kubeclient import api_client

    args = build_parser().parse_args(argv)
    test = SmokeTest(api_client(), args.namespace, args.name)
    try:
        return 0 if test.run(args.command, args.param, args.image, args.timeout) else 1
    except (ApiException, TimeoutError, RuntimeError) as e:
        reason = f"HTTP {e.status}: {e.reason}" if isinstance(e, ApiException) else str(e)
        print(f"smoke test: {reason}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
