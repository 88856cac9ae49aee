"""The real node beside kwok's simulated one: Ready and labelled, its pods run in real containers whose logs come
through `kubectl logs`, kwok leaves it alone, and its pods reach the apiserver through the `kubernetes` Service."""

from __future__ import annotations

import ipaddress
import json
import uuid

import pytest
from kubernetes import client

from commerce_jobs.devcluster.cluster import KUBERNETES_SERVICE_IP, NODE_NAME
from commerce_jobs.devcluster.nodeconfig import NODE_IP, NODE_ROLE_LABEL, POD_SUBNET, REAL_NODE_NAME
from commerce_jobs.devcluster.toolchain import pinned_versions
from tests.conftest import Cluster
from tests.e2e.realnode import SHOP_IMAGE, real_kubectl
from tests.kube import wait_for

pytestmark = [pytest.mark.realnode, pytest.mark.timeout(1200)]


def ready(node: client.V1Node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


ENDED = ("Succeeded", "Failed")


def run_pod(
    core: client.CoreV1Api,
    namespace: str,
    image: str,
    command: list[str] | None = None,
    role: str = "real",
    until: tuple[str, ...] = ENDED,
) -> client.V1Pod:
    """A pod on the real (or the simulated) node that runs once; returned when its phase is one of ``until``."""
    name = f"pod-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_pod(namespace, client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            node_selector={NODE_ROLE_LABEL: role}, restart_policy="Never",
            containers=[client.V1Container(name="main", image=image, command=command)],
        ),
    ))  # fmt: skip
    return wait_for(core.list_namespaced_pod, name, lambda p: p.status.phase in until, namespace=namespace)


def test_the_real_node_is_ready_and_labelled_beside_kwoks(real_core: client.CoreV1Api) -> None:
    nodes = {n.metadata.name: n for n in real_core.list_node().items}

    real, simulated = nodes[REAL_NODE_NAME], nodes[NODE_NAME]
    assert ready(real)
    assert real.metadata.labels[NODE_ROLE_LABEL] == "real"
    assert real.status.node_info.kubelet_version == pinned_versions()["KUBERNETES_VERSION"]
    assert (
        real.status.node_info.container_runtime_version == f"containerd://{pinned_versions()['CONTAINERD_VERSION'][1:]}"
    )
    assert [(a.type, a.address) for a in real.status.addresses if a.type == "InternalIP"] == [("InternalIP", NODE_IP)]
    assert ready(simulated)
    assert simulated.metadata.labels[NODE_ROLE_LABEL] == "simulated"


def test_a_pod_on_the_real_node_runs_in_a_container_and_kubectl_logs_reads_its_output(
    real_node_cluster: Cluster, real_core: client.CoreV1Api, real_namespace: str
) -> None:
    assert real_node_cluster.local is not None
    pause = real_node_cluster.local.toolchain.pause_ref
    pod = run_pod(real_core, real_namespace, pause, command=["/pause", "-v"])

    assert pod.status.phase == "Succeeded"
    assert pod.spec.node_name == REAL_NODE_NAME
    assert pod.status.container_statuses[0].container_id.startswith("containerd://")
    assert ipaddress.ip_address(pod.status.pod_ip) in ipaddress.ip_network(POD_SUBNET)
    # apiserver -> kubelet, authenticated by the apiserver's client certificate and authorized by the kubelet.
    logs = real_kubectl(real_node_cluster, "logs", pod.metadata.name, f"--namespace={real_namespace}")
    assert logs.stdout == "pause (commerce-jobs)\n"


def test_kwok_simulates_only_its_own_node_and_a_pod_picks_one_by_label(
    real_node_cluster: Cluster, real_core: client.CoreV1Api, real_namespace: str
) -> None:
    """kwok runs with --manage-nodes-with-annotation-selector: the real node's status is the kubelet's, and a pod
    on it really runs (the CNI's address, stdout and stderr of the real process), while a pod that picks the
    simulated node is kwok's (its address from kwok's range, no container runtime)."""
    script = "fwrite(STDOUT, 'out' . PHP_EOL); fwrite(STDERR, 'err' . PHP_EOL); exit(3);"
    real = run_pod(real_core, real_namespace, SHOP_IMAGE, command=["php", "-r", script])
    # kwok keeps a pod that no Job owns Running (see kwok-stages.yaml).
    simulated = run_pod(
        real_core, real_namespace, SHOP_IMAGE, command=["php", "-r", script], role="simulated", until=("Running",)
    )

    assert real.spec.node_name == REAL_NODE_NAME
    assert real.status.container_statuses[0].state.terminated.exit_code == 3
    assert ipaddress.ip_address(real.status.pod_ip) in ipaddress.ip_network(POD_SUBNET)
    # One stream, as the kubelet logs it.
    assert real_core.read_namespaced_pod_log(real.metadata.name, real_namespace) in ("out\nerr\n", "err\nout\n")
    assert simulated.spec.node_name == NODE_NAME
    assert simulated.status.container_statuses[0].state.running is not None  # kwok's stages, not PHP's exit(3)
    assert ipaddress.ip_address(simulated.status.pod_ip) not in ipaddress.ip_network(POD_SUBNET)
    node = real_core.read_node(REAL_NODE_NAME)
    assert not node.status.node_info.kubelet_version.startswith("kwok")
    assert "kwok.x-k8s.io/node" not in (node.metadata.annotations or {})


SELF_REVIEW = """
$host = getenv('KUBERNETES_SERVICE_HOST') . ':' . getenv('KUBERNETES_SERVICE_PORT');
$account = '/var/run/secrets/kubernetes.io/serviceaccount';
$curl = curl_init("https://$host/apis/authentication.k8s.io/v1/selfsubjectreviews");
curl_setopt_array($curl, [
    CURLOPT_CAINFO => "$account/ca.crt",
    CURLOPT_HTTPHEADER => ['Authorization: Bearer ' . file_get_contents("$account/token"),
                           'Content-Type: application/json'],
    CURLOPT_POSTFIELDS => '{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}',
    CURLOPT_RETURNTRANSFER => true,
]);
$body = curl_exec($curl);
echo json_encode(['host' => $host, 'status' => curl_getinfo($curl, CURLINFO_RESPONSE_CODE),
                  'error' => curl_error($curl), 'body' => $body === false ? null : json_decode($body, true)]);
"""


def test_a_pod_calls_the_apiserver_through_the_kubernetes_service_with_its_token(
    real_core: client.CoreV1Api, real_namespace: str
) -> None:
    """As the operator's own pod will: https://10.96.0.1 (kube-proxy's rules to the node IP that the apiserver
    binds), the serving certificate checked against the ServiceAccount's CA, the token authenticated."""
    pod = run_pod(real_core, real_namespace, SHOP_IMAGE, command=["php", "-r", SELF_REVIEW])

    result = json.loads(real_core.read_namespaced_pod_log(pod.metadata.name, real_namespace))
    assert result["host"] == f"{KUBERNETES_SERVICE_IP}:443"
    assert (result["status"], result["error"]) == (201, ""), result
    user = result["body"]["status"]["userInfo"]["username"]
    assert user == f"system:serviceaccount:{real_namespace}:default"
    endpoints = real_core.read_namespaced_endpoints("kubernetes", "default")
    assert [a.ip for a in endpoints.subsets[0].addresses] == [NODE_IP]
