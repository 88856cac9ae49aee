"""The recipes and content keys of the real node's images (commerce_jobs.devcluster.images), without building."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from commerce_jobs.devcluster import images
from commerce_jobs.devcluster.images import (
    PYTHON_ROOTFS,
    SHOP_ROOTFS,
    ImageConfig,
    RootfsRecipe,
    expected_config,
    node_images,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of what the images are made from: the demo shop and the operator's build context."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "examples" / "demo-shop", tmp_path / "examples" / "demo-shop", ignore=ignore)
    shutil.copytree(REPO / "operator", tmp_path / "operator", ignore=ignore)
    shutil.copytree(REPO / "clients" / "php", tmp_path / "clients" / "php", ignore=ignore)
    for name in ("Dockerfile", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, tmp_path / name)
    return tmp_path


def keys(repo: Path) -> dict[str, str]:
    return {image.name: image.key for image in node_images(repo)}


def test_every_image_has_a_fully_qualified_ref() -> None:
    refs = [image.ref for image in node_images()]
    assert refs == [
        "localhost/commerce-jobs/pause:dev",
        "localhost/commerce-jobs/shop:dev",
        "localhost/commerce-jobs/shop-root:dev",
        "localhost/commerce-jobs/shop-named-user:dev",
        "localhost/commerce-jobs/operator:dev",
    ]


def test_keys_are_stable_for_the_same_inputs(repo: Path) -> None:
    assert keys(repo) == keys(repo)
    # The location of the checkout is no input.
    assert keys(repo) == keys(REPO)


def test_a_changed_shop_command_rebuilds_the_shop_images_only(repo: Path) -> None:
    before = keys(repo)
    command = repo / "examples/demo-shop/src/Command/SilverImportCommand.php"
    command.write_text(command.read_text().replace("PRODUCTS = 1250", "PRODUCTS = 1251"))
    after = keys(repo)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"shop", "shop-root", "shop-named-user"}


def test_a_new_command_file_or_an_executable_bit_rebuilds_the_shop(repo: Path) -> None:
    before = keys(repo)["shop"]
    added = repo / "examples/demo-shop/src/Command/ExtraCommand.php"
    added.write_text("<?php\n")
    with_file = keys(repo)["shop"]
    added.chmod(0o755)
    assert len({before, with_file, keys(repo)["shop"]}) == 3


@pytest.mark.parametrize("path", ["Dockerfile", "pyproject.toml", "README.md", "operator/commerce_jobs/lifecycle.py"])
def test_a_change_to_the_dockerfile_or_what_it_copies_rebuilds_the_operator_only(repo: Path, path: str) -> None:
    before = keys(repo)
    with (repo / path).open("a") as handle:
        handle.write("\n# changed\n")
    after = keys(repo)
    assert {name for name in before if before[name] != after[name]} == {"operator"}


def test_symfonys_var_directory_is_no_input_but_vendor_is(repo: Path) -> None:
    before = keys(repo)["shop"]
    (repo / "examples/demo-shop/var/cache").mkdir(parents=True)
    (repo / "examples/demo-shop/var/cache/container.php").write_text("<?php\n")
    assert keys(repo)["shop"] == before
    (repo / "examples/demo-shop/vendor").mkdir()
    (repo / "examples/demo-shop/vendor/autoload.php").write_text("<?php\n")
    assert keys(repo)["shop"] != before


def test_bytecode_caches_are_no_input(repo: Path) -> None:
    before = keys(repo)
    cache = repo / "operator/commerce_jobs/__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "cli.cpython-311.pyc").write_bytes(b"\0")
    assert keys(repo) == before


def test_a_missing_input_is_an_error_not_an_empty_hash(repo: Path) -> None:
    (repo / "Dockerfile").unlink()
    with pytest.raises(images.ImageBuildError, match=r"missing input .*Dockerfile"):
        keys(repo)


def test_the_rootfs_key_follows_the_package_set_not_its_order() -> None:
    base = RootfsRecipe(name="x", variant="essential", packages=("a", "b"))
    assert base.key == RootfsRecipe(name="x", variant="essential", packages=("b", "a")).key
    assert base.key != RootfsRecipe(name="x", variant="essential", packages=("a", "b", "c")).key
    assert base.key != RootfsRecipe(name="x", variant="essential", packages=("a", "b"), customize=("true",)).key


def test_the_shop_variants_share_their_layers_and_differ_in_user_only() -> None:
    shop, root, named = (image for image in node_images() if image.name.startswith("shop"))
    assert shop.rootfs is root.rootfs is named.rootfs
    assert shop.app == root.app == named.app
    assert (shop.config.user, root.config.user, named.config.user) == ("10001", None, "app")
    assert shop.config.working_dir == root.config.working_dir == named.config.working_dir == "/app"
    assert len({shop.key, root.key, named.key}) == 3


def test_the_shop_rootfs_recipe() -> None:
    argv = SHOP_ROOTFS.mmdebstrap_argv(Path("out/shop.tar"))
    assert argv[0] == "mmdebstrap"
    assert "--variant=essential" in argv
    assert "--include=php8.2-cli,php8.2-curl,php-symfony-console" in argv
    # merged /usr through the hook, or usrmerge pulls in Perl
    assert "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr" in argv
    for excluded in ("/usr/share/man/*", "/usr/share/doc/*", "/usr/share/locale/*"):
        assert f"--dpkgopt=path-exclude={excluded}" in argv
    # bookworm's php8.2 fixes come from the security suite
    position = argv.index("bookworm")
    assert argv[position + 1] == "out/shop.tar"
    assert "deb http://deb.debian.org/debian-security bookworm-security main" in argv[position + 2 :]
    # the named user of the named-user variant is the numeric one of the shop
    assert any("app:x:10001:10001:" in hook and "/etc/passwd" in hook for hook in SHOP_ROOTFS.customize)


def test_the_python_base_has_what_the_dockerfile_calls() -> None:
    # The Dockerfile runs `python -m venv` and pip over HTTPS.
    assert {"python3", "python3-venv", "python-is-python3", "ca-certificates"} <= set(PYTHON_ROOTFS.packages)


def test_an_extract_rootfs_keeps_its_debs_to_name_their_versions() -> None:
    argv = RootfsRecipe(name="pause", variant="extract", packages=("catatonit",)).mmdebstrap_argv(Path("o.tar"))
    assert "--skip=cleanup/apt/cache" in argv
    assert not any(arg.startswith("--hook-dir") for arg in argv)


def test_umoci_config_argv() -> None:
    config = ImageConfig(user="10001", working_dir="/app", cmd=("php", "bin/console", "list"), env=("A=1",))
    argv = config.umoci_argv(Path("/l"), "layers", "shop")
    assert argv[:6] == ["umoci", "config", "--image", "/l:layers", "--tag", "shop"]
    assert argv[argv.index("--config.user") + 1] == "10001"
    assert argv[argv.index("--config.workingdir") + 1] == "/app"
    assert [a for a in argv if a.startswith("--config.cmd=")] == [
        "--config.cmd=php",
        "--config.cmd=bin/console",
        "--config.cmd=list",
    ]
    assert "--config.user" not in ImageConfig().umoci_argv(Path("/l"), "layers", "root")


def test_pip_settings_reach_the_build_as_a_pip_conf_and_mounts(tmp_path: Path) -> None:
    cert = tmp_path / "ca.crt"
    cert.write_text("x")
    listing = (
        f":env:.cert='{cert}'\n"
        ":env:.default-timeout='180'\n"
        f":env:.find-links='{tmp_path} /does/not/exist'\n"
        f"global.cert='{cert}'\n"
        "install.no-compile='1'\n"
    )
    text, mounts = images.pip_build_settings(listing)
    assert text.splitlines() == [
        "[global]",
        f"cert = {cert}",
        "default-timeout = 180",
        f"find-links = {tmp_path} /does/not/exist",
        "",
        "[install]",
        "no-compile = 1",
    ]
    assert mounts == sorted([str(cert), str(tmp_path)])
    assert images.pip_build_settings("") == ("", [])


DOCKERFILE = """\
ARG PYTHON_IMAGE=python:3.11
FROM ${PYTHON_IMAGE} AS build
USER 1
RUN echo build \\
 && echo more
