"""Starts and stops a local control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok.

Everything of one cluster lives in one directory: keys, kubeconfigs, etcd's data, logs, and ``cluster.json``, the
record of its ports and processes. ``up`` on a directory whose cluster already runs reuses it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from commerce_jobs.devcluster.pki import Pki
from commerce_jobs.devcluster.processes import ProcessRecord, spawn
from commerce_jobs.devcluster.toolchain import KWOK_STAGES, Toolchain, cache_dir

NODE_NAME = "kwok-node-0"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
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


@dataclass
class ClusterState:
    ports: Ports
    processes: list[ProcessRecord] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"ports": vars(self.ports), "processes": [p.to_json() for p in self.processes]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClusterState:
        return cls(Ports(**data["ports"]), [ProcessRecord.from_json(p) for p in data["processes"]])


class LocalCluster:
    def __init__(
        self,
        directory: Path | None = None,
        toolchain: Toolchain | None = None,
        audit_policy: Path | None = None,
        controller_manager_qps: int | None = None,
    ) -> None:
        self.directory = (directory or default_directory()).resolve()
        self.toolchain = toolchain or Toolchain.default()
        self.pki = Pki(self.directory / "pki")
        # An audit policy makes the apiserver log the requests it selects (to logs/audit.log): the benchmarks count
        # the operator's requests from it.
        self.audit_policy = audit_policy
        # The controller manager's client rate (default 20/s, burst 30, as in a real cluster). The benchmarks raise it,
        # so that the Job controller's own rate limit does not hide what the operator costs.
        self.controller_manager_qps = controller_manager_qps

    @property
    def audit_log(self) -> Path:
        return self.logs / "audit.log"

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
            "server": f"https://127.0.0.1:{state.ports.apiserver}",
            "processes": processes,
        }

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def up(self, build: bool = True) -> None:
        """Starts the control plane, or reuses it when every process of it still runs and it is ready."""
        state = self._load_state()
        if state and state.processes and all(p.alive() for p in state.processes) and self.is_ready():
            return
        if state:
            self._stop(state)
        self.toolchain.ensure(build=build)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.pki.create()
        state = ClusterState(Ports.allocate())
        # The record is saved after each start, so that `down` stops whatever did start even if a later step fails.
        try:
            for name, argv in self._control_plane(state.ports):
                state.processes.append(spawn(name, argv, self.logs / f"{name}.log"))
                self._save_state(state)
                if name == "kube-apiserver":
                    self._write_kubeconfigs(state.ports)
                    self._wait_apiserver(state.processes[-1])
                    self._install_kwok_crds()
            self._register_node()
        except BaseException:
            self._stop(state)
            raise

    def down(self) -> None:
        state = self._load_state()
        if state:
            self._stop(state)

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
        # Reverse order: clients first, etcd last, so nothing logs errors about a vanished server.
        for record in reversed(state.processes):
            record.stop()
        state.processes.clear()
        self._save_state(state)

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
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",  # there is no default route to take it from
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
                "--endpoint-reconciler-type=none",  # 127.0.0.1 is not a valid Endpoints address
                "--allow-privileged=true",
                "--kubelet-preferred-address-types=InternalIP",  # reach kwok's kubelet API for pods/log
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
                "--manage-all-nodes=true",
                "--node-ip=127.0.0.1",
                f"--node-name={NODE_NAME}",
                f"--node-port={ports.kwok}",
                f"--server-address=127.0.0.1:{ports.kwok}",
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

    def _write_kubeconfigs(self, ports: Ports) -> None:
        for user, path in (
            ("admin", self.kubeconfig),
            ("kube-controller-manager", self.directory / "kube-controller-manager.kubeconfig"),
            ("kube-scheduler", self.directory / "kube-scheduler.kubeconfig"),
        ):
            server = f"https://127.0.0.1:{ports.apiserver}"
            config = kubeconfig_for(server, self.pki.ca_cert, user, self.pki.token(user))
            tmp = path.with_suffix(".tmp")
            tmp.write_text(yaml.safe_dump(config, sort_keys=False))
            os.chmod(tmp, 0o600)
            tmp.replace(path)

    def _install_kwok_crds(self) -> None:
        self.kubectl("apply", "--server-side", f"--filename={self.toolchain.kwok_crds}")
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/logs.kwok.x-k8s.io")

    def _register_node(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": NODE_NAME,
                "labels": {"type": "kwok", "kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux"},
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
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
