"""Simulated container output for kwok pods: what `kubectl logs` returns for a pod of the local control plane.

kwok serves a pod's log from a file named by a ``Logs`` object of the same name. This process watches pods that
ask for output through annotations, writes the file in the CRI log format, creates the ``Logs`` object (owned by the
pod, so the garbage collector removes it) and then marks the pod ``logs-ready``; kwok's pod-start stage waits for
that mark, so a pod never runs without its log.

Annotations read on a pod:
    sim.commercejobs.dev/output         the text that the container prints
    sim.commercejobs.dev/output-repeat  print the text this many times (for outputs larger than an annotation)
    sim.commercejobs.dev/output-stream  stdout (default) or stderr
    sim.commercejobs.dev/output-base64  bytes to print, base64-encoded (binary output); printed after ``output``
"""

from __future__ import annotations

import argparse
import base64
import binascii
import logging
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

PREFIX = "sim.commercejobs.dev/"
OUTPUT = PREFIX + "output"
OUTPUT_REPEAT = PREFIX + "output-repeat"
OUTPUT_STREAM = PREFIX + "output-stream"
OUTPUT_BASE64 = PREFIX + "output-base64"
LOGS_READY = PREFIX + "logs-ready"

log = logging.getLogger("pod-simulator")


def cri_log(data: bytes, stream: str = "stdout", when: datetime | None = None) -> bytes:
    """Formats output as a CRI log file: lines ``<RFC3339Nano> <stream> <F|P> <content>``.

    A last line without a newline is written as a partial line (``P``), as a container runtime does for output
    that ends without one, so a reader joins the lines back to the exact bytes (binary ones too).
    """
    stamp = (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
    lines = []
    parts = data.split(b"\n")
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if last and part == b"":
            break
        lines.append(b"%s %s %s %s\n" % (stamp, stream.encode(), b"P" if last else b"F", part))
    return b"".join(lines)


def pod_output(annotations: dict[str, str]) -> tuple[bytes, str]:
    text = annotations.get(OUTPUT, "")
    repeat = int(annotations.get(OUTPUT_REPEAT, "1") or "1")
    stream = annotations.get(OUTPUT_STREAM, "stdout")
    try:
        raw = base64.b64decode(annotations.get(OUTPUT_BASE64, ""), validate=True)
    except (binascii.Error, ValueError):
        raw = b"<invalid sim.commercejobs.dev/output-base64>"
    return (text.encode() + raw) * max(repeat, 1), stream if stream in ("stdout", "stderr") else "stdout"


class PodLogSimulator:
    def __init__(self, directory: Path, core: client.CoreV1Api, custom: client.CustomObjectsApi) -> None:
        self.directory = directory
        self.core = core
        self.custom = custom

    def handle(self, pod: Any) -> None:
        annotations = pod.metadata.annotations or {}
        wants_output = OUTPUT in annotations or OUTPUT_BASE64 in annotations
        if not wants_output or LOGS_READY in annotations or pod.metadata.deletion_timestamp:
            return
        namespace, name = pod.metadata.namespace, pod.metadata.name
        data, stream = pod_output(annotations)
        path = self.directory / namespace / f"{name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(cri_log(data, stream))
        body = {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "Logs",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": name, "uid": pod.metadata.uid}],
            },
            "spec": {"logs": [{"logsFile": str(path), "follow": False}]},
        }
        try:
            self.custom.create_namespaced_custom_object("kwok.x-k8s.io", "v1alpha1", namespace, "logs", body)
        except ApiException as e:
            if e.status != 409:
                raise
        try:
            self.core.patch_namespaced_pod(name, namespace, {"metadata": {"annotations": {LOGS_READY: "true"}}})
        except ApiException as e:
            if e.status != 404:
                raise

    def run(self) -> None:
        resource_version = ""
        while True:
            try:
                if not resource_version:
                    pods = self.core.list_pod_for_all_namespaces()
                    for pod in pods.items:
                        self.handle(pod)
                    resource_version = (pods.metadata and pods.metadata.resource_version) or ""
                stream = watch.Watch().stream(
                    self.core.list_pod_for_all_namespaces,
                    resource_version=resource_version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=300,
                )
                for event in stream:
                    if event["type"] == "ERROR":
                        resource_version = ""  # 410 Gone: list again
                        break
                    # Bookmarks carry only a resourceVersion, so read it from the raw object.
                    raw = event.get("raw_object") or {}
                    resource_version = raw.get("metadata", {}).get("resourceVersion", resource_version)
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self.handle(event["object"])
            except ApiException as e:
                if e.status == 410:
                    resource_version = ""
                    continue
                log.warning("watch failed: %s", e)
                time.sleep(1)  # back off while the apiserver is unavailable
            except Exception as e:  # the apiserver restarts in some tests; keep going
                log.warning("watch interrupted: %s", e)
                time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--directory", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    api = config.new_client_from_config(config_file=args.kubeconfig)
    PodLogSimulator(args.directory, client.CoreV1Api(api), client.CustomObjectsApi(api)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
