"""The commands that build the node's images: mmdebstrap, umoci and buildah, as root, with no daemon.

The recipes, content keys and archive format are in `images`; this module only runs them. Every build happens in
a temporary directory beside the cache and is renamed into place at the end, so an interrupted build leaves
nothing that looks finished.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from commerce_jobs.devcluster.images import (
    MIRRORS,
    PYTHON_BASE_REF,
    SOURCE_DATE_EPOCH,
    SUITE,
    Image,
    ImageBuildError,
    RootfsRecipe,
    app_layer,
    filter_layer,
    manifest_path,
    pip_build_settings,
    python_dists,
    read_archive,
    rootfs_versions,
    write_oci_archive,
)

TOOLS = ("mmdebstrap", "umoci", "buildah", "skopeo")
INSTALL_HINT = "apt-get install -y mmdebstrap umoci buildah skopeo  (or: make system-deps)"


def _say(message: str) -> None:
    print(f"images: {message}", file=sys.stderr, flush=True)


class _Log:
    """One build log per image; a failed command raises with its argv and the log's last lines."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.handle: IO[str] = path.open("w")

    def run(self, argv: Sequence[str], env: dict[str, str] | None = None) -> str:
        self.handle.write(f"$ {' '.join(argv)}\n")
        self.handle.flush()
        started = time.monotonic()
        result = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=self.handle, text=True, env=env, check=False)
        self.handle.write(result.stdout)
        self.handle.write(f"# exit {result.returncode} after {time.monotonic() - started:.1f} s\n")
        self.handle.flush()
        if result.returncode != 0:
            tail = "\n".join(self.path.read_text().splitlines()[-25:])
            raise ImageBuildError(f"`{' '.join(argv)}` exited {result.returncode} (log: {self.path}):\n{tail}")
        return result.stdout

    def close(self) -> None:
        self.handle.close()


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below path (deepest first): a build that died mid-RUN may leave some behind."""
    prefix = str(path.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def _remove_tree(path: Path) -> None:
    for point in _mounts_under(path):
        subprocess.run(["umount", point], check=False)
    if _mounts_under(path):
        raise ImageBuildError(f"{path} still has mounts; not removing it")
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def _workdir(directory: Path, name: str) -> Iterator[Path]:
    work = Path(tempfile.mkdtemp(prefix=f".build-{name}-", dir=directory))
    try:
        yield work
    finally:
        _remove_tree(work)


def _prune(directory: Path, name: str, keep: Path, suffixes: Sequence[str]) -> None:
    """Removes the older builds of `name` (other keys), which no recipe names any more."""
    pattern = re.compile(rf"{re.escape(name)}-[0-9a-f]{{16}}({'|'.join(re.escape(s) for s in suffixes)})")
    stem = keep.name.split(".", 1)[0]
    for path in directory.iterdir():
        if pattern.fullmatch(path.name) and path.name.split(".", 1)[0] != stem:
            path.unlink()


def check_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise ImageBuildError(f"missing {', '.join(missing)}; install with: {INSTALL_HINT}")
    if os.geteuid() != 0:
        raise ImageBuildError("building the node's images needs root (mmdebstrap --mode=root, buildah chroot)")


# --- root filesystems ----------------------------------------------------------------------------------------------


def ensure_rootfs(recipe: RootfsRecipe, directory: Path, log: _Log) -> tuple[Path, dict[str, str], float]:
    """(tar, package versions, seconds spent): the cached root filesystem of the recipe, made if missing."""
    directory.mkdir(parents=True, exist_ok=True)
    tar = directory / f"{recipe.name}-{recipe.key[:16]}.tar"
    versions_file = tar.with_suffix(".versions.json")
    if tar.is_file() and versions_file.is_file():
        return tar, json.loads(versions_file.read_text()), 0.0
    _say(f"root filesystem {recipe.name}: mmdebstrap {SUITE} {','.join(recipe.packages)}")
    started = time.monotonic()
    partial = directory / f".{tar.name}.{os.getpid()}.tar"
    try:
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)}
        log.run(recipe.mmdebstrap_argv(partial), env=env)
        versions = rootfs_versions(partial)
        partial_versions = versions_file.with_name(f".{versions_file.name}.{os.getpid()}")
        partial_versions.write_text(json.dumps(versions, indent=2) + "\n")
        os.replace(partial, tar)
        os.replace(partial_versions, versions_file)
    finally:
        partial.unlink(missing_ok=True)
    _prune(directory, recipe.name, tar, (".tar", ".versions.json"))
    return tar, versions, time.monotonic() - started


# --- images from root filesystems (umoci) --------------------------------------------------------------------------


def _layers_layout(image: Image, rootfs: Path, work: Path, log: _Log) -> Path:
    """An OCI layout whose tag "layers" has the image's layers and an empty config."""
    work.mkdir(parents=True, exist_ok=True)
    layout = work / "layout"
    log.run(["umoci", "init", "--layout", str(layout)])
    log.run(["umoci", "new", "--image", f"{layout}:empty"])
    history = ["--history.created", datetime.fromtimestamp(SOURCE_DATE_EPOCH, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")]
    layer = rootfs
    if image.rootfs_paths:
        layer = work / "rootfs-filtered.tar"
        with layer.open("wb") as out:
            filter_layer(rootfs, image.rootfs_paths, out)
    comment = f"Debian {SUITE}: {', '.join(image.rootfs.packages)}"
    add_layer = ["umoci", "raw", "add-layer", *history]
    log.run([*add_layer, "--history.created_by", comment, "--image", f"{layout}:empty", "--tag", "layers", str(layer)])
    if image.app is not None:
        app_tar = work / "app.tar"
        with app_tar.open("wb") as out:
            app_layer(image.app, out)
        created_by = f"{image.app.app.root.name} at {image.app.target}"
        log.run([*add_layer, "--history.created_by", created_by, "--image", f"{layout}:layers", str(app_tar)])
    return layout


def _rootfs_image(image: Image, rootfs: Path, work: Path, log: _Log, shared: dict[str, Path]) -> tuple[Path, str]:
    """(OCI layout, tag) of the image. Images with the same layers (the shop's variants) share one layout, each
    under its own tag, so their layers are compressed once."""
    layers_key = json.dumps([image.rootfs.key, image.rootfs_paths, image.app.digest() if image.app else None])
    if layers_key not in shared:
        shared[layers_key] = _layers_layout(image, rootfs, work, log)
    layout = shared[layers_key]
    log.run(image.config.umoci_argv(layout, "layers", image.name))
    return layout, image.name


# --- the operator's image (buildah) --------------------------------------------------------------------------------


def _buildah(storage: Path) -> list[str]:
    return ["buildah", "--root", str(storage / "root"), "--runroot", str(storage / "run"), "--storage-driver", "vfs"]


def _pip_settings(work: Path) -> list[str]:
    """buildah -v options that carry this machine's pip settings (certificates, find-links) into the RUN step."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    )
    text, paths = pip_build_settings(result.stdout if result.returncode == 0 else "")
    if not text:
        return []
    conf = work / "pip.conf"
    conf.write_text(text)
    volumes = ["-v", f"{conf}:/etc/pip.conf:ro"]
    for path in paths:
        volumes += ["-v", f"{path}:{path}:ro"]
    return volumes


def _dockerfile_image(image: Image, rootfs: Path, work: Path, log: _Log) -> tuple[Path, dict[str, str]]:
    """Builds the Dockerfile unchanged with buildah; returns its OCI layout (tag "dev") and its Python packages."""
    if image.context is None:
        raise ImageBuildError(f"{image.ref}: a Dockerfile image needs its build context")
    base = _layers_layout(image, rootfs, work / "base", log)
    log.run(image.config.umoci_argv(base, "layers", "python"))
    storage = work / "storage"
    buildah = _buildah(storage)
    # Into buildah's own store under its name (`buildah pull oci:...` would name it after the layout's path).
    store = f"containers-storage:[vfs@{storage / 'root'}+{storage / 'run'}]{PYTHON_BASE_REF}"
    log.run(["skopeo", "copy", "--quiet", f"oci:{base}:python", store])
    context = image.context.root
    _say(f"{image.ref}: buildah bud {context / 'Dockerfile'} (PYTHON_IMAGE={PYTHON_BASE_REF})")
    bud = [*buildah, "bud", "--isolation", "chroot", "--network", "host", "--pull=never", "--layers=false"]
    bud += ["--build-arg", f"PYTHON_IMAGE={PYTHON_BASE_REF}", *_pip_settings(work)]
    log.run([*bud, "--file", str(context / "Dockerfile"), "--tag", image.ref, str(context)])
    out = work / "out"
    log.run([*buildah, "push", "--quiet", image.ref, f"oci:{out}:dev"])
    log.run([*buildah, "rm", "--all"])
    return out, _layout_python_dists(out)


def _layout_python_dists(layout: Path) -> dict[str, str]:
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(_blob_bytes(layout, index["manifests"][0]["digest"]))
    names: list[str] = []
    for layer in manifest["layers"]:
        path = layout / "blobs" / layer["digest"].replace(":", "/")
        opener: Any = gzip.open if layer["mediaType"].endswith("gzip") else open
        with opener(path, "rb") as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            names += [member.name for member in tar]
    return python_dists(names)


def _blob_bytes(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / digest.replace(":", "/")).read_bytes()


# --- the whole set -------------------------------------------------------------------------------------------------


def build(images: Sequence[Image], keys: dict[str, str], directory: Path) -> None:
    """Builds each image into `directory` (`<name>-<key>.oci.tar` and its manifest)."""
    check_tools()
    directory.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(directory)
    with _workdir(directory, "session") as session:
        shared: dict[str, Path] = {}
        for image in images:
            _build_one(image, keys[image.name], directory, session, shared)


def _remove_leftovers(directory: Path) -> None:
    """What a killed build left: work directories and partial files (all dot-named). The caller holds the cache's
    lock, so no other build is using them."""
    for parent in (directory, directory / "rootfs"):
        if not parent.is_dir():
            continue
        for path in parent.iterdir():
            if not path.name.startswith(".") or path.name == ".lock":
                continue
            if path.is_dir() and not path.is_symlink():
                _remove_tree(path)
            else:
                path.unlink()


def _build_one(image: Image, key: str, directory: Path, session: Path, shared: dict[str, Path]) -> None:
    archive = image.archive(key)
    partial = directory / f".{archive.name}.{os.getpid()}"
    partial_manifest = directory / f".{manifest_path(archive).name}.{os.getpid()}"
    log = _Log(directory / "logs" / f"{image.name}.log")
    started = time.monotonic()
    try:
        _say(f"building {image.ref}")
        rootfs, debian, rootfs_seconds = ensure_rootfs(image.rootfs, directory / "rootfs", log)
        work = Path(tempfile.mkdtemp(prefix=f"{image.name}-", dir=session))
        python: dict[str, str] = {}
        if image.kind == "rootfs":
            layout, tag = _rootfs_image(image, rootfs, work, log, shared)
        elif image.kind == "dockerfile":
            layout, python = _dockerfile_image(image, rootfs, work, log)
            tag = "dev"
        else:
            raise ImageBuildError(f"unknown image kind {image.kind!r}")
        write_oci_archive(layout, tag, image.ref, partial)
        info = read_archive(partial)
        seconds = time.monotonic() - started
        manifest: dict[str, Any] = {
            "ref": image.ref,
            "key": key,
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "build_seconds": round(seconds, 1),
            "rootfs_seconds": round(rootfs_seconds, 1),
            "size_bytes": partial.stat().st_size,
            "layers": info.layers,
            "config": info.config,
            "debian": {"suite": SUITE, "mirrors": list(MIRRORS), "packages": debian},
        }
        if python:
            manifest["python"] = python
        partial_manifest.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(partial_manifest, manifest_path(archive))
        os.replace(partial, archive)
        _prune(directory, image.name, archive, (".oci.tar", ".manifest.json"))
        _say(f"built {image.ref} in {seconds:.0f} s: {archive} ({manifest['size_bytes'] / 2**20:.1f} MiB)")
    finally:
        log.close()
        partial.unlink(missing_ok=True)
        partial_manifest.unlink(missing_ok=True)
