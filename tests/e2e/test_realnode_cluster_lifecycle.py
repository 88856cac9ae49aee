"""The real node's life: `up`, `down` that leaves the machine as it was, `up` again that works; and a second real node
on the same machine refused without harm to the first.

This module starts its own cluster and needs the machine's real node to itself, so it sorts before the other realnode
modules (whose session cluster then starts after it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from commerce_jobs.devcluster import nodeconfig
from commerce_jobs.devcluster.cluster import LocalCluster
from commerce_jobs.devcluster.nodeconfig import NODE_ROLE_LABEL, REAL_NODE_NAME
from commerce_jobs.devcluster.realnode import IPTABLES, NodeLock, RealNodeBusy
from tests.e2e.realnode import NODE_WAIT, up_when_free
from tests.kube import wait_for

pytestmark = [pytest.mark.realnode, pytest.mark.timeout(1800)]

# What a real node may leave machine-wide (besides processes and mounts, checked apart).
LEFTOVER_PATHS = (
    "/var/lib/cni", "/var/log/containers", "/var/log/pods", "/run/containerd", "/var/lib/kubelet", "/run/netns",
    "/opt/containerd", "/var/run/nri", "/etc/kubernetes", nodeconfig.SHIM_SOCKET_DIR,
)  # fmt: skip


def machine_state() -> dict[str, Any]:
    """The machine-wide traces of a real node: iptables chains (nft and legacy, v4 and v6), links, kubepods
    cgroups, the files it may write outside its directory, and the kernel settings it may change."""
    chains = {}
    for binary in IPTABLES:
        if shutil.which(binary) is None:
            continue
        for table in nodeconfig.IPTABLES_TABLES:
            listing = subprocess.run([binary, "-w", "-t", table, "-S"], capture_output=True, text=True, check=False)
            chains[f"{binary} {table}"] = sorted(
                line for line in listing.stdout.splitlines() if "KUBE-" in line or "CNI-" in line
            )
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {
        "chains": chains,
        "links": sorted(line.split(":")[1].strip().split("@")[0] for line in links.splitlines()),
        "routes": subprocess.run(["ip", "route"], capture_output=True, text=True, check=True).stdout,
        "cgroups": sorted(str(p) for p in Path("/sys/fs/cgroup").glob("*/kubepods")),
        "paths": {path: sorted(p.name for p in Path(path).iterdir()) for path in LEFTOVER_PATHS if Path(path).exists()},
        "sysctls": {name: (Path("/proc/sys") / name).read_text().strip() for name in nodeconfig.TOUCHED_SYSCTLS},
    }


def mounts_under(directory: Path) -> list[str]:
    return nodeconfig.mounts_under(Path("/proc/self/mountinfo").read_text(), directory)


def wait_machine_free(timeout: float = NODE_WAIT) -> None:
    """Until no other run's real node holds the machine (its traces would be in the snapshot)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holder = NodeLock().holder()
        if holder is None or not any(p.alive() for p in holder["processes"]):
            return
        time.sleep(5)  # another run's node: nothing to watch
    raise TimeoutError("another run's real node still holds the machine")


def run_pause_pod(local: LocalCluster, forever: bool = False) -> client.V1Pod:
    """A pod on the real node that runs the pause image: a network namespace, cgroups, mounts and a shim made. It
    ends at once, or (``forever``) runs on: returned when it ended, or runs."""
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(local.kubeconfig)))
    name = f"pause-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_pod("default", client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            node_selector={NODE_ROLE_LABEL: "real"}, restart_policy="Never",
            containers=[client.V1Container(
                name="pause", image=local.toolchain.pause_ref, args=[] if forever else ["-v"]
            )],
        ),
    ))  # fmt: skip
    phases = ("Running",) if forever else ("Succeeded", "Failed")
    return wait_for(core.list_namespaced_pod, name, lambda p: p.status.phase in phases, namespace="default")


def node_ready(local: LocalCluster) -> bool:
    result = local.kubectl(
        "get", "node", REAL_NODE_NAME, "--output=jsonpath={.status.conditions[?(@.type=='Ready')].status}",
        check=False,
    )  # fmt: skip
    return result.stdout.strip() == "True"


def alive(processes: dict[str, Any]) -> list[str]:
    """The processes of a status() that are still alive (pids in /proc)."""
    return [name for name, p in processes.items() if Path(f"/proc/{p['pid']}").exists()]


def test_up_down_up_leaves_the_machine_as_it_was_and_a_second_node_is_refused(tmp_path: Path) -> None:
    wait_machine_free()
    before = machine_state()
    first = LocalCluster(tmp_path / "first", real_node=True)
    second = LocalCluster(tmp_path / "second", real_node=True)
    try:
        started = time.monotonic()
        up_when_free(first)
        print(f"\nreal-node cluster up in {time.monotonic() - started:.1f}s (images imported)")
        assert run_pause_pod(first).status.phase == "Succeeded"
        run_pause_pod(first, forever=True)  # still running at `down`: killed, its shim too
        running = first.status()
        assert running["real_node"] is True
        assert {"containerd", "kubelet", "kube-proxy"} <= set(running["processes"])

        started = time.monotonic()
        first.down()
        print(f"down in {time.monotonic() - started:.1f}s")
        assert alive(running["processes"]) == []
        assert mounts_under(first.directory) == []
        assert machine_state() == before
        assert NodeLock().holder() is None

        # The next `up` works on the same directory, as after a reboot.
        up_when_free(first)
        assert node_ready(first)
        assert run_pause_pod(first).status.phase == "Succeeded"
        again = first.status()

        # A second real node on the machine is refused, naming the first, which goes on unharmed.
        with pytest.raises(RealNodeBusy, match=re.escape(str(first.directory))):
            second.up(build=False)
        assert second.status()["processes"] == {}
        assert alive(again["processes"]) == list(again["processes"])
        assert node_ready(first)
        assert run_pause_pod(first).status.phase == "Succeeded"
        run_pause_pod(first, forever=True)

        first.down()
        assert machine_state() == before
    finally:
        second.down()
        first.down()
