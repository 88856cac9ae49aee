"""Fixtures of the realnode tier: a control plane of its own with a real node (containerd, kubelet, kube-proxy), the
chart's CRDs and RBAC in it, and the operator as a local process against it whose jobs run in real containers.

The real node is machine-wide (one at a time): on a machine that other test runs share, the fixture waits for the
node of another run to go, rather than fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from commerce_jobs.devcluster.cluster import LocalCluster
from commerce_jobs.devcluster.images import image_ref
from commerce_jobs.devcluster.nodeconfig import NODE_ROLE_LABEL
from commerce_jobs.devcluster.realnode import RealNode, RealNodeBusy
from tests.cjobs import CommerceJobs
from tests.conftest import Cluster
from tests.kube import wait_for

REPO = Path(__file__).resolve().parents[2]
ON_REAL_NODE = {NODE_ROLE_LABEL: "real"}
SHOP_IMAGE = image_ref("shop")
# The operator's configuration in this tier: the demo shop's image, on the real node. The podStartTimeoutSeconds is
# long, so that a container that fails "at once" shows that it did not wait for it.
REAL_OPERATOR_CONFIG: dict[str, Any] = {
    "jobDefaults": {"image": SHOP_IMAGE, "workingDir": "/app", "nodeSelector": ON_REAL_NODE},
    "outputMaxBytes": 16384,
    "podStartTimeoutSeconds": 120,
    "retention": {"perCall": 2, "intervalSeconds": 5},
}
RELEASE = CHART_NAMESPACE = "cj-real"
NODE_WAIT = 1200.0  # for another run's real node to go


def up_when_free(local: LocalCluster, timeout: float = NODE_WAIT) -> None:
    """``local.up()``, waiting while another cluster's real node holds the machine."""
    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            local.up(build=True)
            return
        except RealNodeBusy as busy:
            if time.monotonic() > deadline:
                raise
            if not told:
                sys.stderr.write(f"\nwaiting for the machine's real node: {busy}\n")
                told = True
            time.sleep(5)  # the lock names processes of another run; there is nothing to watch


@pytest.fixture(scope="session")
def real_node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A control plane of its own with the real node, Ready; stopped (and the machine cleaned) at the end."""
    local = LocalCluster(tmp_path_factory.mktemp("real-node"), real_node=True)
    try:
        up_when_free(local)
        yield Cluster(local.kubeconfig, config.new_client_from_config(config_file=str(local.kubeconfig)), local)
    finally:
        local.down()


@pytest.fixture(scope="session")
def real_node(real_node_cluster: Cluster) -> RealNode:
    assert real_node_cluster.local is not None
    return RealNode(real_node_cluster.local)


@pytest.fixture
def real_core(real_node_cluster: Cluster) -> client.CoreV1Api:
    return client.CoreV1Api(real_node_cluster.api)


@pytest.fixture
def real_namespace(real_core: client.CoreV1Api) -> Iterator[str]:
    name = f"cj-real-{uuid.uuid4().hex[:8]}"
    real_core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for(real_core.list_namespaced_service_account, "default", lambda _: True, namespace=name)
    yield name
    real_core.delete_namespace(name)


def real_kubectl(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert cluster.local is not None
    return cluster.local.kubectl(*args, check=check)


@pytest.fixture(scope="session")
def real_chart(real_node_cluster: Cluster) -> str:
    """The chart's CRDs, ServiceAccount and RBAC, installed by helm as a user would, with no replica: the operator
    under test runs as a local process with that ServiceAccount's token (exactly the chart's rights)."""
    local = real_node_cluster.local
    assert local is not None
    result = subprocess.run(
        [str(local.toolchain.path("helm")), "upgrade", "--install", RELEASE, str(REPO / "charts" / "commerce-jobs"),
         f"--namespace={CHART_NAMESPACE}", "--create-namespace", f"--kubeconfig={local.kubeconfig}", "--wait",
         "--timeout=3m", "--set=replicaCount=0", f"--set=jobDefaults.image={SHOP_IMAGE}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("commercejobs", "commercejobtemplates", "commercecronjobs"):
        real_kubectl(
            real_node_cluster, "wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}.commercejobs.dev"
        )
    return CHART_NAMESPACE


@pytest.fixture(scope="session")
def real_operator_kubeconfig(
    real_node_cluster: Cluster, real_chart: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    account = f"{RELEASE}-commerce-jobs"
    token = real_kubectl(
        real_node_cluster, "create", "token", account, f"--namespace={real_chart}", "--duration=4h"
    ).stdout.strip()
    kubeconfig = yaml.safe_load(real_node_cluster.kubeconfig.read_text())
    kubeconfig["users"] = [{"name": account, "user": {"token": token}}]
    for context in kubeconfig["contexts"]:
        context["context"]["user"] = account
    path = tmp_path_factory.mktemp("real-operator") / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    path.chmod(0o600)
    return path


OperatorFactory = Callable[..., CommerceJobs]


@pytest.fixture
def start_real_operator(
    real_node_cluster: Cluster, real_operator_kubeconfig: Path, request: pytest.FixtureRequest
) -> Iterator[OperatorFactory]:
    """Starts `commerce-jobs run` for one namespace with REAL_OPERATOR_CONFIG updated by ``overrides`` (e.g. other
    jobDefaults); returns the CommerceJobs of that namespace. Each test has its own, so that a test can run the
    operator with the configuration it documents."""
    from tests.e2e.conftest import _free_port, _wait_healthy

    started: list[subprocess.Popen[bytes]] = []
    directory = REPO / "test-artifacts"
    directory.mkdir(exist_ok=True)

    def start(namespace: str, **overrides: Any) -> CommerceJobs:
        settings = {**REAL_OPERATOR_CONFIG, **overrides}
        name = request.node.name[:80]
        config_file = directory / f"realnode-{name}.config.yaml"
        config_file.write_text(yaml.safe_dump(settings))
        log_path = directory / f"realnode-{name}.operator.log"
        port = _free_port()
        env = {**os.environ, "KUBECONFIG": str(real_operator_kubeconfig), "COMMERCE_JOBS_CONFIG": str(config_file)}
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "commerce_jobs", "run", "--standalone", f"--namespace={namespace}",
                 f"--liveness=http://127.0.0.1:{port}/healthz"],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        started.append(proc)
        _wait_healthy(proc, port, log_path)
        return CommerceJobs(real_node_cluster.api, namespace)

    yield start
    for proc in started:
        proc.terminate()
    for proc in started:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def real_cjobs(start_real_operator: OperatorFactory, real_namespace: str) -> CommerceJobs:
    """The CommerceJobs of a fresh namespace, run by the operator with the tier's configuration."""
    return start_real_operator(real_namespace)


def processes_with(*words: str) -> list[int]:
    """Pids of the machine's processes whose command line holds every one of ``words`` (e.g. a job's command and a
    marker parameter): the real processes of a job's container, seen from the node."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if all(any(word in arg for arg in argv) for word in words):
            found.append(int(proc.name))
    return found
