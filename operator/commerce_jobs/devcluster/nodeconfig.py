"""The real node's configuration, as pure builders: paths, containerd's TOML, the CNI network, the kubelet's and
kube-proxy's configuration files and command lines, and the parsing that its tear-down needs.

Nothing here starts a process or touches the machine; ``commerce_jobs.devcluster.realnode`` does, with these.
Each knob that this sandbox needs is explained where it is set (see also docs of the local control plane in
README.md).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REAL_NODE_NAME = "real-node-0"
# The label that tells the real node from kwok's simulated one: a pod picks one with a nodeSelector.
NODE_ROLE_LABEL = "commercejobs.dev/node"
REAL_NODE_LABELS = {NODE_ROLE_LABEL: "real"}

# The node's address: one /32 on a bridge link of its own. The kubelet refuses a loopback node IP and this kernel
# has no `dummy` link type; a bridge with no ports is a host-only address. The apiserver binds it too, so that pods
# reach it (see LocalCluster).
NODE_LINK = "cj-node0"
NODE_IP = "10.89.0.1"
# The pods' network: the CNI bridge plugin on a private subnet, addresses from host-local.
CNI_NETWORK = "commerce-jobs-node"
CNI_BRIDGE = "cj-cni0"
POD_SUBNET = "10.88.0.0/24"
CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins
RUNC = "/usr/sbin/runc"  # Debian's runc

# Kernel settings that the node's components change (the CNI bridge turns on forwarding; the kubelet sets its
# kernel tunables): saved before the node starts and restored when it goes.
TOUCHED_SYSCTLS = (
    "net/ipv4/ip_forward",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/conf/all/route_localnet",
)
# The chains that the kubelet (KUBE-FIREWALL, KUBE-KUBELET-CANARY, ...), kube-proxy (KUBE-SERVICES, KUBE-SVC-*, ...)
# and the CNI portmap plugin (CNI-HOSTPORT-*) create.
OWNED_CHAIN_PREFIXES = ("KUBE-", "CNI-")
IPTABLES_TABLES = ("filter", "nat", "mangle", "raw")
# The kubelet's QoS cgroups under the root of each cgroup v1 hierarchy.
KUBEPODS_CGROUP = "kubepods"
UNIX_SOCKET_MAX = 107  # sun_path is 108 bytes with its NUL
# The runc shims' sockets (64 hex characters each): short enough for any cluster directory, machine-wide but ours
# (one real node per machine), so that `down` removes those of the shims it killed. containerd's default is
# /run/containerd/s.
SHIM_SOCKET_DIR = "/run/commerce-jobs/shims"
# Where the CNI plugins cache their results (libcni's fixed default; containerd has no setting for it).
CNI_RESULTS_DIR = "/var/lib/cni/results"


@dataclass(frozen=True)
class NodePaths:
    """Where the node keeps everything, under the cluster's directory."""

    cluster_directory: Path

    @property
    def root(self) -> Path:
        return self.cluster_directory / "node"

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd" / "state"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def containerd_socket(self) -> Path:
        return self.socket_dir / "containerd.sock"

    @property
    def runc_root(self) -> Path:
        return self.root / "containerd" / "runc"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd.toml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet.yaml"

    @property
    def kubelet_kubeconfig(self) -> Path:
        return self.root / "kubelet.kubeconfig"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def kube_proxy_config(self) -> Path:
        return self.root / "kube-proxy.yaml"

    @property
    def kube_proxy_kubeconfig(self) -> Path:
        return self.root / "kube-proxy.kubeconfig"

    @property
    def saved_sysctls(self) -> Path:
        return self.root / "sysctls.json"


@dataclass(frozen=True)
class NodePorts:
    """Ports of the node's servers: the kubelet's API on the node IP, the rest on loopback."""

    kubelet: int
    kubelet_healthz: int
    proxy_healthz: int
    proxy_metrics: int


def check_socket_path(path: Path) -> None:
    """containerd listens on the socket and on the socket + ".ttrpc"; both must fit a unix socket address."""
    if len(f"{path}.ttrpc") > UNIX_SOCKET_MAX:
        raise ValueError(
            f"the containerd socket path {path} is longer than {UNIX_SOCKET_MAX - 6} bytes; use a shorter cluster "
            "directory"
        )


