"""The real node's images, built (or reused) by the project, checked as the node will see them: each archive's name
and config, and the programs in them run from their unpacked root filesystems.

Building them cold takes a few minutes (Debian and PyPI); warm, the archives are reused.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from commerce_jobs.devcluster import images
from commerce_jobs.devcluster.images import ArchiveInfo, ensure_images, expected_config, image_ref, read_archive

# A cold build (about 5 minutes on 2 busy cores) happens in the first test's fixture.
pytestmark = [pytest.mark.realnode, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
REFS = {name: image_ref(name) for name in ("pause", "shop", "shop-root", "shop-named-user", "operator")}


@pytest.fixture(scope="module")
def built() -> dict[str, Path]:
    missing = [tool for tool in ("mmdebstrap", "umoci", "buildah", "skopeo") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run `make system-deps` (apt-get install -y {' '.join(missing)})")
    return dict(ensure_images())


@pytest.fixture(scope="module")
def configs(built: dict[str, Path]) -> dict[str, ArchiveInfo]:
    return {ref: read_archive(path) for ref, path in built.items()}


@pytest.fixture(scope="module")
def rootfs(built: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Each image unpacked by umoci (as the runtime would lay it out), by short name."""
    unpacked: dict[str, Path] = {}
    for name in ("pause", "shop", "operator"):
        work = tmp_path_factory.mktemp(name)
        with tarfile.open(built[REFS[name]]) as tar:
            tar.extractall(work / "layout", filter="tar")
        subprocess.run(
            ["umoci", "unpack", "--image", f"{work / 'layout'}:dev", str(work / "bundle")],
            check=True,
            capture_output=True,
        )
        unpacked[name] = work / "bundle" / "rootfs"
    yield unpacked
    for path in unpacked.values():
        shutil.rmtree(path.parent.parent, ignore_errors=True)


def in_image(rootfs: Path, info: ArchiveInfo, *argv: str, user: str | None = None) -> list[str]:
    """argv that runs a command in an unpacked image as its config says: its user, working dir and PATH."""
    config = info.config
    user = user if user is not None else config.get("User") or "0"
    uid, _, gid = user.partition(":")
    env = [pair for pair in config.get("Env") or [] if pair.startswith("PATH=")]
    chdir = [f"--chdir={config['WorkingDir']}"] if config.get("WorkingDir") else []
    return ["chroot", f"--userspec={uid}:{gid or uid}", str(rootfs), "/usr/bin/env", "-i", *chdir, *env, *argv]


def test_every_image_is_an_archive_named_fully_with_its_package_versions(built: dict[str, Path]) -> None:
    assert list(built) == list(REFS.values())
    for ref, path in built.items():
        assert read_archive(path).ref == ref
        manifest = json.loads(images.manifest_path(path).read_text())
        assert manifest["ref"] == ref
        assert manifest["debian"]["suite"] == "bookworm"
        assert manifest["debian"]["packages"], f"{ref}: no package versions recorded"
    shop_packages = json.loads(images.manifest_path(built[REFS["shop"]]).read_text())["debian"]["packages"]
    assert shop_packages["php8.2-cli"].startswith("8.2.")
    assert "php-symfony-console" in shop_packages
    assert "perl" not in shop_packages  # merged /usr by the hook, not by usrmerge


def test_another_oci_reader_sees_the_same_image(built: dict[str, Path], configs: dict[str, ArchiveInfo]) -> None:
    for ref, path in built.items():
        inspected = subprocess.run(
            ["skopeo", "inspect", "--config", f"oci-archive:{path}"], capture_output=True, text=True, check=True
        )
        assert json.loads(inspected.stdout)["config"] == configs[ref].config


def test_the_shop_runs_as_a_numeric_non_root_user_in_app(configs: dict[str, ArchiveInfo]) -> None:
    config = configs[REFS["shop"]].config
    assert re.fullmatch(r"[0-9]+(:[0-9]+)?", config["User"])
    assert int(config["User"].split(":")[0]) != 0
    assert config["WorkingDir"] == "/app"


def test_the_variants_share_the_shops_layers_and_differ_in_user_only(configs: dict[str, ArchiveInfo]) -> None:
    shop, root, named = configs[REFS["shop"]], configs[REFS["shop-root"]], configs[REFS["shop-named-user"]]
    assert shop.layers == root.layers == named.layers
    assert "User" not in root.config or root.config["User"] in ("", "0", "root")
    assert named.config["User"] == "app"
    without_user = [{k: v for k, v in info.config.items() if k != "User"} for info in (shop, root, named)]
    assert without_user[0] == without_user[1] == without_user[2]


