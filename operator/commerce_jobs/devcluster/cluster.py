"""Starts and stops a local control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok;
optionally with a real node beside kwok's simulated one (``real_node=True``, see ``commerce_jobs.devcluster.realnode``).

Everything of one cluster lives in one directory: keys, kubeconfigs, etcd's data, logs, and ``cluster.json``, the
record of its ports and processes. ``up`` on a directory whose cluster already runs reuses it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from commerce_jobs.devcluster.nodeconfig import NODE_IP, NODE_ROLE_LABEL, NodePaths, NodePorts
from commerce_jobs.devcluster.pki import KUBELET_CLIENT_USER, Pki
from commerce_jobs.devcluster.processes import ProcessRecord, spawn
from commerce_jobs.devcluster.realnode import NODE_PROCESSES, RealNode
from commerce_jobs.devcluster.toolchain import KWOK_STAGES, Toolchain, cache_dir

NODE_NAME = "kwok-node-0"
# kwok manages only the nodes with this annotation (its simulated one), never a real node.
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = str(ipaddress.ip_network(SERVICE_CIDR)[1])  # the `kubernetes` Service's cluster IP
POD_CIDR = "10.244.0.0/16"
# The images (commerce_jobs.devcluster.images) that a real node imports at its start: the demo shop, a job's image,
# and its variants that run as root and as a named user (the security-context cases). The operator's image is
# imported by whoever runs it on the node (RealNode.import_image), as it is rebuilt whenever the operator changes.
DEFAULT_NODE_IMAGES = ("shop", "shop-root", "shop-named-user")
STATE_FILE = "cluster.json"
READY_TIMEOUT = 120.0


class ClusterError(RuntimeError):
    """The control plane did not come up; the message names the log to read."""


def default_directory() -> Path:
    return cache_dir() / "dev-cluster"


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Ports:
    etcd: int
    etcd_peer: int
    apiserver: int
    kwok: int

    @classmethod
    def allocate(cls) -> Ports:
        return cls(etcd=_free_port(), etcd_peer=_free_port(), apiserver=_free_port(), kwok=_free_port())

    @staticmethod
    def free_port() -> int:
        return _free_port()


@dataclass
class ClusterState:
    ports: Ports
    processes: list[ProcessRecord] = field(default_factory=list)
    real_node: bool = False
    node_ports: NodePorts | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ports": vars(self.ports),
            "processes": [p.to_json() for p in self.processes],
            "real_node": self.real_node,
            "node_ports": vars(self.node_ports) if self.node_ports else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClusterState:
        node_ports = data.get("node_ports")
        return cls(
            Ports(**data["ports"]),
            [ProcessRecord.from_json(p) for p in data["processes"]],
            real_node=bool(data.get("real_node", False)),
            node_ports=NodePorts(**node_ports) if node_ports else None,
        )


class LocalCluster:
    def __init__(
        self,
        directory: Path | None = None,
        toolchain: Toolchain | None = None,
        audit_policy: Path | None = None,
        controller_manager_qps: int | None = None,
        real_node: bool = False,
        node_images: Sequence[str] = DEFAULT_NODE_IMAGES,
    ) -> None:
        self.directory = (directory or default_directory()).resolve()
        self.toolchain = toolchain or Toolchain.default()
        # The serving certificate also names what a pod of the real node calls: the `kubernetes` Service's cluster
        # IP, and the node IP that the apiserver then binds.
        self.pki = Pki(self.directory / "pki", apiserver_ips=("127.0.0.1", KUBERNETES_SERVICE_IP, NODE_IP))
        # A real node (containerd, kubelet, kube-proxy) beside kwok's simulated one; see realnode.py.
        self.real_node = real_node
        self.node_images = tuple(node_images)
        # An audit policy makes the apiserver log the requests it selects (to logs/audit.log): the benchmarks count
        # the operator's requests from it.
        self.audit_policy = audit_policy
        # The controller manager's client rate (default 20/s, burst 30, as in a real cluster). The benchmarks raise it,
        # so that the Job controller's own rate limit does not hide what the operator costs.
        self.controller_manager_qps = controller_manager_qps

    @property
    def audit_log(self) -> Path:
        return self.logs / "audit.log"

    @property
    def api_host(self) -> str:
        """The address the apiserver binds and advertises. With a real node it is the node IP (a host-only address
        on a bridge link of its own), so that pods reach it through the `kubernetes` Service and the apiserver keeps
        that Service's Endpoints itself; otherwise loopback."""
        return NODE_IP if self.real_node else "127.0.0.1"

    def server(self, ports: Ports) -> str:
        return f"https://{self.api_host}:{ports.apiserver}"

    # -- paths -------------------------------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def logs(self) -> Path:
        return self.directory / "logs"

    @property
    def pod_logs(self) -> Path:
        return self.directory / "pod-logs"

    @property
    def _state_file(self) -> Path:
        return self.directory / STATE_FILE

    def _load_state(self) -> ClusterState | None:
        try:
            return ClusterState.from_json(json.loads(self._state_file.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _save_state(self, state: ClusterState) -> None:
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state.to_json(), indent=2))
        tmp.replace(self._state_file)

    # -- queries -----------------------------------------------------------------------------------------------
    def kubectl(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        argv = [str(self.toolchain.path("kubectl")), f"--kubeconfig={self.kubeconfig}", *args]
        return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)

    def is_ready(self) -> bool:
        if not self.kubeconfig.exists():
            return False
        try:
            return self.kubectl("get", "--raw=/readyz", check=False, timeout=10).stdout.strip() == "ok"
        except subprocess.TimeoutExpired:
            return False

    def status(self) -> dict[str, Any]:
        state = self._load_state()
        if state is None:
            return {"directory": str(self.directory), "running": False, "processes": {}}
        processes = {p.name: {"pid": p.pid, "alive": p.alive(), "log": p.log} for p in state.processes}
        return {
            "directory": str(self.directory),
            "running": bool(processes) and all(p["alive"] for p in processes.values()) and self.is_ready(),
            "kubeconfig": str(self.kubeconfig),
            "server": f"https://{NODE_IP if state.real_node else '127.0.0.1'}:{state.ports.apiserver}",
            "real_node": state.real_node,
            "processes": processes,
        }

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def up(self, build: bool = True) -> None:
        """Starts the control plane, or reuses it when every process of it still runs, it is ready, and it has a
        real node exactly when asked for one."""
        state = self._load_state()
        if (
            state
            and state.processes
            and state.real_node == self.real_node
            and all(p.alive() for p in state.processes)
            and self.is_ready()
        ):
            return
        if state:
            self._stop(state)
        self.toolchain.ensure(build=build, node=self.real_node)
        images = self._node_images(build) if self.real_node else []
        self.directory.mkdir(parents=True, exist_ok=True)
        self.pki.create()
        self._kwok_serving_cert()
        node = RealNode(self) if self.real_node else None
        if node is not None:
            node.prepare()  # the machine-wide lock and the node's address, which the apiserver binds
        state = ClusterState(Ports.allocate(), real_node=self.real_node)
        if node is not None:
            free = [Ports.free_port() for _ in range(4)]
            state.node_ports = NodePorts(
                kubelet=free[0], kubelet_healthz=free[1], proxy_healthz=free[2], proxy_metrics=free[3]
            )

        def record(process: ProcessRecord) -> None:
            state.processes.append(process)
            self._save_state(state)

        # The record is saved after each start, so that `down` stops whatever did start even if a later step fails.
        self._save_state(state)
        imports = ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-import")
        try:
            imported: Future[None] | None = None
            if node is not None:
                # containerd needs no apiserver: the images go in while the control plane starts.
                node.start_runtime(record)
                imported = imports.submit(node.import_images, images)
            for name, argv in self._control_plane(state.ports):
                record(spawn(name, argv, self.logs / f"{name}.log"))
                if name == "kube-apiserver":
                    self._write_kubeconfigs(state.ports)
                    self._wait_apiserver(state.processes[-1])
                    self._install_kwok_crds()
            self._register_node()
            if node is not None and imported is not None and state.node_ports is not None:
                self._grant_kubelet_api()
                imported.result()
                node.start_node(self.server(state.ports), state.node_ports, record)
            self._wait_default_service_account()
        except BaseException:
            imports.shutdown(wait=True, cancel_futures=True)
            self._stop(state)
            raise
        finally:
            imports.shutdown(wait=True)

    def down(self) -> None:
        state = self._load_state()
        if state:
            self._stop(state)
        elif NodePaths(self.directory).root.exists():
            RealNode(self).stop([])  # a node whose record is lost: clean what it left

    def _node_images(self, build: bool) -> list[tuple[str, Path]]:
        """The images that the real node imports at its start, beside its pause image: (fully qualified ref,
        OCI archive), built first when missing (cold: a few minutes)."""
        from commerce_jobs.devcluster import images

        wanted = [image for image in images.node_images() if image.name in self.node_images]
        unknown = set(self.node_images) - {image.name for image in wanted}
        if unknown:
            raise ClusterError(f"no node image called {', '.join(sorted(unknown))}")
        return images.ensure_images(build=build, images=wanted)

    # -- faults: one process stopped and started again (the reliability tests) ---------------------------------
    def stop_process(self, name: str, timeout: float = 15.0) -> None:
        """Stops one process of the running cluster: SIGTERM, then SIGKILL after ``timeout`` (0: a crash)."""
        state = self._require_state()
        record = next((p for p in state.processes if p.name == name), None)
        if record is None:
            raise ClusterError(f"no process {name!r} in this cluster")
        record.stop(timeout)
        state.processes.remove(record)
        self._save_state(state)

    def start_process(self, name: str) -> None:
        """Starts a stopped process again, with the arguments (ports, data) it had; waits for the apiserver."""
        state = self._require_state()
        if any(p.name == name for p in state.processes):
            raise ClusterError(f"{name} still runs")
        argv = dict(self._control_plane(state.ports))[name]
        record = spawn(name, argv, self.logs / f"{name}.log")
        state.processes.append(record)
        self._save_state(state)
        apiserver = next((p for p in state.processes if p.name == "kube-apiserver"), None)
        if apiserver is not None and name in ("kube-apiserver", "etcd"):
            self._wait_apiserver(apiserver)

    def restart_process(self, name: str) -> None:
        self.stop_process(name)
        self.start_process(name)

    def _require_state(self) -> ClusterState:
        state = self._load_state()
        if state is None or not state.processes:
            raise ClusterError(f"no cluster runs in {self.directory}")
        return state

    def _stop(self, state: ClusterState) -> None:
        node = RealNode(self) if state.real_node else None
        if node is not None:
            # The node's processes and pods first, while the apiserver still answers.
            node.stop_processes([p for p in state.processes if p.name in NODE_PROCESSES])
            state.processes = [p for p in state.processes if p.name not in NODE_PROCESSES]
            self._save_state(state)
        # Reverse order: clients first, etcd last, so nothing logs errors about a vanished server.
        for record in reversed(state.processes):
            record.stop()
        state.processes.clear()
        self._save_state(state)
        if node is not None:
            node.clean()  # the machine as it was, once the apiserver no longer binds the node IP

    # -- the processes -----------------------------------------------------------------------------------------
    def _control_plane(self, ports: Ports) -> Iterator[tuple[str, list[str]]]:
        tc, pki, d = self.toolchain, self.pki, self.directory
        yield (
            "etcd",
            [
                str(tc.path("etcd")),
                "--name=dev",
                f"--data-dir={d / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{ports.etcd}",
                f"--advertise-client-urls=http://127.0.0.1:{ports.etcd}",
                f"--listen-peer-urls=http://127.0.0.1:{ports.etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{ports.etcd_peer}",
                f"--initial-cluster=dev=http://127.0.0.1:{ports.etcd_peer}",
                "--listen-metrics-urls=",
                "--unsafe-no-fsync=true",  # a disposable cluster: speed over durability
                "--log-level=warn",
            ],
        )
        yield (
            "kube-apiserver",
            [
                str(tc.path("kube-apiserver")),
                f"--etcd-servers=http://127.0.0.1:{ports.etcd}",
                f"--bind-address={self.api_host}",
                f"--advertise-address={self.api_host}",  # there is no default route to take it from
                f"--secure-port={ports.apiserver}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--token-auth-file={pki.token_file}",
                "--authorization-mode=Node,RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # With a real node the apiserver keeps the `kubernetes` Service's Endpoints (the node IP) itself;
                # 127.0.0.1 is not a valid Endpoints address.
                *([] if self.real_node else ["--endpoint-reconciler-type=none"]),
                "--allow-privileged=true",
                "--kubelet-preferred-address-types=InternalIP",  # reach kwok's kubelet API for pods/log
                # The apiserver's identity towards kubelets (pods/log, exec: the kubelet authorizes it), and the CA
                # that the kubelets' serving certificates (kwok's and the real node's) are checked against.
                f"--kubelet-client-certificate={pki.kubelet_client_cert}",
                f"--kubelet-client-key={pki.kubelet_client_key}",
                f"--kubelet-certificate-authority={pki.ca_cert}",
                "--profiling=false",
                *(
                    [f"--audit-policy-file={self.audit_policy}", f"--audit-log-path={self.audit_log}"]
                    if self.audit_policy
                    else []
                ),
            ],
        )
        yield (
            "kube-controller-manager",
            [
                str(tc.path("kube-controller-manager")),
                f"--kubeconfig={d / 'kube-controller-manager.kubeconfig'}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                # Each controller acts as its own ServiceAccount, with the bootstrap roles of a real cluster.
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_cert}",
                f"--cluster-signing-cert-file={pki.ca_cert}",
                f"--cluster-signing-key-file={pki.ca_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                *(
                    [
                        f"--kube-api-qps={self.controller_manager_qps}",
                        f"--kube-api-burst={2 * self.controller_manager_qps}",
                    ]
                    if self.controller_manager_qps
                    else []
                ),
            ],
        )
        yield (
            "kube-scheduler",
            [
                str(tc.path("kube-scheduler")),
                f"--kubeconfig={d / 'kube-scheduler.kubeconfig'}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
            ],
        )
        yield (
            "kwok",
            [
                str(tc.path("kwok")),
                f"--kubeconfig={self.kubeconfig}",
                f"--config={KWOK_STAGES}",
                # Only its simulated node (and that node's pods): a real node beside it is the kubelet's.
                "--manage-nodes-with-annotation-selector=" + "=".join(KWOK_NODE_ANNOTATION),
                "--node-ip=127.0.0.1",
                f"--node-name={NODE_NAME}",
                f"--node-port={ports.kwok}",
                f"--server-address=127.0.0.1:{ports.kwok}",
                f"--tls-cert-file={pki.directory / 'kwok-serving.crt'}",
                f"--tls-private-key-file={pki.directory / 'kwok-serving.key'}",
                "--node-lease-duration-seconds=40",
                f"--cidr={POD_CIDR}",
                "--enable-crds=Logs,ClusterLogs",
            ],
        )
        yield (
            "pod-simulator",
            [
                sys.executable,
                "-m",
                "commerce_jobs.devcluster.simulation",
                f"--kubeconfig={self.kubeconfig}",
                f"--directory={self.pod_logs}",
            ],
        )

    def _wait_apiserver(self, record: ProcessRecord) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if not record.alive():
                raise ClusterError(f"kube-apiserver exited; see {record.log}")
            if self.is_ready():
                return
            time.sleep(0.25)
        raise ClusterError(f"kube-apiserver not ready after {READY_TIMEOUT:.0f}s; see {record.log}")

    def _wait_default_service_account(self) -> None:
        # The controller-manager creates it a moment after the apiserver is ready; until then the admission of
        # every pod in `default` is refused ("serviceaccount \"default\" not found"), so `up` is not done yet.
        waited = self.kubectl(
            "wait",
            "--for=create",
            "serviceaccount/default",
            "--namespace=default",
            f"--timeout={READY_TIMEOUT:.0f}s",
            check=False,
            timeout=READY_TIMEOUT + 10,
        )
        if waited.returncode != 0:
            raise ClusterError(f"the default service account was not created: {waited.stderr.strip()}")

    def _write_kubeconfigs(self, ports: Ports) -> None:
        for user, path in (
            ("admin", self.kubeconfig),
            ("kube-controller-manager", self.directory / "kube-controller-manager.kubeconfig"),
            ("kube-scheduler", self.directory / "kube-scheduler.kubeconfig"),
        ):
            config = kubeconfig_for(self.server(ports), self.pki.ca_cert, user, self.pki.token(user))
            tmp = path.with_suffix(".tmp")
            tmp.write_text(yaml.safe_dump(config, sort_keys=False))
            os.chmod(tmp, 0o600)
            tmp.replace(path)

    def _install_kwok_crds(self) -> None:
        for args in (
            ("apply", "--server-side", f"--filename={self.toolchain.kwok_crds}"),
            ("wait", "--for=condition=Established", "--timeout=60s", "crd/logs.kwok.x-k8s.io"),
        ):
            result = self.kubectl(*args, check=False, timeout=90)
            if result.returncode != 0:
                raise ClusterError(f"kubectl {args[0]} of kwok's CRDs failed: {result.stderr.strip()}")

    def _kwok_serving_cert(self) -> None:
        # kwok serves its node's kubelet API (pods/log) on 127.0.0.1 with this certificate, which the apiserver
        # checks against the cluster CA, as it checks the real node's.
        self.pki.issue("kwok-serving", f"/CN={NODE_NAME}", "serverAuth", ips=("127.0.0.1",), dns=(NODE_NAME,))

    def _grant_kubelet_api(self) -> None:
        """Lets the apiserver's kubelet client identity call the kubelets' API (logs, exec), through the bootstrap
        role made for it: the real kubelet authorizes each call with a SubjectAccessReview."""
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "commerce-jobs-dev:kube-apiserver-kubelet-client"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:kubelet-api-admin",
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": KUBELET_CLIENT_USER}],
        }
        manifest = self.directory / "kubelet-api-access.yaml"
        manifest.write_text(yaml.safe_dump(binding))
        self.kubectl("apply", "--server-side", f"--filename={manifest}")

    def _register_node(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": NODE_NAME,
                "labels": {
                    "type": "kwok",
                    "kubernetes.io/hostname": NODE_NAME,
                    "kubernetes.io/os": "linux",
                    NODE_ROLE_LABEL: "simulated",
                },
                "annotations": {KWOK_NODE_ANNOTATION[0]: KWOK_NODE_ANNOTATION[1], "node.alpha.kubernetes.io/ttl": "0"},
            },
        }
        manifest = self.directory / "node.yaml"
        manifest.write_text(yaml.safe_dump(node))
        self.kubectl("apply", "--server-side", f"--filename={manifest}")
        self.kubectl("wait", "--for=condition=Ready", "--timeout=60s", f"node/{NODE_NAME}", timeout=90)


def kubeconfig_for(server: str, ca: Path, user: str, token: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "commerce-jobs-dev", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "commerce-jobs-dev", "context": {"cluster": "commerce-jobs-dev", "user": user}}],
        "current-context": "commerce-jobs-dev",
    }
