import re

from commerce_jobs.devcluster.toolchain import BINARIES, Toolchain, pinned_versions


def test_every_tool_is_pinned_to_an_exact_version() -> None:
    versions = pinned_versions()
    assert set(versions) == {"KUBERNETES_VERSION", "ETCD_VERSION", "KWOK_VERSION", "HELM_VERSION"}
    for version in versions.values():
        assert re.fullmatch(r"v\d+\.\d+\.\d+", version), version


def test_each_binary_lives_in_a_directory_named_by_its_version(tmp_path) -> None:
    toolchain = Toolchain(root=tmp_path, versions=pinned_versions())
    kube = pinned_versions()["KUBERNETES_VERSION"]
    assert toolchain.path("kube-apiserver") == tmp_path / f"kubernetes-{kube}" / "kube-apiserver"
    assert toolchain.path("kubectl").parent == toolchain.path("kube-scheduler").parent
    assert sorted(toolchain.missing()) == sorted(BINARIES)