def test_the_operator_image_has_the_config_its_dockerfile_says(configs: dict[str, ArchiveInfo]) -> None:
    base = {"Env": list(images.PYTHON_BASE_CONFIG.env), "Cmd": list(images.PYTHON_BASE_CONFIG.cmd or ())}
    expected = expected_config((REPO / "Dockerfile").read_text(), base)
    config = configs[REFS["operator"]].config
    assert config.get("Entrypoint") == expected["Entrypoint"]
    assert config.get("Cmd") == expected["Cmd"]
    assert config.get("User") == expected["User"]
    assert dict(pair.split("=", 1) for pair in config["Env"]) == expected["Env"]
    assert sorted(config.get("ExposedPorts") or {}) == expected["ExposedPorts"]


def test_the_operator_image_has_the_pinned_python_packages(built: dict[str, Path]) -> None:
    installed = json.loads(images.manifest_path(built[REFS["operator"]]).read_text())["python"]
    pins = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for pin in pins:
        name, _, version = pin.partition("==")
        assert installed.get(name.strip().lower().replace("-", "_")) == version.strip(), pin


def test_the_demo_shop_runs_in_its_image(rootfs: dict[str, Path], configs: dict[str, ArchiveInfo]) -> None:
    shop = configs[REFS["shop"]]
    result = subprocess.run(
        in_image(rootfs["shop"], shop, "php", "bin/console", "silver:import", "tmp", "--env=prod"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "Importing from remote system into tmp tables..."
    assert result.stdout.splitlines()[-1] == "Imported 1250 products, 48 categories"

    failing = subprocess.run(
        in_image(rootfs["shop"], shop, "php", "bin/console", "silver:erp:resend-orders"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert failing.returncode == 3
    assert "ERP request failed" in failing.stderr

    list_argv = in_image(rootfs["shop"], shop, "php", "bin/console", "list", "--raw")
    listed = subprocess.run(list_argv, capture_output=True, text=True, check=True)
    names = {line.split()[0] for line in listed.stdout.splitlines()}
    assert {
        "silver:import",
        "ibexa:commerce:index-econtent-job",
        "ibexa:commerce:refresh-cache",
        "silver:erp:resend-orders",
        "shop:slow",
    } <= names


def test_the_slow_command_traps_sigterm_with_the_images_php(
    rootfs: dict[str, Path], configs: dict[str, ArchiveInfo]
) -> None:
    argv = in_image(rootfs["shop"], configs[REFS["shop"]], "php", "bin/console", "shop:slow", "--seconds=30")
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline().startswith("Working for 30 seconds")
    assert process.stdout.readline() == "Progress: 1/30 seconds\n"
    process.send_signal(signal.SIGTERM)  # chroot and env exec: the signal reaches php itself
    rest = process.stdout.read()
    assert process.wait(timeout=10) == 0
    assert "Received SIGTERM after" in rest


def test_the_named_users_passwd_entry_is_the_numeric_user(rootfs: dict[str, Path]) -> None:
    result = subprocess.run(
        ["chroot", str(rootfs["shop"]), "/usr/bin/id", "-u", images.SHOP_USER_NAME],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == str(images.SHOP_UID)


def test_the_pause_image_pauses_until_sigint(rootfs: dict[str, Path], configs: dict[str, ArchiveInfo]) -> None:
    info = configs[REFS["pause"]]
    assert info.config["User"] == "65535:65535"
    uid, _, gid = info.config["User"].partition(":")
    process = subprocess.Popen(
        ["chroot", f"--userspec={uid}:{gid}", str(rootfs["pause"]), *info.config["Entrypoint"]],
        stderr=subprocess.PIPE,
    )
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(timeout=1)  # it pauses
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 0


def test_the_operators_entrypoint_runs_as_its_user(rootfs: dict[str, Path], configs: dict[str, ArchiveInfo]) -> None:
    info = configs[REFS["operator"]]
    entrypoint = info.config["Entrypoint"]
    result = subprocess.run(
        in_image(rootfs["operator"], info, entrypoint[0], "--help"), capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: commerce-jobs")


def test_a_warm_run_reuses_every_archive(built: dict[str, Path]) -> None:
    before = {ref: path.stat().st_mtime_ns for ref, path in built.items()}
    started = time.monotonic()
    again = dict(ensure_images())
    assert again == built
    assert {ref: path.stat().st_mtime_ns for ref, path in again.items()} == before
    assert time.monotonic() - started < 15


def test_the_cli_lists_every_image(built: dict[str, Path]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "commerce_jobs", "dev-cluster", "images", "--no-build"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0]: line.split()[-1] for line in result.stdout.splitlines()}
    assert listed == {ref: str(path) for ref, path in built.items()}
