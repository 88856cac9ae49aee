import re

from commerce_jobs.devcluster.toolchain import BINARIES, NODE_BINARIES, Toolchain, pinned_versions


def test_every_tool_is_pinned_to_an_exact_version() -> None:
    versions = pinned_versions()
    assert set(versions) == {
        "KUBERNETES_VERSION", "ETCD_VERSION", "KWOK_VERSION", "HELM_VERSION", "CONTAINERD_VERSION"
    }  # fmt: skip
    for version in versions.values():
        assert re.fullmatch(r"v\d+\.\d+\.\d+", version), version


def test_each_binary_lives_in_a_directory_named_by_its_version(tmp_path) -> None:
    toolchain = Toolchain(root=tmp_path, versions=pinned_versions())
    kube = pinned_versions()["KUBERNETES_VERSION"]
    assert toolchain.path("kube-apiserver") == tmp_path / f"kubernetes-{kube}" / "kube-apiserver"
    assert toolchain.path("kubectl").parent == toolchain.path("kube-scheduler").parent
    assert sorted(toolchain.missing()) == sorted(BINARIES)


def test_the_real_nodes_tools_have_directories_of_their_own(tmp_path) -> None:
    """kubelet and kube-proxy beside, not inside, the control plane's directory: building them leaves its cache."""
    toolchain = Toolchain(root=tmp_path, versions=pinned_versions())
    versions = pinned_versions()
    kube, containerd = versions["KUBERNETES_VERSION"], versions["CONTAINERD_VERSION"]
    assert toolchain.path("kubelet") == tmp_path / f"kubernetes-node-{kube}" / "kubelet"
    assert toolchain.path("kube-proxy").parent == toolchain.path("kubelet").parent
    for binary in ("containerd", "containerd-shim-runc-v2", "ctr"):
        assert toolchain.path(binary) == tmp_path / f"containerd-{containerd}" / binary
    assert toolchain.pause_archive.parent.name.startswith("pause-")
    assert toolchain.pause_ref.startswith("localhost/commerce-jobs/node-pause:")


def test_the_kwok_only_cluster_does_not_need_the_real_nodes_tools(tmp_path) -> None:
    toolchain = Toolchain(root=tmp_path, versions=pinned_versions())
    for binary in BINARIES:
        toolchain.path(binary).parent.mkdir(parents=True, exist_ok=True)
        toolchain.path(binary).write_text("")
        toolchain.path(binary).chmod(0o755)

    assert toolchain.missing() == []
    assert toolchain.missing(node=True) == [*NODE_BINARIES, "pause image"]
