"""A real Prometheus server (Debian's `prometheus` package) for the e2e tests: started on loopback with a temp dir of
its own, scraping static targets every second, and read through its HTTP API (tests/e2e/test_metrics.py scrapes
the local operator, tests/e2e/test_realnode_helm.py the chart's operator pod on the real node)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

SCRAPE_SECONDS = 1
JOB = "commerce-jobs"
Sample = dict[str, Any]


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, promql: str) -> list[Sample]:
        """An instant query: its samples as {"metric": labels, "value": float}."""
        address = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(address, timeout=10) as response:  # noqa: S310  loopback
            answer = json.load(response)
        assert answer["status"] == "success", answer
        return [{"metric": r["metric"], "value": float(r["value"][1])} for r in answer["data"]["result"]]

    def until(self, promql: str, holds: Callable[[list[Sample]], bool], timeout: float = 60) -> list[Sample]:
        """The query's answer once ``holds`` is true of it: Prometheus scrapes every second, so this polls it (there
        is nothing to watch); the last answer is in the failure."""
        deadline = time.monotonic() + timeout
        while True:
            samples = self.query(promql)
            if holds(samples):
                return samples
            if time.monotonic() > deadline:
                raise AssertionError(f"{promql}: still {samples} after {timeout}s")
            time.sleep(SCRAPE_SECONDS / 2)

    def value(self, promql: str) -> float:
        samples = self.query(promql)
        assert len(samples) == 1, (promql, samples)
        return float(samples[0]["value"])


def by(samples: list[Sample], label: str) -> dict[str, float]:
    return {s["metric"].get(label, ""): s["value"] for s in samples}


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_prometheus(targets: list[str], directory: Path, log_path: Path) -> Iterator[Prometheus]:
    """A Prometheus server on a free loopback port that scrapes ``targets`` (host:port) as the job ``commerce-jobs``;
    yielded once its first scrape of every target succeeded, stopped (by its pid) at the end."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the Prometheus server is missing: apt-get install prometheus (or `make system-deps`)")
    config = {
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": f"{SCRAPE_SECONDS}s"},
        # honor_labels as the chart's ServiceMonitor: the jobs' namespace label is the metric's own.
        "scrape_configs": [{"job_name": JOB, "honor_labels": True, "static_configs": [{"targets": targets}]}],
    }
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("wb")
    process = subprocess.Popen(
        [binary, f"--config.file={directory / 'prometheus.yml'}", f"--storage.tsdb.path={directory / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        server = Prometheus(f"http://127.0.0.1:{port}")
        up = [1.0] * len(targets)
        deadline = time.monotonic() + 60
        while True:  # until it answers queries; then until its first scrape of each target succeeded
            assert process.poll() is None, log_path.read_text()[-3000:]
            try:
                server.until(f'up{{job="{JOB}"}}', lambda s: [x["value"] for x in s] == up, timeout=30)
                break
            except OSError:
                assert time.monotonic() < deadline, "Prometheus did not start within 60s"
                time.sleep(0.2)  # not listening yet: nothing to watch but its port
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