FROM ${PYTHON_IMAGE}
# a comment
ENV PATH=/opt/venv/bin:$PATH \\
    PYTHONUNBUFFERED=1
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["commerce-jobs", "run", "--liveness=http://0.0.0.0:8080/healthz"]
"""
BASE = {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["python3"]}


def test_the_expected_config_of_the_last_stage_with_dockers_rules() -> None:
    config = expected_config(DOCKERFILE, BASE)
    assert config["Entrypoint"] == ["commerce-jobs", "run", "--liveness=http://0.0.0.0:8080/healthz"]
    assert config["Cmd"] is None  # an ENTRYPOINT clears the base's CMD
    assert config["User"] == "65532:65532"
    assert config["Env"] == {"PATH": "/opt/venv/bin:/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}
    assert config["ExposedPorts"] == ["8080/tcp"]


def test_a_cmd_after_the_entrypoint_is_kept_and_shell_form_is_wrapped() -> None:
    text = DOCKERFILE + 'CMD ["run", "--leader-election"]\n'
    assert expected_config(text, BASE)["Cmd"] == ["run", "--leader-election"]
    shell = expected_config("FROM x\nENTRYPOINT commerce-jobs run\n", BASE)
    assert shell["Entrypoint"] == ["/bin/sh", "-c", "commerce-jobs run"]
    assert expected_config("FROM x\nUSER 5\n", BASE)["Cmd"] == ["python3"]


def test_the_projects_dockerfile_parses() -> None:
    config = expected_config((REPO / "Dockerfile").read_text(), BASE)
    assert config["Entrypoint"]
    assert config["Entrypoint"][0] == "commerce-jobs"
    assert config["User"]
    assert not config["User"].startswith("0")


def test_dpkg_status_and_python_dists() -> None:
    status = (
        "Package: php8.2-cli\nStatus: install ok installed\nVersion: 8.2.36-1~deb12u1\nDescription: x\n y\n\n"
        "Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n"
        "Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b8\n"
    )
    assert images.dpkg_versions(status) == {"bash": "5.2.15-2+b8", "php8.2-cli": "8.2.36-1~deb12u1"}
    names = [
        "opt/venv/lib/python3.11/site-packages/kopf-1.45.2.dist-info/METADATA",
        "opt/venv/lib/python3.11/site-packages/kopf-1.45.2.dist-info/RECORD",
        "opt/venv/lib/python3.11/site-packages/commerce_jobs-0.1.0.dist-info/METADATA",
        "opt/venv/lib/python3.11/site-packages/kopf/__init__.py",
    ]
    assert images.python_dists(names) == {"commerce_jobs": "0.1.0", "kopf": "1.45.2"}


def test_the_app_layer_is_root_owned_readable_and_keeps_executables(tmp_path: Path) -> None:
    layer = images.demo_shop_layer()
    buffer = io.BytesIO()
    images.app_layer(layer, buffer)
    buffer.seek(0)
    with tarfile.open(fileobj=buffer) as tar:
        members = {m.name: m for m in tar}
    assert members["app/bin/console"].mode == 0o755
    assert members["app/src/Command/SilverImportCommand.php"].mode == 0o644
    assert members["app"].isdir()
    assert members["app/src/Command"].isdir()
    assert {(m.uid, m.gid, m.mtime) for m in members.values()} == {(0, 0, images.SOURCE_DATE_EPOCH)}
    # the same files give the same bytes (so the same layer digest)
    again = io.BytesIO()
    images.app_layer(layer, again)
    assert again.getvalue() == buffer.getvalue()


def test_the_shop_holds_the_php_client_in_vendor_and_its_example_command(tmp_path: Path) -> None:
    """The files of clients/php themselves (no copy in git): the client where Composer would install it, its
    example command among the shop's commands, and a vendor/autoload.php that loads the client."""
    buffer = io.BytesIO()
    images.app_layer(images.demo_shop_layer(), buffer)
    buffer.seek(0)
    with tarfile.open(fileobj=buffer) as tar:
        tar.extractall(tmp_path, filter="data")
    app = tmp_path / "app"
    client = REPO / "clients" / "php"
    command = app / "src/Command/StartImportCommand.php"
    assert command.read_bytes() == (client / "examples/StartImportCommand.php").read_bytes()
    assert (app / "vendor/commerce-jobs/client/src/Client.php").read_bytes() == (client / "src/Client.php").read_bytes()
    assert "commerce-jobs/client/autoload.php" in (app / "vendor/autoload.php").read_text()
    assert not (app / "vendor/commerce-jobs/client/tests").exists()
    # The shop's console, as the image runs it, registers the command (its classes load through vendor/).
    if shutil.which("php") is None:
        pytest.fail("needs PHP and Symfony Console: apt-get install -y php8.2-cli php-symfony-console")
    listed = subprocess.run(["php", "bin/console", "list", "--raw"], cwd=app, capture_output=True, text=True,
                            timeout=60, check=True).stdout  # fmt: skip
    assert "shop:start-import" in {line.split()[0] for line in listed.splitlines()}
    usage = subprocess.run(["php", "bin/console", "shop:start-import", "--help"], cwd=app, capture_output=True,
                           text=True, timeout=60, check=True).stdout  # fmt: skip
    assert "--import-command" in usage