def _toml(value: Any) -> str:
    """A TOML value for the strings, booleans, integers and string lists that this config uses (a JSON string is a
    valid TOML basic string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def containerd_config(paths: NodePaths, sandbox_image: str) -> str:
    """containerd 2.x's configuration (version 4, as `containerd config default` of 2.4 prints it). Every path is
    under the cluster's directory, no configuration of the machine is imported, and NRI (whose socket would be the
    machine's /var/run/nri/nri.sock) is off."""
    cri_runtime = "plugins.'io.containerd.cri.v1.runtime'"
    cri_images = "plugins.'io.containerd.cri.v1.images'"
    sections: list[tuple[str, dict[str, Any]]] = [
        (
            "",
            {
                "version": 4,
                "root": str(paths.containerd_root),
                "state": str(paths.containerd_state),
                "temp": str(paths.root / "containerd" / "tmp"),
                "imports": [],
            },
        ),
        ("debug", {"level": "warn"}),
        ("plugins.'io.containerd.server.v1.grpc'", {"address": str(paths.containerd_socket)}),
        ("plugins.'io.containerd.server.v1.ttrpc'", {"address": f"{paths.containerd_socket}.ttrpc"}),
        ("plugins.'io.containerd.server.v1.debug'", {"address": ""}),
        ("plugins.'io.containerd.server.v1.metrics'", {"address": ""}),
        ("plugins.'io.containerd.internal.v1.opt'", {"path": str(paths.root / "containerd" / "opt")}),
        ("plugins.'io.containerd.nri.v1.nri'", {"disable": True}),
        ("plugins.'io.containerd.shim.v1.manager'", {"socket_dir": SHIM_SOCKET_DIR}),
        (
            "plugins.'io.containerd.grpc.v1.cri'",
            {
                "disable_tcp_service": True,
                "stream_server_address": "127.0.0.1",  # kubectl exec/attach/port-forward go through it
                "stream_server_port": "0",
            },
        ),
        (
            cri_runtime,
            {
                # runc cannot lower a container's oom_score_adj here (no CAP_SYS_RESOURCE in the bounding set): without
                # this every pod sandbox fails with "can't get final child's PID from pipe: EOF".
                "restrict_oom_score_adj": True,
                # The pods' network namespaces go under our state directory, not the machine's /var/run/netns.
                "netns_mounts_under_state_dir": True,
                "enable_selinux": False,
                "disable_apparmor": True,
                "cdi_spec_dirs": [],
            },
        ),
        (f"{cri_runtime}.containerd", {"default_runtime_name": "runc"}),
        (f"{cri_runtime}.containerd.runtimes.runc", {"runtime_type": "io.containerd.runc.v2"}),
        # cgroup v1 with the cgroupfs driver, as the kubelet's cgroupDriver (this sandbox has no systemd).
        # runc's own state goes under our directory too (by default: /run/containerd/runc).
        (
            f"{cri_runtime}.containerd.runtimes.runc.options",
            {"SystemdCgroup": False, "BinaryName": RUNC, "Root": str(paths.runc_root)},
        ),
        (f"{cri_runtime}.cni", {"bin_dirs": [CNI_BIN_DIR], "conf_dir": str(paths.cni_conf_dir), "max_conf_num": 1}),
        (cri_images, {"snapshotter": "overlayfs"}),
        # The sandbox image is local (there is no registry): imported before the kubelet starts, and pinned.
        (f"{cri_images}.pinned_images", {"sandbox": sandbox_image}),
    ]
    lines = ["# Generated by commerce_jobs.devcluster.nodeconfig for the dev cluster's real node at each start."]
    for header, values in sections:
        if header:
            lines += ["", f"[{header}]"]
        lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def cni_conflist(paths: NodePaths) -> dict[str, Any]:
    """The pods' network: a bridge with the gateway on the host side, host-local addresses (kept under our
    directory), and portmap for hostPorts. No masquerading: the pods only talk to the node (the apiserver)."""
    return {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": CNI_BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(paths.cni_ipam_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(
    paths: NodePaths, ports: NodePorts, ca: Path, serving_cert: Path, serving_key: Path
) -> dict[str, Any]:
    """The KubeletConfiguration. Its API listens only on the node IP, and authenticates (client certificates of the
    cluster CA, or bearer tokens through TokenReview) and authorizes (SubjectAccessReview) every request."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # This machine mounts cgroup v1 only; kubelet 1.36 refuses v1 unless told otherwise.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "imageServiceEndpoint": f"unix://{paths.containerd_socket}",
        "address": NODE_IP,
        "port": ports.kubelet,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports.kubelet_healthz,
        "tlsCertFile": str(serving_cert),
        "tlsPrivateKeyFile": str(serving_key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True, "cacheTTL": "30s"},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {
            "mode": "Webhook",
            "webhook": {"cacheAuthorizedTTL": "30s", "cacheUnauthorizedTTL": "5s"},
        },
        "podLogsDir": str(paths.pod_logs),
        "failSwapOn": False,
        "resolvConf": "/etc/resolv.conf",
        # The machine is shared: never evict for its disk or memory, never collect the imported images (there is
        # no registry to pull them again from).
        "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "maxPods": 110,
        "rotateCertificates": False,
    }


def kubelet_argv(kubelet: Path, paths: NodePaths) -> list[str]:
    labels = ",".join(f"{k}={v}" for k, v in REAL_NODE_LABELS.items())
    return [
        str(kubelet),
        f"--config={paths.kubelet_config}",
        f"--kubeconfig={paths.kubelet_kubeconfig}",
        f"--root-dir={paths.kubelet_root}",
        f"--cert-dir={paths.kubelet_root / 'pki'}",
        f"--hostname-override={REAL_NODE_NAME}",
        f"--node-ip={NODE_IP}",
        f"--node-labels={labels}",
        "--v=1",
    ]


def kube_proxy_config(paths: NodePaths, ports: NodePorts) -> dict[str, Any]:
    """kube-proxy in iptables mode, changing no machine-wide setting it can leave alone."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(paths.kube_proxy_kubeconfig)},
        "hostnameOverride": REAL_NODE_NAME,
        "bindAddress": NODE_IP,
        "healthzBindAddress": f"127.0.0.1:{ports.proxy_healthz}",
        "metricsBindAddress": f"127.0.0.1:{ports.proxy_metrics}",
        "clusterCIDR": POD_SUBNET,
        "nodePortAddresses": [f"{NODE_IP}/32"],
        # 0: leave the machine's conntrack table size and timeouts as they are.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        # Node ports on 127.0.0.1 would need route_localnet=1 machine-wide.
        "iptables": {"localhostNodePorts": False},
    }


