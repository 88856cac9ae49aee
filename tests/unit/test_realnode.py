"""The real node's machine-wide lock, its image references, and the pause image's key (no node started)."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from commerce_jobs.devcluster import realnode
from commerce_jobs.devcluster.cluster import LocalCluster
from commerce_jobs.devcluster.processes import ProcessRecord
from commerce_jobs.devcluster.realnode import NodeLock, RealNode, RealNodeBusy, archive_image_names
from commerce_jobs.devcluster.toolchain import BUILD_SCRIPT, pause_key

ME = ProcessRecord.current("test")
GONE = ProcessRecord(name="kubelet", pid=ME.pid, start_ticks=ME.start_ticks + 1, log="")  # same pid, not the same


def test_a_second_cluster_is_refused_while_the_first_ones_node_runs(tmp_path: Path) -> None:
    lock = NodeLock(tmp_path / "real-node.json")
    assert lock.acquire(Path("/c/first"), ME) is None

    with pytest.raises(RealNodeBusy, match=r"for the cluster in /c/first .*dev-cluster down --directory /c/first"):
        lock.acquire(Path("/c/second"), ME)
    assert lock.holder() == {"directory": "/c/first", "processes": [ME]}


def test_the_same_cluster_takes_its_own_lock_again(tmp_path: Path) -> None:
    lock = NodeLock(tmp_path / "real-node.json")
    lock.acquire(Path("/c/first"), ME)

    assert lock.acquire(Path("/c/first"), ME) == Path("/c/first")  # its own leftovers are cleaned before the start


def test_a_lock_whose_processes_are_gone_is_taken_over_and_names_what_to_clean(tmp_path: Path) -> None:
    lock = NodeLock(tmp_path / "real-node.json")
    lock.acquire(Path("/c/first"), ME)
    lock.hold(Path("/c/first"), [GONE])

    assert lock.acquire(Path("/c/second"), ME) == Path("/c/first")
    assert lock.holder() == {"directory": "/c/second", "processes": [ME]}


def test_only_the_holder_releases_the_lock(tmp_path: Path) -> None:
    lock = NodeLock(tmp_path / "real-node.json")
    lock.acquire(Path("/c/first"), ME)

    lock.release(Path("/c/second"))
    assert lock.holder() is not None
    lock.release(Path("/c/first"))
    assert lock.holder() is None
    assert lock.acquire(Path("/c/second"), ME) is None


@pytest.mark.parametrize(
    "ref",
    ["localhost/commerce-jobs/shop:dev", "registry.example.com/shop:1.0.0", "host:5000/a/b:c",
     "localhost/x@sha256:" + "0" * 64],
)  # fmt: skip
def test_fully_qualified_references(ref: str) -> None:
    assert realnode.QUALIFIED_REF.match(ref)


@pytest.mark.parametrize("ref", ["shop:dev", "commerce-jobs/shop:dev", "localhost/shop", "docker.io/library/shop"])
def test_an_image_is_imported_only_under_a_fully_qualified_reference(tmp_path: Path, ref: str) -> None:
    """The CRI looks an image up by its full name: `shop:dev` would be docker.io/library/shop:dev, and pulled."""
    node = RealNode(LocalCluster(tmp_path, real_node=True), NodeLock(tmp_path / "lock.json"))
    with pytest.raises(ValueError, match="not a fully qualified image reference"):
        node.import_image(tmp_path / "image.oci.tar", ref)


def test_the_names_in_an_oci_archives_index(tmp_path: Path) -> None:
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "annotations": {
                    "io.containerd.image.name": "localhost/a:dev",
                    "org.opencontainers.image.ref.name": "dev",
                }
            },
            {"annotations": {"org.opencontainers.image.ref.name": "b"}},
            {"digest": "sha256:0"},
        ],
    }
    archive = tmp_path / "image.oci.tar"
    with tarfile.open(archive, "w") as tar:
        data = json.dumps(index).encode()
        info = tarfile.TarInfo("index.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    assert archive_image_names(archive) == ["localhost/a:dev", "b"]


def test_the_pause_images_key_is_the_one_that_build_tools_computes() -> None:
    """build-tools.sh names the pause image's directory and tag by its source's content; Python finds it so."""
    shell = subprocess.run(["bash", str(BUILD_SCRIPT), "pause-key"], capture_output=True, text=True, check=True)
    assert pause_key() == shell.stdout.strip()
