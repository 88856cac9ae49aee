"""The dev-cluster lifecycle: `up` starts every component, a second `up` reuses them, `down` stops each by pid."""

from __future__ import annotations

from pathlib import Path

import pytest

from commerce_jobs.devcluster.cluster import LocalCluster
from commerce_jobs.devcluster.toolchain import Toolchain


@pytest.fixture
def local_cluster(tmp_path):
    if Toolchain.default().missing():
        pytest.skip("the control plane's binaries are not built")
    cluster = LocalCluster(tmp_path / "cluster")
    yield cluster
    cluster.down()


def test_up_reuses_a_running_cluster_and_down_stops_every_process(local_cluster: LocalCluster) -> None:
    local_cluster.up(build=False)
    first = local_cluster.status()
    assert first["running"] is True
    assert set(first["processes"]) == {
        "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "pod-simulator"
    }  # fmt: skip

    local_cluster.up(build=False)
    again = local_cluster.status()
    assert {n: p["pid"] for n, p in again["processes"].items()} == {n: p["pid"] for n, p in first["processes"].items()}

    local_cluster.down()
    after = local_cluster.status()
    assert after["running"] is False
    assert after["processes"] == {}
    for process in first["processes"].values():
        stat = Path(f"/proc/{process['pid']}/stat")
        assert not stat.exists(), (process, stat.read_text() if stat.exists() else "")
    assert not local_cluster.is_ready()