def test_a_change_to_the_php_client_rebuilds_the_shop_images_only(repo: Path) -> None:
    before = keys(repo)
    with (repo / "clients/php/src/Client.php").open("a") as handle:
        handle.write("\n// changed\n")
    after = keys(repo)
    assert {name for name in before if before[name] != after[name]} == {"shop", "shop-root", "shop-named-user"}


def test_a_placed_file_may_not_hide_one_of_the_app(tmp_path: Path) -> None:
    (tmp_path / "shop/src/Command").mkdir(parents=True)
    (tmp_path / "shop/src/Command/A.php").write_text("<?php\n")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib/A.php").write_text("<?php\n")
    layer = images.AppLayer(
        app=images.Files(tmp_path / "shop", (".",)),
        placed=(images.Placed(images.Files(tmp_path / "lib", ("A.php",)), "/app/src/Command"),),
    )
    with pytest.raises(images.ImageBuildError, match=r"app/src/Command/A\.php would be in the app layer twice"):
        images.app_layer(layer, io.BytesIO())


def _layout(path: Path) -> Path:
    """A minimal OCI layout with one image tagged "a" and a stray blob."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    layer = blob(b"layer")
    config = blob(json.dumps({"config": {"User": "10001", "WorkingDir": "/app"}}).encode())
    blob(b"stray")
    manifest = blob(json.dumps({"schemaVersion": 2, "config": config, "layers": [layer]}).encode())
    index = {"schemaVersion": 2, "manifests": [{**manifest, "annotations": {images.ANNOTATION_REF_NAME: "a"}}]}
    (path / "index.json").write_text(json.dumps(index))
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return path


def test_an_archive_names_its_image_fully_and_holds_only_its_blobs(tmp_path: Path) -> None:
    layout = _layout(tmp_path / "layout")
    archive = tmp_path / "a.oci.tar"
    images.write_oci_archive(layout, "a", "localhost/commerce-jobs/shop:dev", archive)
    info = images.read_archive(archive)
    assert info.ref == "localhost/commerce-jobs/shop:dev"
    assert info.config == {"User": "10001", "WorkingDir": "/app"}
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
    assert len([n for n in names if n.startswith("blobs/")]) == 3  # manifest, config, layer; not the stray one
    (descriptor,) = index["manifests"]
    assert descriptor["annotations"] == {
        "io.containerd.image.name": "localhost/commerce-jobs/shop:dev",  # what `ctr images import` names it
        "org.opencontainers.image.ref.name": "dev",
    }
    with pytest.raises(images.ImageBuildError, match="0 images tagged 'b'"):
        images.write_oci_archive(layout, "b", "localhost/x:dev", tmp_path / "b.tar")


def test_without_build_a_missing_image_names_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMERCE_JOBS_CACHE", str(tmp_path))
    with pytest.raises(images.ImageBuildError, match="commerce-jobs dev-cluster images"):
        images.ensure_images(build=False)


def test_a_killed_builds_leftovers_go_but_finished_archives_and_the_lock_stay(tmp_path: Path) -> None:
    from commerce_jobs.devcluster.imagebuild import _remove_leftovers

    (tmp_path / ".build-session-x/shop-y/layout").mkdir(parents=True)
    (tmp_path / "rootfs").mkdir()
    kept = [tmp_path / ".lock", tmp_path / "shop-0123456789abcdef.oci.tar", tmp_path / "rootfs/shop-1.tar"]
    gone = [tmp_path / ".shop-0123456789abcdef.oci.tar.4711", tmp_path / "rootfs/.shop-1.tar.4711.tar"]
    for path in kept + gone:
        path.write_text("x")
    _remove_leftovers(tmp_path)
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == sorted(kept)
    assert not (tmp_path / ".build-session-x").exists()
