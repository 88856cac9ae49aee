"""The dev cluster's real node: containerd, a kubelet and kube-proxy on this machine, beside kwok's simulated node.

`LocalCluster(real_node=True)` drives it: ``prepare`` before the control plane starts (the machine-wide lock, what a
crashed node left behind, the node's address), ``start_runtime`` (containerd) and ``import_images`` while the control
plane starts, ``start_node`` once the apiserver serves (the kubelet, kube-proxy), and ``stop`` (every process by
pid, then the machine as it was). The configuration
comes from the pure builders of ``commerce_jobs.devcluster.nodeconfig``.

Only one real node can run on a machine: its iptables chains, kernel settings, `kubepods` cgroups and link names are
machine-wide. A lock file names the cluster that runs it and the processes that hold it; a second one is refused
with that name, and a lock whose processes are all gone is taken over after cleaning up what they left.
"""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from commerce_jobs.devcluster import nodeconfig
from commerce_jobs.devcluster.nodeconfig import (
    CNI_BRIDGE,
    CNI_NETWORK,
    KUBEPODS_CGROUP,
    NODE_IP,
    NODE_LINK,
    REAL_NODE_NAME,
    NodePaths,
    NodePorts,
)
from commerce_jobs.devcluster.processes import ProcessRecord, spawn

if TYPE_CHECKING:
    from commerce_jobs.devcluster.cluster import LocalCluster

LOCK_PATH = Path("/run/commerce-jobs/real-node.json")
NODE_PROCESSES = ("containerd", "kubelet", "kube-proxy")
READY_TIMEOUT = 120.0
IMAGE_NAMESPACE = "k8s.io"  # the CRI's containerd namespace
CGROUP_ROOT = Path("/sys/fs/cgroup")
IPTABLES = ("iptables-nft", "iptables-legacy", "ip6tables-nft", "ip6tables-legacy")
# What the node needs from Debian (debian-packages.txt): a missing one fails `up` with the command that installs it.
REQUIRED_FILES = {
    nodeconfig.RUNC: "runc",
    f"{nodeconfig.CNI_BIN_DIR}/bridge": "containernetworking-plugins",
    "/usr/sbin/iptables": "iptables",
    "/usr/sbin/conntrack": "conntrack",
    "/usr/sbin/ip": "iproute2",
}
# A fully qualified image reference: the CRI looks an image up by its full name, so `shop:dev` would never match
# (it would look for docker.io/library/shop:dev and try to pull it).
QUALIFIED_REF = re.compile(r"^(localhost|[^/]*[.:][^/]*)/[^:@]+(:[\w][\w.-]{0,127}|@sha256:[0-9a-f]{64})$")


class RealNodeError(RuntimeError):
    """The real node could not start or stop; the message says why and what to do."""


class RealNodeBusy(RealNodeError):
    """Another cluster's real node runs on this machine."""


# --- the machine-wide lock -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeLock:
    """Which cluster directory runs the machine's real node, and the processes whose life holds the lock."""

    path: Path = LOCK_PATH

    @contextmanager
    def _guard(self) -> Iterator[None]:
        # Serializes the read-check-write of the record between two `up` that start at once.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.with_suffix(".lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def holder(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text())
            return {
                "directory": data["directory"],
                "processes": [ProcessRecord.from_json(p) for p in data["processes"]],
            }
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def acquire(self, directory: Path, holder: ProcessRecord) -> Path | None:
        """Takes the lock for ``directory`` (held by ``holder`` until ``hold`` names the node's processes).

        Returns the directory of a previous holder whose processes are all gone (its leftovers are to be cleaned),
        or None. Raises RealNodeBusy when another directory's node still runs."""
        with self._guard():
            current = self.holder()
            stale = None
            if current is not None:
                alive = [p for p in current["processes"] if p.alive()]
                if alive and Path(current["directory"]) != directory:
                    pids = ", ".join(f"{p.name} {p.pid}" for p in alive)
                    raise RealNodeBusy(
                        f"a real node already runs on this machine, for the cluster in {current['directory']} "
                        f"({pids}); only one can run at a time (iptables, cgroups and links are machine-wide). "
                        f"Stop it with: commerce-jobs dev-cluster down --directory {current['directory']}"
                    )
                stale = Path(current["directory"])
            self._write(directory, [holder])
            return stale

    def hold(self, directory: Path, processes: list[ProcessRecord]) -> None:
        with self._guard():
            self._write(directory, processes)

    def release(self, directory: Path) -> None:
        with self._guard():
            current = self.holder()
            if current is not None and Path(current["directory"]) == directory:
                self.path.unlink(missing_ok=True)

    def _write(self, directory: Path, processes: list[ProcessRecord]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"directory": str(directory), "processes": [p.to_json() for p in processes]}))
        tmp.replace(self.path)