def cert_kubeconfig(server: str, ca: Path, cert: Path, key: Path, user: str) -> dict[str, Any]:
    """A kubeconfig that authenticates with a client certificate (the kubelet's and kube-proxy's identities)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "commerce-jobs-dev", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": "commerce-jobs-dev", "context": {"cluster": "commerce-jobs-dev", "user": user}}],
        "current-context": "commerce-jobs-dev",
    }


def kube_proxy_argv(kube_proxy: Path, paths: NodePaths) -> list[str]:
    return [str(kube_proxy), f"--config={paths.kube_proxy_config}", "--v=1"]


def containerd_argv(containerd: Path, paths: NodePaths) -> list[str]:
    return [str(containerd), f"--config={paths.containerd_config}"]


# --- tear-down: parsing of what the machine reports -----------------------------------------------------------------


def iptables_cleanup(table: str, rules: str, prefixes: tuple[str, ...] = OWNED_CHAIN_PREFIXES) -> list[list[str]]:
    """The iptables arguments that remove our chains from ``table``, given its ``iptables -t TABLE -S`` listing:
    first the rules of other chains that jump to ours, then each of our chains flushed, then deleted."""
    lines = [shlex.split(line) for line in rules.splitlines() if line.strip()]
    ours = [words[1] for words in lines if len(words) == 2 and words[0] == "-N" and words[1].startswith(prefixes)]
    commands: list[list[str]] = []
    for words in lines:
        if len(words) < 2 or words[0] != "-A" or words[1] in ours:
            continue
        target = next((words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-j", "-g", "--jump", "--goto")), "")
        if target in ours:
            commands.append(["-t", table, "-D", *words[1:]])
    commands += [["-t", table, "-F", chain] for chain in ours]
    commands += [["-t", table, "-X", chain] for chain in ours]
    return commands


def _unescape_mount_path(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts_under(mountinfo: str, root: Path) -> list[str]:
    """The mount points at or below ``root`` in a /proc/self/mountinfo text, in the order to unmount them: deepest
    first, and of mounts stacked on one point, the last one first."""
    prefix = str(root).rstrip("/")
    found: list[tuple[int, int, str]] = []
    for index, line in enumerate(mountinfo.splitlines()):
        fields = line.split()
        if len(fields) < 5:
            continue
        point = _unescape_mount_path(fields[4])
        if point == prefix or point.startswith(prefix + "/"):
            found.append((point.count("/"), index, point))
    return [point for _, _, point in sorted(found, reverse=True)]


def cni_results_of(names: list[str], sandbox_ids: set[str]) -> list[str]:
    """The files of CNI's result cache that our pods' sandboxes left (named <network>-<sandbox id>-<interface>,
    for our network and containerd's own loopback one)."""
    found = []
    for name in names:
        for network in (CNI_NETWORK, "cni-loopback"):
            rest = name.removeprefix(f"{network}-")
            if rest != name and rest.rpartition("-")[0] in sandbox_ids:
                found.append(name)
    return found


def shim_belongs_to(cmdline: list[str], socket: Path) -> bool:
    """Whether a containerd-shim-runc-v2 command line is of the containerd listening on ``socket``."""
    for flag in ("-address", "--address"):
        if flag in cmdline[:-1] and cmdline[cmdline.index(flag) + 1] == str(socket):
            return True
    return any(arg in (f"-address={socket}", f"--address={socket}") for arg in cmdline)
