"""The CRDs as the two install paths put them on a cluster: `kubectl apply --server-side -f crds/` (`make dev`, and
the README's CRD upgrade) and `helm install` (the chart's crds/), in either order, on a control plane of its own that
starts without them. Each stored CRD must equal its file: a field that the apiserver drops or defaults makes the
stored value differ from what the second manager applies, and its server-side apply then conflicts on
.spec.versions."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from commerce_jobs import crd
from commerce_jobs.devcluster.cluster import LocalCluster
from tests.e2e.conftest import REPO

CRDS = REPO / "crds"
RELEASE = NAMESPACE = "shop-jobs"


@pytest.fixture
def bare_cluster(tmp_path: Path, helm: Path) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path / "cluster")
    try:
        cluster.up(build=False)  # the binaries of `make tools`: missing ones fail the test
        yield cluster
    finally:
        cluster.down()


def helm_run(helm: Path, cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args, f"--namespace={NAMESPACE}", f"--kubeconfig={cluster.kubeconfig}"],
                          capture_output=True, text=True, check=False)  # fmt: skip


def helm_install(helm: Path, cluster: LocalCluster) -> None:
    installed = helm_run(helm, cluster, "install", RELEASE, str(REPO / "charts" / "commerce-jobs"),
                         "--create-namespace", "--set=jobDefaults.image=registry.example.com/shop:1")  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr


def kubectl_apply(cluster: LocalCluster, path: Path, *flags: str) -> None:
    applied = cluster.kubectl("apply", "--server-side", *flags, f"--filename={path}", check=False)
    assert applied.returncode == 0, applied.stdout + applied.stderr


def stored(cluster: LocalCluster, name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(
        cluster.kubectl("get", "crd", name, "--output=json", "--show-managed-fields").stdout
    )
    return result


def assert_stored_as_written(cluster: LocalCluster, directory: Path = CRDS) -> None:
    for filename in crd.CRDS:
        written = yaml.safe_load((directory / filename).read_text())
        found = stored(cluster, written["metadata"]["name"])
        assert found["spec"] == written["spec"], filename
        managers = {f["manager"] for f in found["metadata"]["managedFields"] if f["operation"] == "Apply"}
        assert managers, filename  # applied server-side (an owner, so conflicts would be detected)


@pytest.mark.parametrize("helm_first", [False, True], ids=["kubectl-then-helm", "helm-then-kubectl"])
def test_kubectl_apply_and_helm_install_in_either_order(
    bare_cluster: LocalCluster, helm: Path, helm_first: bool
) -> None:
    """`make dev` on a fresh cluster and then the chart on it, or the chart first and then `make dev`."""
    if helm_first:
        helm_install(helm, bare_cluster)
        kubectl_apply(bare_cluster, CRDS)
    else:
        kubectl_apply(bare_cluster, CRDS)
        helm_install(helm, bare_cluster)
    assert_stored_as_written(bare_cluster)


def test_the_readmes_crd_upgrade_takes_them_over_from_helm(
    bare_cluster: LocalCluster, helm: Path, tmp_path: Path
) -> None:
    helm_install(helm, bare_cluster)
    # A later version of the CRDs: helm upgrade leaves CRDs alone, so the README's command applies them.
    newer = tmp_path / "crds"
    newer.mkdir()
    for filename in crd.CRDS:
        document = yaml.safe_load((CRDS / filename).read_text())
        document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"] += " (a newer version)"
        (newer / filename).write_text(yaml.safe_dump(document))
    kubectl_apply(bare_cluster, newer, "--force-conflicts")
    assert_stored_as_written(bare_cluster, newer)
    upgraded = helm_run(helm, bare_cluster, "upgrade", RELEASE, str(REPO / "charts" / "commerce-jobs"),
                        "--set=jobDefaults.image=registry.example.com/shop:2")  # fmt: skip
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert_stored_as_written(bare_cluster, newer)  # helm upgrade did not put the old ones back