# --- the node ----------------------------------------------------------------------------------------------------


@dataclass
class RealNode:
    cluster: LocalCluster
    lock: NodeLock = field(default_factory=NodeLock)
    _started: list[ProcessRecord] = field(default_factory=list, init=False, repr=False)

    @property
    def paths(self) -> NodePaths:
        return NodePaths(self.cluster.directory)

    @property
    def socket(self) -> Path:
        return self.paths.containerd_socket

    # -- before the control plane ----------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Checks what the node needs, takes the machine-wide lock, cleans what an earlier node left behind, and
        creates the node's address (the apiserver binds it, so this comes before the control plane)."""
        if os.geteuid() != 0:
            raise RealNodeError("the real node needs root (containerd, the kubelet and kube-proxy run as root)")
        missing = sorted({package for path, package in REQUIRED_FILES.items() if not Path(path).exists()})
        if missing:
            raise RealNodeError(
                "the real node needs Debian packages that are missing; install them with `make system-deps` or: "
                f"apt-get install -y {' '.join(missing)}"
            )
        nodeconfig.check_socket_path(self.socket)
        stale = self.lock.acquire(self.cluster.directory, ProcessRecord.current("dev-cluster up"))
        try:
            if stale is not None and stale != self.cluster.directory:
                clean_node_directory(NodePaths(stale))
            clean_node_directory(self.paths)
            clean_machine()
            self.paths.root.mkdir(parents=True, exist_ok=True)
            save_sysctls(self.paths.saved_sysctls)
            _create_node_link()
        except BaseException:
            self.lock.release(self.cluster.directory)
            raise

    # -- once the apiserver serves ---------------------------------------------------------------------------------
    def start_runtime(self, record: Callable[[ProcessRecord], None]) -> None:
        """Starts containerd (it needs no apiserver: the images can be imported while the control plane starts).
        ``record`` saves each process in the cluster's state as soon as it runs."""
        tc, paths = self.cluster.toolchain, self.paths
        for directory in (paths.cni_conf_dir, paths.cni_ipam_dir, paths.socket_dir):
            directory.mkdir(parents=True, exist_ok=True)
        paths.containerd_config.write_text(nodeconfig.containerd_config(paths, tc.pause_ref))
        (paths.cni_conf_dir / f"10-{CNI_NETWORK}.conflist").write_text(json.dumps(nodeconfig.cni_conflist(paths)))
        # containerd finds its shim on PATH.
        env = {**os.environ, "PATH": f"{tc.path('containerd').parent}:{os.environ.get('PATH', '/usr/sbin:/usr/bin')}"}
        containerd = self._run("containerd", nodeconfig.containerd_argv(tc.path("containerd"), paths), record, env)
        self._wait(containerd, "containerd", self._containerd_serves)

    def import_images(self, images: Sequence[tuple[str, Path]]) -> None:
        """The pause image, then ``images`` (ref, OCI archive), into the running containerd."""
        tc = self.cluster.toolchain
        self.import_image(tc.pause_archive, tc.pause_ref)
        for ref, archive in images:
            self.import_image(archive, ref)

    def start_node(self, server: str, ports: NodePorts, record: Callable[[ProcessRecord], None]) -> None:
        """Once the apiserver serves and the images are in: starts the kubelet and waits for the node to be Ready,
        then kube-proxy and waits until it has written the Services' rules."""
        tc, paths = self.cluster.toolchain, self.paths
        self._write_node_configs(server, ports)
        kubelet = self._run("kubelet", nodeconfig.kubelet_argv(tc.path("kubelet"), paths), record)
        self._wait(kubelet, "the kubelet's node to be Ready", self._node_ready)
        proxy = self._run("kube-proxy", nodeconfig.kube_proxy_argv(tc.path("kube-proxy"), paths), record)
        self._wait(proxy, "kube-proxy's first sync", lambda: _healthz_ok(ports.proxy_healthz))
        self.lock.hold(self.cluster.directory, self._started)

    def _run(
        self, name: str, argv: list[str], record: Callable[[ProcessRecord], None], env: dict[str, str] | None = None
    ) -> ProcessRecord:
        process = spawn(name, argv, self.cluster.logs / f"{name}.log", env=env)
        record(process)
        self._started.append(process)
        # While `up` runs, it holds the lock too: a node process that dies early must not free the machine.
        self.lock.hold(self.cluster.directory, [ProcessRecord.current("dev-cluster up"), *self._started])
        return process

    def _write_node_configs(self, server: str, ports: NodePorts) -> None:
        paths, pki = self.paths, self.cluster.pki
        for directory in (paths.kubelet_root, paths.pod_logs):
            directory.mkdir(parents=True, exist_ok=True)
        node_cert, node_key = pki.issue(
            "kubelet-client", f"/O=system:nodes/CN=system:node:{REAL_NODE_NAME}", "clientAuth"
        )
        serving_cert, serving_key = pki.issue(
            "kubelet-serving", f"/O=system:nodes/CN=system:node:{REAL_NODE_NAME}", "serverAuth",
            ips=(NODE_IP,), dns=(REAL_NODE_NAME,),
        )  # fmt: skip
        proxy_cert, proxy_key = pki.issue("kube-proxy", "/CN=system:kube-proxy", "clientAuth")
        kubelet = nodeconfig.kubelet_config(paths, ports, pki.ca_cert, serving_cert, serving_key)
        _write_private(paths.kubelet_config, yaml.safe_dump(kubelet, sort_keys=False))
        _write_private(
            paths.kubelet_kubeconfig,
            yaml.safe_dump(nodeconfig.cert_kubeconfig(server, pki.ca_cert, node_cert, node_key, "kubelet")),
        )
        _write_private(paths.kube_proxy_config, yaml.safe_dump(nodeconfig.kube_proxy_config(paths, ports)))
        _write_private(
            paths.kube_proxy_kubeconfig,
            yaml.safe_dump(nodeconfig.cert_kubeconfig(server, pki.ca_cert, proxy_cert, proxy_key, "kube-proxy")),
        )

    def _wait(self, process: ProcessRecord, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if not process.alive():
                raise RealNodeError(f"{process.name} exited while waiting for {what}; see {process.log}")
            if ready():
                return
            time.sleep(0.2)  # polls a local process that has no watch to offer
        raise RealNodeError(f"timed out after {READY_TIMEOUT:.0f}s waiting for {what}; see {process.log}")

    def _containerd_serves(self) -> bool:
        return self.ctr("version", check=False).returncode == 0

    def _node_ready(self) -> bool:
        result = self.cluster.kubectl(
            "get", "node", REAL_NODE_NAME, "--ignore-not-found",
            "--output=jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False, timeout=10,
        )  # fmt: skip
        return result.stdout.strip() == "True"

    # -- images ------------------------------------------------------------------------------------------------------
    def ctr(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        argv = [str(self.cluster.toolchain.path("ctr")), f"--address={self.socket}", f"--namespace={IMAGE_NAMESPACE}"]
        return subprocess.run([*argv, *args], capture_output=True, text=True, check=check, timeout=timeout)

    def import_image(self, archive: Path, ref: str) -> None:
        """Imports an OCI archive into the node's containerd, where the kubelet finds it as ``ref``.

        ``ref`` must be fully qualified (``localhost/shop:dev``, not ``shop:dev``), and the archive's index must
        name it (containerd's ``io.containerd.image.name`` annotation, or its tag in
        ``org.opencontainers.image.ref.name``)."""
        if not QUALIFIED_REF.match(ref):
            raise ValueError(f"{ref!r} is not a fully qualified image reference (e.g. localhost/name:tag)")
        repository = ref.rsplit("@", 1)[0].rsplit(":", 1)[0]
        result = self.ctr(
            "images", "import", "--platform=linux/amd64", f"--base-name={repository}", str(archive), check=False
        )
        if result.returncode != 0:
            raise RealNodeError(f"importing {archive} failed: {result.stderr.strip() or result.stdout.strip()}")
        listed = self.ctr("images", "list", "--quiet").stdout.split()
        if ref not in listed:
            raise RealNodeError(f"{archive} does not hold {ref} (its index names {archive_image_names(archive)})")

    # -- stop ----------------------------------------------------------------------------------------------------------
    def stop(self, processes: list[ProcessRecord]) -> None:
        """Stops the node's processes and restores the machine (both steps below)."""
        self.stop_processes(processes)
        self.clean()

    def stop_processes(self, processes: list[ProcessRecord]) -> None:
        """Stops kube-proxy and the kubelet (by pid), kills the pods' processes, stops containerd and its shims."""
        by_name = {p.name: p for p in processes}
        for name in ("kube-proxy", "kubelet"):
            if name in by_name:
                by_name[name].stop()
        kill_pod_processes()
        if "containerd" in by_name:
            by_name["containerd"].stop()
        kill_shims(self.cluster.toolchain.path("containerd-shim-runc-v2"), self.socket)

    def clean(self) -> None:
        """Restores the machine once the node's processes are gone: unmounts (deepest first), the node's state,
        links, kubepods cgroups, iptables chains (nft and legacy, v4 and v6), kernel settings; releases the lock.
        Safe to run again, and after a crash. The machine-wide part is skipped while another cluster's node holds
        the lock. Run it after the apiserver stopped: the apiserver binds the node IP, which goes with its link."""
        clean_node_directory(self.paths)
        holder = self.lock.holder()
        other = holder is not None and Path(holder["directory"]) != self.cluster.directory
        if other and holder is not None and any(p.alive() for p in holder["processes"]):
            return
        clean_machine()
        self.lock.release(self.cluster.directory)


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)


def _healthz_ok(port: int) -> bool:
    """Whether a component's health endpoint on loopback answers 200."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def archive_image_names(archive: Path) -> list[str]:
    """The names that an OCI archive's index gives its images."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        index = json.loads(member.read()) if member else {}
    names = []
    for manifest in index.get("manifests", []):
        annotations = manifest.get("annotations") or {}
        name = annotations.get("io.containerd.image.name") or annotations.get("org.opencontainers.image.ref.name")
        if name:
            names.append(name)
    return names


# --- the machine: set-up and tear-down -----------------------------------------------------------------------------


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _link_exists(name: str) -> bool:
    return _ip("link", "show", "dev", name, check=False).returncode == 0


def _create_node_link() -> None:
    """A bridge with no ports holding the node IP as a /32: a host-only address that is not loopback."""
    if not _link_exists(NODE_LINK):
        _ip("link", "add", NODE_LINK, "type", "bridge")
    if f" {NODE_IP}/32 " not in _ip("-o", "addr", "show", "dev", NODE_LINK).stdout:
        _ip("addr", "add", f"{NODE_IP}/32", "dev", NODE_LINK)
    _ip("link", "set", NODE_LINK, "up")


def save_sysctls(path: Path) -> None:
    """Records the kernel settings that the node may change, once (a restart keeps the first record)."""
    if path.exists():
        return
    values = {}
    for name in nodeconfig.TOUCHED_SYSCTLS:
        with suppress(OSError):
            values[name] = (Path("/proc/sys") / name).read_text().strip()
    path.write_text(json.dumps(values, indent=2))


def restore_sysctls(path: Path) -> None:
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    for name, value in values.items():
        target = Path("/proc/sys") / name
        with suppress(OSError):
            if target.read_text().strip() != value:
                target.write_text(value)
    # The next run's `up` may clean this directory at the same time: it takes the lock over as soon as this node's
    # processes are gone, and restores the same record.
    path.unlink(missing_ok=True)


def _kubepods_cgroups() -> list[Path]:
    """Every kubepods cgroup directory, deepest first, in every cgroup v1 hierarchy."""
    found: list[Path] = []
    for hierarchy in sorted(CGROUP_ROOT.iterdir()) if CGROUP_ROOT.is_dir() else []:
        top = hierarchy / KUBEPODS_CGROUP
        if hierarchy.is_symlink() or not top.is_dir():
            continue
        for dirpath, _, _ in os.walk(top, topdown=False):
            found.append(Path(dirpath))
    return found


def kill_pod_processes(timeout: float = 15.0) -> None:
    """SIGKILLs every process in the kubepods cgroups: the containers of the node's pods (and nothing else: only
    the kubelet's pods live there). Repeats until they are empty."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids: set[int] = set()
        for cgroup in _kubepods_cgroups():
            with suppress(OSError):
                pids.update(int(p) for p in (cgroup / "cgroup.procs").read_text().split())
        if not pids:
            return
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)  # the kernel empties the cgroups once the processes are gone


def kill_shims(shim: Path, socket: Path) -> None:
    """SIGKILLs the runc shims of our containerd (found by binary and by the socket in their command line): a
    shim outlives containerd by design."""
    binary = shim.resolve()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if Path(os.readlink(proc / "exe")) != binary:
                continue
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if nodeconfig.shim_belongs_to(cmdline, socket):
            with suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)


def unmount_under(root: Path) -> None:
    """Unmounts everything at or below ``root``, deepest first: the kubelet's shared bind mount of its root dir and
    the pods' volumes in it, containerd's rootfs overlays, shm and network namespace mounts."""
    for _ in range(3):  # a busy mount is detached lazily, and mounts may reappear through propagation once
        points = nodeconfig.mounts_under(Path("/proc/self/mountinfo").read_text(), root)
        if not points:
            return
        for point in points:
            if subprocess.run(["umount", point], capture_output=True, check=False).returncode != 0:
                subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)


def clean_node_directory(paths: NodePaths) -> None:
    """What one node left under its cluster directory: mounts, then the runtime's and the kubelet's state (the next
    start imports its images again), the pods' addresses and logs, and the kernel settings it changed."""
    if not paths.root.exists():
        return
    sandboxes = _sandbox_ids(paths)
    unmount_under(paths.root)
    for directory in (
        paths.containerd_root.parent, paths.socket_dir, paths.kubelet_root, paths.pod_logs, paths.cni_ipam_dir,
    ):  # fmt: skip
        shutil.rmtree(directory, ignore_errors=True)
    restore_sysctls(paths.saved_sysctls)
    _remove_container_log_links(paths.pod_logs)
    results = Path(nodeconfig.CNI_RESULTS_DIR)
    if results.is_dir():
        for name in nodeconfig.cni_results_of([p.name for p in results.iterdir()], sandboxes):
            (results / name).unlink(missing_ok=True)


def _sandbox_ids(paths: NodePaths) -> set[str]:
    """The ids of every pod sandbox that containerd's CRI knows in this node's directory (kept in both its root and
    its state directory)."""
    ids: set[str] = set()
    for base in (paths.containerd_root, paths.containerd_state):
        sandboxes = base / "io.containerd.grpc.v1.cri" / "sandboxes"
        if sandboxes.is_dir():
            ids.update(p.name for p in sandboxes.iterdir())
    return ids


def _remove_container_log_links(pod_logs: Path) -> None:
    # The kubelet links each container's log into the machine's /var/log/containers.
    links = Path("/var/log/containers")
    if not links.is_dir():
        return
    for link in links.iterdir():
        with suppress(OSError):
            if link.is_symlink() and os.readlink(link).startswith(str(pod_logs) + "/"):
                link.unlink()
    with suppress(OSError):
        links.rmdir()  # only when empty


def clean_machine() -> None:
    """The machine-wide state of a real node (there is at most one, under the lock): the two bridges, the kubepods
    cgroups, the KUBE-*/CNI-* iptables chains, the kubelet's device-plugin socket, the shims' socket directory."""
    for link in (CNI_BRIDGE, NODE_LINK):
        if _link_exists(link):
            _ip("link", "delete", link, check=False)
    for cgroup in _kubepods_cgroups():
        with suppress(OSError):
            cgroup.rmdir()
    for binary in IPTABLES:
        if shutil.which(binary) is None:
            continue
        for table in nodeconfig.IPTABLES_TABLES:
            listing = subprocess.run([binary, "-w", "-t", table, "-S"], capture_output=True, text=True, check=False)
            if listing.returncode != 0:
                continue  # the table does not exist in this backend
            for args in nodeconfig.iptables_cleanup(table, listing.stdout):
                subprocess.run([binary, "-w", *args], capture_output=True, check=False)
    # The kubelet's device manager keeps its socket at a fixed path, whatever its root dir.
    device_plugins = Path("/var/lib/kubelet/device-plugins")
    for name in ("kubelet.sock", "kubelet_internal_checkpoint"):
        (device_plugins / name).unlink(missing_ok=True)
    for directory in (device_plugins, device_plugins.parent):
        with suppress(OSError):
            directory.rmdir()
    # The sockets of shims that were killed (a shim removes its own when it ends normally).
    shims = Path(nodeconfig.SHIM_SOCKET_DIR)
    if shims.is_dir():
        for socket in shims.iterdir():
            socket.unlink(missing_ok=True)
        shims.rmdir()
    results = Path(nodeconfig.CNI_RESULTS_DIR)
    for directory in (results, results.parent):
        with suppress(OSError):
            directory.rmdir()  # only when empty: nothing else of the machine's is touched
