"""The operator under test: the CRDs applied, and `commerce-jobs run` as a real kopf process against the cluster."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from commerce_jobs.devcluster.toolchain import Toolchain
from tests.cjobs import CommerceJobs
from tests.conftest import Cluster

# The realnode tier's fixtures (tests/e2e/test_realnode_*.py): a control plane of its own with a real node.
from tests.e2e.realnode import (  # noqa: F401
    real_chart,
    real_cjobs,
    real_core,
    real_namespace,
    real_node,
    real_node_cluster,
    real_operator_kubeconfig,
    start_real_operator,
)

REPO = Path(__file__).resolve().parents[2]
OPERATOR_CONFIG = {
    "jobDefaults": {"image": "registry.example.com/shop:e2e", "workingDir": "/var/www/html"},
    "queues": {"serial": {"maxRunning": 1}},
    "outputMaxBytes": 16384,
    "podStartTimeoutSeconds": 3,
    "dependencyGraceSeconds": 5,  # tests/e2e/test_depends_on.py: a dependency that does not exist fails a job soon
    "startedEventHoldSeconds": 2,  # tests/e2e/test_commercejob.py: a job of 4 s has its Started Event, one of 0 s not
    # Jobs of other tests keep the defaults (7 days, 1 hour); retention tests shorten their own.
    "retention": {"perCall": 2, "intervalSeconds": 2},
    # The allowlist is on, as in production, and lets every command run but those that begin with an underscore,
    # which tests/e2e/test_security.py uses for commands outside it.
    "allowedCommands": ["[!_]*"],
}


def commerce_jobs(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    return subprocess.run(
        [sys.executable, "-m", "commerce_jobs", *args], capture_output=True, text=True, env=env, check=False
    )


def kubectl(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    binary = cluster.local.toolchain.path("kubectl") if cluster.local else "kubectl"
    return subprocess.run(
        [str(binary), f"--kubeconfig={cluster.kubeconfig}", *args], capture_output=True, text=True, check=check
    )


def kubectl_apply(cluster: Cluster, namespace: str, manifest: str) -> subprocess.CompletedProcess[str]:
    """`kubectl apply -f -` of a manifest, as a user would; the result is checked by the caller."""
    binary = cluster.local.toolchain.path("kubectl") if cluster.local else "kubectl"
    return subprocess.run(
        [str(binary), f"--kubeconfig={cluster.kubeconfig}", f"-n={namespace}", "apply", "-f", "-"],
        input=manifest, capture_output=True, text=True, check=False,
    )  # fmt: skip


def _free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def crds(request: pytest.FixtureRequest, cluster: Cluster) -> None:
    if cluster.local is not None:
        request.getfixturevalue("chart")  # helm installs the chart's CRDs, as in a user's install
    else:
        kubectl(cluster, "apply", "--server-side", f"--filename={REPO / 'crds'}")
    for name in ("commercejobs", "commercejobtemplates", "commercecronjobs"):
        kubectl(cluster, "wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}.commercejobs.dev")


RELEASE = NAMESPACE = "cj-e2e"


@pytest.fixture(scope="session")
def chart(cluster: Cluster) -> str:
    """The chart, installed with helm as a user would; returns the namespace of the release."""
    if cluster.local is None:
        pytest.skip("the chart is installed only into the local control plane")
    helm = cluster.local.toolchain.path("helm")
    result = subprocess.run(
        [str(helm), "upgrade", "--install", RELEASE, str(REPO / "charts" / "commerce-jobs"), f"--namespace={NAMESPACE}",
         "--create-namespace", f"--kubeconfig={cluster.kubeconfig}", "--wait", "--timeout=3m",
         "--set=jobDefaults.image=registry.example.com/shop:e2e", "--set=console.enabled=true"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return NAMESPACE


@pytest.fixture(scope="session")
def operator_kubeconfig(cluster: Cluster, chart: str) -> Path:
    """A kubeconfig with the token of the chart's ServiceAccount: the operator under test has exactly the chart's
    RBAC rights, so a verb missing from the chart fails a test."""
    account = f"{RELEASE}-commerce-jobs"
    token = kubectl(cluster, "create", "token", account, f"--namespace={chart}", "--duration=4h").stdout.strip()
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"] = [{"name": account, "user": {"token": token}}]
    for context in config["contexts"]:
        context["context"]["user"] = account
    path = REPO / "test-artifacts" / "operator.kubeconfig"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def console_port() -> int:
    """The port of the jobs console that the operator under test serves (tests/e2e/test_console.py)."""
    return _free_port()


@pytest.fixture(scope="session")
def metrics_port() -> int:
    """The port of the operator's /metrics (tests/e2e/test_metrics.py: a real Prometheus scrapes it)."""
    return _free_port()


@pytest.fixture(scope="session")
def operator(
    cluster: Cluster, crds: None, operator_kubeconfig: Path, console_port: int, metrics_port: int
) -> Iterator[subprocess.Popen[bytes]]:
    directory = REPO / "test-artifacts"  # kept after the run: CI prints the operator's log when a test failed
    directory.mkdir(exist_ok=True)
    config = directory / "config.yaml"
    config.write_text(yaml.safe_dump(OPERATOR_CONFIG))
    port = _free_port()
    log = (directory / "operator.log").open("wb")
    env = {**os.environ, "KUBECONFIG": str(operator_kubeconfig), "COMMERCE_JOBS_CONFIG": str(config)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "commerce_jobs",
            "run",
            "--standalone",
            "-A",
            f"--liveness=http://127.0.0.1:{port}/healthz",
            f"--console=127.0.0.1:{console_port}",
            f"--metrics=127.0.0.1:{metrics_port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        _wait_healthy(proc, port, directory / "operator.log")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=30)
    finally:
        log.close()
        if proc.poll() is None:
            proc.kill()


def _wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 60) -> None:
    # kopf answers its liveness probe once its startup handlers ran and its watches are up.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the operator exited with {proc.returncode}:\n{log.read_text()[-5000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)  # not listening yet: nothing to watch but the port
    raise RuntimeError(f"the operator was not healthy within {timeout}s:\n{log.read_text()[-5000:]}")


@pytest.fixture
def cjobs(cluster: Cluster, operator: subprocess.Popen[bytes], namespace: str) -> CommerceJobs:
    return CommerceJobs(cluster.api, namespace)


@pytest.fixture
def custom(cluster: Cluster) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(cluster.api)


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm that `make tools` built: a test that needs it fails when it is missing, never skips."""
    path = Toolchain.default().path("helm")
    assert path.exists(), f"{path} is missing: run `make tools`"
    return path
