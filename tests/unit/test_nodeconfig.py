"""The real node's configuration builders and the parsing that its tear-down relies on (pure)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from commerce_jobs.devcluster import nodeconfig
from commerce_jobs.devcluster.nodeconfig import NODE_IP, NodePaths, NodePorts

PATHS = NodePaths(Path("/srv/cluster"))
PORTS = NodePorts(kubelet=10250, kubelet_healthz=10248, proxy_healthz=10256, proxy_metrics=10249)


def all_strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in all_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in all_strings(v)]
    return []


def test_containerd_keeps_everything_under_the_cluster_directory_with_this_sandboxs_knobs() -> None:
    config = tomllib.loads(nodeconfig.containerd_config(PATHS, "localhost/commerce-jobs/node-pause:abc"))

    plugins = config["plugins"]
    runtime = plugins["io.containerd.cri.v1.runtime"]
    assert runtime["restrict_oom_score_adj"] is True  # no CAP_SYS_RESOURCE: runc cannot lower oom_score_adj
    assert runtime["netns_mounts_under_state_dir"] is True
    runc = runtime["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"]["SystemdCgroup"] is False  # cgroup v1 with the cgroupfs driver, as the kubelet's
    assert runtime["cni"]["bin_dirs"] == ["/usr/lib/cni"]
    assert (
        plugins["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == "localhost/commerce-jobs/node-pause:abc"
    )
    assert plugins["io.containerd.nri.v1.nri"]["disable"] is True
    assert config["imports"] == []  # nothing from the machine's /etc/containerd
    paths = [p for p in all_strings(config) if p.startswith("/")]
    machine = {"/usr/lib/cni", nodeconfig.RUNC, nodeconfig.SHIM_SOCKET_DIR}
    assert paths
    assert all(p.startswith("/srv/cluster/node/") or p in machine for p in paths), paths


def test_the_pods_network_is_a_private_bridge_with_addresses_kept_in_the_cluster_directory() -> None:
    conflist = nodeconfig.cni_conflist(PATHS)

    bridge, portmap = conflist["plugins"]
    assert (bridge["type"], bridge["bridge"], bridge["isGateway"]) == ("bridge", nodeconfig.CNI_BRIDGE, True)
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["type"] == "host-local"
    assert bridge["ipam"]["ranges"] == [[{"subnet": nodeconfig.POD_SUBNET}]]
    assert bridge["ipam"]["dataDir"] == "/srv/cluster/node/cni/ipam"
    assert portmap == {"type": "portmap", "capabilities": {"portMappings": True}}


def test_the_kubelet_authenticates_and_authorizes_its_api_on_the_node_ip_only() -> None:
    config = nodeconfig.kubelet_config(PATHS, PORTS, Path("/ca.crt"), Path("/s.crt"), Path("/s.key"))

    assert (config["failCgroupV1"], config["cgroupDriver"]) == (False, "cgroupfs")
    assert config["authentication"]["anonymous"] == {"enabled": False}
    assert config["authentication"]["webhook"]["enabled"] is True
    assert config["authentication"]["x509"] == {"clientCAFile": "/ca.crt"}
    assert config["authorization"]["mode"] == "Webhook"
    assert (config["address"], config["port"], config["readOnlyPort"]) == (NODE_IP, 10250, 0)
    assert config["healthzBindAddress"] == "127.0.0.1"
    assert config["containerRuntimeEndpoint"] == "unix:///srv/cluster/node/run/containerd.sock"
    assert config["podLogsDir"] == "/srv/cluster/node/pod-logs"


def test_the_kubelet_registers_the_labelled_node_under_its_root_dir() -> None:
    argv = nodeconfig.kubelet_argv(Path("/bin/kubelet"), PATHS)

    assert "--node-labels=commercejobs.dev/node=real" in argv
    assert f"--node-ip={NODE_IP}" in argv
    assert f"--hostname-override={nodeconfig.REAL_NODE_NAME}" in argv
    assert "--root-dir=/srv/cluster/node/kubelet" in argv


def test_kube_proxy_writes_iptables_rules_and_leaves_the_conntrack_settings_alone() -> None:
    config = nodeconfig.kube_proxy_config(PATHS, PORTS)

    assert config["mode"] == "iptables"
    assert config["conntrack"]["maxPerCore"] == 0
    assert config["iptables"]["localhostNodePorts"] is False  # would need route_localnet=1 machine-wide
    assert (config["bindAddress"], config["healthzBindAddress"]) == (NODE_IP, "127.0.0.1:10256")


def test_a_kubeconfig_with_a_client_certificate() -> None:
    config = nodeconfig.cert_kubeconfig("https://10.89.0.1:6443", Path("/ca"), Path("/c"), Path("/k"), "kubelet")

    assert config["users"] == [{"name": "kubelet", "user": {"client-certificate": "/c", "client-key": "/k"}}]
    assert config["clusters"][0]["cluster"] == {"server": "https://10.89.0.1:6443", "certificate-authority": "/ca"}


def test_a_socket_path_too_long_for_a_unix_socket_is_refused() -> None:
    nodeconfig.check_socket_path(NodePaths(Path("/srv/c")).containerd_socket)
    with pytest.raises(ValueError, match="shorter cluster directory"):
        nodeconfig.check_socket_path(NodePaths(Path("/srv/" + "x" * 100)).containerd_socket)


RULES = """-P PREROUTING ACCEPT
-P OUTPUT ACCEPT
-N DOCKER-LIKE
-N KUBE-SERVICES
-N KUBE-SVC-NPX46M4PTMTKRN6Y
-N CNI-HOSTPORT-DNAT
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A OUTPUT -j DOCKER-LIKE
-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment "default/kubernetes:https" -j KUBE-SVC-NPX46M4PTMTKRN6Y
"""


def test_iptables_cleanup_unhooks_then_flushes_then_deletes_only_our_chains() -> None:
    commands = nodeconfig.iptables_cleanup("nat", RULES)

    assert commands == [
        ["-t", "nat", "-D", "PREROUTING", "-m", "comment", "--comment", "kubernetes service portals",
         "-j", "KUBE-SERVICES"],
        ["-t", "nat", "-D", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"],
        ["-t", "nat", "-F", "KUBE-SERVICES"],
        ["-t", "nat", "-F", "KUBE-SVC-NPX46M4PTMTKRN6Y"],
        ["-t", "nat", "-F", "CNI-HOSTPORT-DNAT"],
        ["-t", "nat", "-X", "KUBE-SERVICES"],
        ["-t", "nat", "-X", "KUBE-SVC-NPX46M4PTMTKRN6Y"],
        ["-t", "nat", "-X", "CNI-HOSTPORT-DNAT"],
    ]  # fmt: skip


def test_iptables_cleanup_of_a_clean_table_does_nothing() -> None:
    assert nodeconfig.iptables_cleanup("filter", "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n") == []


MOUNTINFO = r"""22 1 8:1 / / rw - ext4 /dev/vda rw
100 22 8:1 /srv/cluster/node/kubelet /srv/cluster/node/kubelet rw shared:5 - ext4 /dev/vda rw
101 100 0:50 / /srv/cluster/node/kubelet/pods/u1/volumes/kubernetes.io~projected/kube-api-access rw - tmpfs tmpfs rw
102 22 0:51 / /srv/cluster/node/containerd/state/io.containerd.runtime.v2.task/k8s.io/abc/rootfs rw - overlay overlay rw
103 22 0:52 / /srv/cluster/node/kubelet rw - tmpfs tmpfs rw
104 22 0:53 / /srv/cluster/nodeother rw - tmpfs tmpfs rw
105 22 0:54 / /srv/cluster/node/with\040space rw - tmpfs tmpfs rw
"""


def test_mounts_come_deepest_first_and_the_last_of_stacked_mounts_first() -> None:
    assert nodeconfig.mounts_under(MOUNTINFO, Path("/srv/cluster/node")) == [
        # As deep as each other: the later mount first.
        "/srv/cluster/node/containerd/state/io.containerd.runtime.v2.task/k8s.io/abc/rootfs",
        "/srv/cluster/node/kubelet/pods/u1/volumes/kubernetes.io~projected/kube-api-access",
        "/srv/cluster/node/with space",
        "/srv/cluster/node/kubelet",  # mounted twice: the later one first
        "/srv/cluster/node/kubelet",
    ]


def test_a_shim_is_ours_only_with_our_socket() -> None:
    ours = [
        "containerd-shim-runc-v2",
        "-namespace",
        "k8s.io",
        "-id",
        "abc",
        "-address",
        "/srv/c/node/run/containerd.sock",
    ]

    assert nodeconfig.shim_belongs_to(ours, Path("/srv/c/node/run/containerd.sock"))
    assert not nodeconfig.shim_belongs_to(ours, Path("/run/containerd/containerd.sock"))
    assert not nodeconfig.shim_belongs_to(["containerd-shim-runc-v2", "-address"], Path("/srv/c"))


def test_the_cni_results_of_our_sandboxes_only() -> None:
    names = [
        "commerce-jobs-node-abc-eth0", "cni-loopback-abc-lo", "cni-loopback-def-lo", "other-net-abc-eth0",
        "commerce-jobs-node-abcd-eth0",
    ]  # fmt: skip
    assert nodeconfig.cni_results_of(names, {"abc"}) == ["commerce-jobs-node-abc-eth0", "cni-loopback-abc-lo"]
