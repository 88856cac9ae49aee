"""Shared fixtures: one real control plane per test run, or the cluster that --kubeconfig/KUBECONFIG names."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config

from commerce_jobs.devcluster.cluster import NODE_NAME, LocalCluster
from tests.kube import wait_for


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kubeconfig",
        default=None,
        help="run the cluster tests against this cluster instead of starting the local control plane",
    )


@dataclass
class Cluster:
    kubeconfig: Path
    api: client.ApiClient
    local: LocalCluster | None  # None: a cluster that the user named, which the tests never start or stop

    @property
    def simulated(self) -> bool:
        """Whether pods are simulated by kwok with the project's stages (only then can a test choose a pod's fate)."""
        try:
            client.CoreV1Api(self.api).read_node(NODE_NAME)
        except client.ApiException:
            return False
        return True


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    named = request.config.getoption("--kubeconfig") or os.environ.get("KUBECONFIG")
    if named:
        path = Path(named)
        yield Cluster(path, config.new_client_from_config(config_file=str(path)), None)
        return
    local = LocalCluster(tmp_path_factory.mktemp("control-plane"))
    try:
        local.up(build=True)
        api = config.new_client_from_config(config_file=str(local.kubeconfig))
        yield Cluster(local.kubeconfig, api, local)
    finally:
        local.down()


@pytest.fixture(scope="session")
def simulated_cluster(cluster: Cluster) -> Cluster:
    if not cluster.simulated:
        pytest.skip("needs kwok's simulated node of the local control plane")
    return cluster


@pytest.fixture
def core(cluster: Cluster) -> client.CoreV1Api:
    return client.CoreV1Api(cluster.api)


@pytest.fixture
def batch(cluster: Cluster) -> client.BatchV1Api:
    return client.BatchV1Api(cluster.api)


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    """A fresh namespace per test, ready for pods (its default ServiceAccount exists)."""
    name = f"cj-test-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for(core.list_namespaced_service_account, "default", lambda _: True, namespace=name)
    yield name
    core.delete_namespace(name)
