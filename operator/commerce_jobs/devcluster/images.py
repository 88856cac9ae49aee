"""The images that the real node runs, built here from Debian packages, with no registry and no Docker daemon.

- `localhost/commerce-jobs/pause:dev`: Debian's static `catatonit` in pause mode (the pod sandbox);
- `localhost/commerce-jobs/shop:dev`: an mmdebstrap root filesystem with php8.2-cli and php-symfony-console, plus
  the demo shop (`examples/demo-shop`) at /app; its USER is numeric and non-root;
- `localhost/commerce-jobs/shop-root:dev`: the same layers with no USER (root), as the official php images;
- `localhost/commerce-jobs/shop-named-user:dev`: the same layers with `USER app` (in /etc/passwd, not numeric);
- `localhost/commerce-jobs/operator:dev`: the project's own Dockerfile, unchanged, built by buildah with
  `PYTHON_IMAGE` set to a base image made from Debian's python3.

Each image is an OCI archive under `~/.cache/commerce-jobs/images/`, named by a content hash of its inputs (the
Debian recipe, the demo shop's files, the Dockerfile and what it copies), so a warm run reuses it and any change
rebuilds it. Each archive's index names the image fully (`io.containerd.image.name`), ready for
`ctr -n k8s.io images import`. A manifest beside each archive records the package versions that went in.

This module holds the recipes and the content keys (pure), and `ensure_images()`, the single entry point; the
commands that build live in `imagebuild`.
"""

from __future__ import annotations

import ast
import fcntl
import hashlib
import io
import json
import os
import re
import shlex
import sys
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

from commerce_jobs.devcluster.toolchain import cache_dir

HERE = Path(__file__).resolve().parent
# The repository's root in a source checkout (the images are built from it; an installed wheel has no Dockerfile).
REPO_ROOT = HERE.parents[2]
DEMO_SHOP = REPO_ROOT / "examples" / "demo-shop"

# Bumped when the build steps change in a way that the recipes below do not show, so that every image is rebuilt.
RECIPE_VERSION = "1"

REGISTRY = "localhost/commerce-jobs"
TAG = "dev"
ARCHITECTURE = "amd64"
SUITE = "bookworm"
# Explicit sources (with the security updates: bookworm's php8.2 comes from there), one-line format.
MIRRORS = (
    f"deb http://deb.debian.org/debian {SUITE} main",
    f"deb http://deb.debian.org/debian {SUITE}-updates main",
    f"deb http://deb.debian.org/debian-security {SUITE}-security main",
)
MERGED_USR_HOOKS = "/usr/share/mmdebstrap/hooks/merged-usr"
# Files no container reads: man pages, documentation (but the copyright files), translations, info pages.
DPKG_EXCLUDES = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/info/*",
)
# File times and the images' creation time (2025-01-01), so that a rebuild of the same inputs gives the same layers.
SOURCE_DATE_EPOCH = 1735689600
CREATED = "2025-01-01T00:00:00Z"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The demo shop's user: numeric in `shop`, by name in `shop-named-user` (the same passwd entry).
SHOP_UID = 10001
SHOP_USER_NAME = "app"
PAUSE_UID = 65535

ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"


class ImageBuildError(RuntimeError):
    """An image could not be built; the message names the failed command and its log."""


def image_ref(name: str) -> str:
    return f"{REGISTRY}/{name}:{TAG}"


def images_dir() -> Path:
    return cache_dir() / "images"


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


# --- recipes -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RootfsRecipe:
    """A root filesystem made by mmdebstrap from Debian packages.

    `variant` is mmdebstrap's: "essential" installs the Essential:yes set plus `packages`; "extract" only unpacks
    `packages` (no maintainer scripts), enough for a single static binary. `customize` are mmdebstrap
    customize hooks: fixed shell snippets of this module, never user input.
    """

    name: str
    variant: Literal["essential", "extract"]
    packages: tuple[str, ...]
    customize: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return _digest(
            {
                "recipe": RECIPE_VERSION,
                "suite": SUITE,
                "mirrors": MIRRORS,
                "architecture": ARCHITECTURE,
                "variant": self.variant,
                "packages": sorted(self.packages),
                "customize": self.customize,
                "merged_usr": self.variant == "essential",
                "excludes": DPKG_EXCLUDES,
            }
        )

    def mmdebstrap_argv(self, output: Path) -> list[str]:
        argv = [
            "mmdebstrap",
            f"--variant={self.variant}",
            "--mode=root",
            f"--architectures={ARCHITECTURE}",
            "--format=tar",
            "--quiet",
        ]
        if self.packages:
            argv.append("--include=" + ",".join(self.packages))
        if self.variant == "essential":
            # Without the hook, usrmerge is installed and pulls in Perl (about 50 MB).
            argv.append(f"--hook-dir={MERGED_USR_HOOKS}")
            argv += [f"--dpkgopt={option}" for option in DPKG_EXCLUDES]
        else:
            # An "extract" tree has no dpkg database: the kept .deb files name the versions that went in.
            argv.append("--skip=cleanup/apt/cache")
        argv += [f"--customize-hook={hook}" for hook in self.customize]
        return [*argv, SUITE, str(output), *MIRRORS]


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an OCI image config that the node and the tests care about."""

    user: str | None = None
    working_dir: str | None = None
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: tuple[str, ...] = (f"PATH={DEFAULT_PATH}",)
    stop_signal: str | None = None

    def umoci_argv(self, layout: Path, source_tag: str, tag: str) -> list[str]:
        """`umoci config` that derives image `tag` from `source_tag` with this config."""
        argv = ["umoci", "config", "--image", f"{layout}:{source_tag}", "--tag", tag, "--created", CREATED]
        argv += ["--history.created", CREATED, "--history.created_by", "commerce_jobs.devcluster.images"]
        argv += ["--architecture", ARCHITECTURE, "--os", "linux"]
        if self.user is not None:
            argv += ["--config.user", self.user]
        if self.working_dir is not None:
            argv += ["--config.workingdir", self.working_dir]
        if self.entrypoint is not None:
            argv += ["--clear=config.entrypoint"] + [f"--config.entrypoint={arg}" for arg in self.entrypoint]
        if self.cmd is not None:
            argv += ["--clear=config.cmd"] + [f"--config.cmd={arg}" for arg in self.cmd]
        argv += ["--clear=config.env"] + [f"--config.env={pair}" for pair in self.env]
        if self.stop_signal is not None:
            argv += ["--config.stopsignal", self.stop_signal]
        return argv


SKIP_DIRS = frozenset({"__pycache__", ".git", ".mypy_cache", ".pytest_cache", ".ruff_cache"})


@dataclass(frozen=True)
class Files:
    """Files of the checkout that go into an image (or its build), hashed as they are."""

    root: Path
    paths: tuple[str, ...]  # relative files or directories under root
    skip_dirs: frozenset[str] = SKIP_DIRS
    skip_suffixes: tuple[str, ...] = (".pyc", ".egg-info")

    def walk(self) -> Iterator[Path]:
        """Every regular file, sorted, relative to root. A missing input is an error, not an empty hash."""
        found: list[Path] = []
        for name in self.paths:
            path = self.root / name
            if path.is_file():
                found.append(path)
            elif path.is_dir():
                for dirpath, dirnames, filenames in os.walk(path):
                    dirnames[:] = [
                        d for d in dirnames if d not in self.skip_dirs and not d.endswith(self.skip_suffixes)
                    ]
                    found += [Path(dirpath) / f for f in filenames if not f.endswith(self.skip_suffixes)]
            else:
                raise ImageBuildError(f"missing input {path}")
        for path in sorted(found):
            if path.is_file() and not path.is_symlink():
                yield path.relative_to(self.root)

    def digest(self) -> str:
        """sha256 over each file's path, executable bit and content."""
        total = hashlib.sha256()
        for rel in self.walk():
            path = self.root / rel
            total.update(f"{rel}\0{os.access(path, os.X_OK):d}\0".encode())
            total.update(hashlib.sha256(path.read_bytes()).digest())
        return total.hexdigest()


@dataclass(frozen=True)
class Placed:
    """Files of the checkout that go into an app layer at `target`, beside the app (e.g. a library in vendor/)."""

    files: Files
    target: str


@dataclass(frozen=True)
class AppLayer:
    """What the app layer holds: the app's files under `target`, then `placed` files, then `generated` ones
    (path in the image, text): small fixed files of this module, such as an autoloader."""

    app: Files
    target: str = "/app"
    placed: tuple[Placed, ...] = ()
    generated: tuple[tuple[str, str], ...] = ()

    def digest(self) -> str:
        return _digest(
            {
                "app": self.app.digest(),
                "target": self.target,
                "placed": [(p.target, p.files.digest()) for p in self.placed],
                "generated": self.generated,
            }
        )


@dataclass(frozen=True)
class Image:
    """One image the node runs: how it is made, and where its archive goes.

    kind "rootfs": the layers are `rootfs` (filtered to `rootfs_paths` if given) and, if `app` is set, its app layer;
    then `config`. kind "dockerfile": `buildah bud` of the Dockerfile in `context`.
    """

    name: str
    kind: Literal["rootfs", "dockerfile"]
    rootfs: RootfsRecipe
    config: ImageConfig = field(default_factory=ImageConfig)
    rootfs_paths: tuple[str, ...] = ()
    app: AppLayer | None = None
    context: Files | None = None

    @property
    def ref(self) -> str:
        return image_ref(self.name)

    @property
    def key(self) -> str:
        return _digest(
            {
                "recipe": RECIPE_VERSION,
                "ref": self.ref,
                "kind": self.kind,
                "rootfs": self.rootfs.key,
                "config": repr(self.config),
                "rootfs_paths": self.rootfs_paths,
                "app": self.app.digest() if self.app else None,
                "context": self.context.digest() if self.context else None,
            }
        )

    def archive(self, key: str) -> Path:
        return images_dir() / f"{self.name}-{key[:16]}.oci.tar"


def manifest_path(archive: Path) -> Path:
    return archive.with_name(archive.name.removesuffix(".oci.tar") + ".manifest.json")


# The demo shop's packages. Debian's php8.2-cli has pcntl (and posix) compiled in: the slow command's SIGTERM trap
# needs nothing more.
SHOP_ROOTFS = RootfsRecipe(
    name="shop",
    variant="essential",
    packages=("php8.2-cli", "php8.2-curl", "php-symfony-console"),
    customize=(
        # The passwd/group entry of the shop's user: `USER app` of the named-user variant resolves to it, and
        # `whoami` works in the numeric one.
        f"echo '{SHOP_USER_NAME}:x:{SHOP_UID}:{SHOP_UID}:demo shop:/app:/usr/sbin/nologin' >> \"$1/etc/passwd\"",
        f"echo '{SHOP_USER_NAME}:x:{SHOP_UID}:' >> \"$1/etc/group\"",
    ),
)
# The Dockerfile's base: Debian's python3 with venv (the Dockerfile runs `python -m venv`, hence python-is-python3).
PYTHON_ROOTFS = RootfsRecipe(
    name="python",
    variant="essential",
    packages=("python3", "python3-venv", "python-is-python3", "ca-certificates"),
)
PAUSE_ROOTFS = RootfsRecipe(name="pause", variant="extract", packages=("catatonit",))
PYTHON_BASE_CONFIG = ImageConfig(cmd=("python3",))  # as the official python images
PYTHON_BASE_REF = image_ref("python-base")


def shop_config(user: str | None) -> ImageConfig:
    """The demo shop's config; the variants differ only in USER (None: root, as the official php images)."""
    return ImageConfig(
        user=user, working_dir="/app", cmd=("php", "bin/console", "list"), env=(f"PATH={DEFAULT_PATH}", "APP_ENV=prod")
    )


def demo_shop_files(root: Path = DEMO_SHOP) -> Files:
    """The whole demo shop (a command may bring a vendor/ or a composer.json), but Symfony's var/ (cache, logs)."""
    return Files(root=root, paths=(".",), skip_dirs=SKIP_DIRS | {"var"})


# The demo shop's Composer autoloader, as `composer require commerce-jobs/client` (a path repository) would give it:
# the client's own PSR-4 autoloader (clients/php/autoload.php, the same mapping as its composer.json).
SHOP_VENDOR_AUTOLOAD = (
    "<?php\n\n"
    "// Written by commerce_jobs.devcluster.images: the PHP client (clients/php) installed into vendor/.\n"
    "require_once __DIR__ . '/commerce-jobs/client/autoload.php';\n"
)


def demo_shop_layer(repo: Path = REPO_ROOT) -> AppLayer:
    """The demo shop at /app, with the PHP client (clients/php) installed into its vendor/ and the client's example
    command (`shop:start-import`) among its commands: the files of the checkout, not copies in git."""
    client = repo / "clients" / "php"
    return AppLayer(
        app=demo_shop_files(repo / "examples" / "demo-shop"),
        placed=(
            Placed(
                Files(root=client, paths=("autoload.php", "composer.json", "src")), "/app/vendor/commerce-jobs/client"
            ),
            Placed(Files(root=client / "examples", paths=("StartImportCommand.php",)), "/app/src/Command"),
        ),
        generated=(("/app/vendor/autoload.php", SHOP_VENDOR_AUTOLOAD),),
    )


def operator_context(root: Path = REPO_ROOT) -> Files:
    """What the Dockerfile reads: itself and what it COPYs."""
    return Files(root=root, paths=("Dockerfile", "pyproject.toml", "README.md", "operator"))


def node_images(repo: Path = REPO_ROOT) -> list[Image]:
    """Every image the real node runs, in build order."""
    shop_files = demo_shop_layer(repo)
    return [
        Image(
            name="pause",
            kind="rootfs",
            rootfs=PAUSE_ROOTFS,
            rootfs_paths=("usr/bin/catatonit",),
            config=ImageConfig(
                user=f"{PAUSE_UID}:{PAUSE_UID}", entrypoint=("/usr/bin/catatonit", "-P"), stop_signal="SIGINT"
            ),
        ),
        # The demo shop, and its variants that differ only in the user they run as (a uid, root, a user name).
        *(
            Image(name=name, kind="rootfs", rootfs=SHOP_ROOTFS, app=shop_files, config=shop_config(user))
            for name, user in (("shop", str(SHOP_UID)), ("shop-root", None), ("shop-named-user", SHOP_USER_NAME))
        ),
        # For a Dockerfile image, `config` is that of the base image made from `rootfs` (PYTHON_IMAGE).
        Image(
            name="operator",
            kind="dockerfile",
            rootfs=PYTHON_ROOTFS,
            config=PYTHON_BASE_CONFIG,
            context=operator_context(repo),
        ),
    ]


# --- what goes into and comes out of a build (pure) ----------------------------------------------------------------


def app_layer(layer: AppLayer, out: BinaryIO) -> None:
    """An uncompressed layer tar with the app's files under its target, then the placed and generated files; owned
    by root, world-readable, fixed times. A path given twice is an error (a placed file would hide the app's)."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()

        def add_dir(name: str) -> None:
            if name in dirs or not name:
                return
            add_dir(os.path.dirname(name))
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, SOURCE_DATE_EPOCH
            tar.addfile(info)
            dirs.add(name)

        files_seen: set[str] = set()

        def add_file(name: str, data: bytes, executable: bool) -> None:
            if name in files_seen:
                raise ImageBuildError(f"{name} would be in the app layer twice")
            files_seen.add(name)
            add_dir(os.path.dirname(name))
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), SOURCE_DATE_EPOCH
            info.mode = 0o755 if executable else 0o644
            tar.addfile(info, io.BytesIO(data))

        for files, target in ((layer.app, layer.target), *((p.files, p.target) for p in layer.placed)):
            base = target.strip("/")
            for rel in files.walk():
                path = files.root / rel
                add_file(f"{base}/{rel.as_posix()}", path.read_bytes(), os.access(path, os.X_OK))
        for target, text in layer.generated:
            add_file(target.strip("/"), text.encode(), False)


def filter_layer(rootfs_tar: Path, keep: Iterable[str], out: BinaryIO) -> None:
    """A layer with only the `keep` files of a root filesystem tar (and their parent directories)."""
    wanted = {name.strip("/") for name in keep}
    found: set[str] = set()
    with tarfile.open(rootfs_tar) as source, tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in source:
            name = member.name.removeprefix("./").strip("/")
            if not member.isfile() or name not in wanted:
                continue
            parts = name.split("/")
            for depth in range(1, len(parts)):
                parent = "/".join(parts[:depth])
                if parent not in found:
                    info = tarfile.TarInfo(parent)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, SOURCE_DATE_EPOCH
                    tar.addfile(info)
                    found.add(parent)
            member.name = name
            tar.addfile(member, source.extractfile(member))
            found.add(name)
    missing = wanted - found
    if missing:
        raise ImageBuildError(f"{rootfs_tar} has no {', '.join(sorted(missing))}")


def dpkg_versions(status_text: str) -> dict[str, str]:
    """{package: version} of the installed packages in a dpkg status file."""
    versions: dict[str, str] = {}
    for stanza in status_text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line.startswith(" "))
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            versions[fields["Package"]] = fields.get("Version", "")
    return dict(sorted(versions.items()))


_DEB = re.compile(r"var/cache/apt/archives/([^_/]+)_([^_/]+)_[^_/]+\.deb$")


def rootfs_versions(rootfs_tar: Path) -> dict[str, str]:
    """The package versions in a root filesystem tar: its dpkg status, or (an "extract" tree, whose status file is
    empty) the names of its kept .deb files."""
    installed: dict[str, str] = {}
    debs: dict[str, str] = {}
    with tarfile.open(rootfs_tar) as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if name == "var/lib/dpkg/status" and member.isfile():
                stream = tar.extractfile(member)
                installed = dpkg_versions(stream.read().decode()) if stream else {}
            match = _DEB.search(name)
            if match:
                debs[match.group(1)] = match.group(2).replace("%3a", ":")
    return installed or dict(sorted(debs.items()))


_DIST_INFO = re.compile(r"site-packages/([^/]+)-([^-/]+)\.dist-info/METADATA$")


def python_dists(names: Iterable[str]) -> dict[str, str]:
    """{distribution: version} from the file names of a layer (their `*.dist-info/METADATA`)."""
    found = {}
    for name in names:
        match = _DIST_INFO.search(name)
        if match:
            found[match.group(1)] = match.group(2)
    return dict(sorted(found.items()))


def pip_build_settings(config_list: str) -> tuple[str, list[str]]:
    """This machine's pip settings for the Dockerfile's `pip install` step.

    `config_list` is the output of `pip config list` (lines like `global.cert='/etc/ssl/certs/ca.crt'` or
    `:env:.find-links='/opt/wheels'`, the latter from PIP_* variables). Returns the text of a pip.conf and the
    absolute paths that its values name, which must be mounted into the build at the same place.
    """
    sections: dict[str, dict[str, str]] = {}
    for line in config_list.splitlines():
        name, sep, raw = line.partition("=")
        if not sep or "." not in name:
            continue
        scope, _, key = name.rpartition(".")
        value = ast.literal_eval(raw)
        section = "global" if scope in (":env:", "global", "user", "site") else scope
        if section not in ("global", "install", "download", "wheel"):
            continue
        sections.setdefault(section, {})[key] = str(value)
    lines: list[str] = []
    paths: set[str] = set()
    for section in sorted(sections):
        lines.append(f"[{section}]")
        for key, value in sorted(sections[section].items()):
            lines.append(f"{key} = {value}")
            paths.update(token for token in value.split() if token.startswith("/") and os.path.exists(token))
        lines.append("")
    return "\n".join(lines), sorted(paths)


# --- the Dockerfile, as the image config should say ---------------------------------------------------------------

_ENV_REF = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        instructions.append((word.upper(), rest.strip()))
    return instructions


def _expand(value: str, env: Mapping[str, str]) -> str:
    return _ENV_REF.sub(lambda match: env.get(match.group(1) or match.group(2), ""), value)


def _exec_form(args: str) -> list[str]:
    if args.startswith("["):
        value = json.loads(args)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", args]


def expected_config(dockerfile: str, base: Mapping[str, Any]) -> dict[str, Any]:
    """The image config that the Dockerfile's last stage gives on `base` (a config's "config" object), with
    Docker's rules: ENTRYPOINT clears an inherited CMD; ENV expands earlier variables."""
    config: dict[str, Any] = {key: base.get(key) for key in ("Entrypoint", "Cmd", "User", "WorkingDir")}
    env = dict(pair.split("=", 1) for pair in base.get("Env") or [])
    ports = set(base.get("ExposedPorts") or {})
    cmd_set_here = False
    for word, args in _dockerfile_instructions(dockerfile):
        if word == "FROM":  # a new stage starts from the base again
            config = {key: base.get(key) for key in ("Entrypoint", "Cmd", "User", "WorkingDir")}
            env = dict(pair.split("=", 1) for pair in base.get("Env") or [])
            ports = set(base.get("ExposedPorts") or {})
            cmd_set_here = False
        elif word == "ENTRYPOINT":
            config["Entrypoint"] = _exec_form(args)
            if not cmd_set_here:
                config["Cmd"] = None
        elif word == "CMD":
            config["Cmd"], cmd_set_here = _exec_form(args), True
        elif word == "USER":
            config["User"] = args
        elif word == "WORKDIR":
            config["WorkingDir"] = args
        elif word == "EXPOSE":
            ports.update(p if "/" in p else f"{p}/tcp" for p in args.split())
        elif word == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = _expand(value, env)
    config["Env"] = env
    config["ExposedPorts"] = sorted(ports)
    return config


# --- OCI archives (files only) -------------------------------------------------------------------------------------


def _blob(layout: Path, digest: str) -> Path:
    algorithm, _, hexdigest = digest.partition(":")
    return layout / "blobs" / algorithm / hexdigest


def write_oci_archive(layout: Path, tag: str, ref: str, out: Path) -> None:
    """An OCI archive of one image of an OCI layout, named `ref` in its index (containerd's annotation, and the tag
    in the OCI one), with only the blobs that image needs."""
    index = json.loads((layout / "index.json").read_text())
    matches = [m for m in index["manifests"] if (m.get("annotations") or {}).get(ANNOTATION_REF_NAME) == tag]
    if len(matches) != 1:
        raise ImageBuildError(f"{layout} has {len(matches)} images tagged {tag!r}")
    descriptor = dict(matches[0])
    manifest = json.loads(_blob(layout, descriptor["digest"]).read_bytes())
    digests = [descriptor["digest"], manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
    descriptor["annotations"] = {ANNOTATION_IMAGE_NAME: ref, ANNOTATION_REF_NAME: ref.rpartition(":")[2]}
    descriptor["platform"] = {"architecture": ARCHITECTURE, "os": "linux"}
    new_index = {"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": [descriptor]}

    def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), SOURCE_DATE_EPOCH, 0o644
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        add_bytes(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add_bytes(tar, "index.json", json.dumps(new_index, indent=2).encode())
        for digest in dict.fromkeys(digests):
            path = _blob(layout, digest)
            info = tar.gettarinfo(str(path), arcname=f"blobs/{digest.replace(':', '/')}")
            info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = SOURCE_DATE_EPOCH, 0o644, 0, 0, "", ""
            with path.open("rb") as blob:
                tar.addfile(info, blob)


@dataclass(frozen=True)
class ArchiveInfo:
    """What an OCI archive says about its one image."""

    ref: str
    config: dict[str, Any]  # the image config's "config" object (User, Entrypoint, Cmd, Env, WorkingDir, ...)
    layers: list[str]  # digests, bottom first


def read_archive(archive: Path) -> ArchiveInfo:
    with tarfile.open(archive) as tar:

        def load(name: str) -> Any:
            member = tar.extractfile(name)
            if member is None:
                raise ImageBuildError(f"{archive} has no {name}")
            return json.loads(member.read())

        index = load("index.json")
        (descriptor,) = index["manifests"]
        manifest = load("blobs/" + descriptor["digest"].replace(":", "/"))
        image_config = load("blobs/" + manifest["config"]["digest"].replace(":", "/"))
    return ArchiveInfo(
        ref=descriptor["annotations"][ANNOTATION_IMAGE_NAME],
        config=image_config.get("config") or {},
        layers=[layer["digest"] for layer in manifest["layers"]],
    )


# --- the entry point -----------------------------------------------------------------------------------------------


@contextmanager
def _lock(directory: Path) -> Iterator[None]:
    """One builder at a time per cache (a test and `commerce-jobs dev-cluster images` may start together)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_images(build: bool = True, images: list[Image] | None = None) -> list[tuple[str, Path]]:
    """(fully qualified ref, OCI archive) of every image the real node runs, building what is missing.

    Cold: a few minutes (mmdebstrap and buildah fetch from Debian and PyPI); warm: a hash of the inputs per image.
    With build=False a missing archive is an error that names the command which builds it.
    """
    from commerce_jobs.devcluster import imagebuild

    wanted = images if images is not None else node_images()
    keys = {image.name: image.key for image in wanted}
    missing = [image for image in wanted if not _complete(image.archive(keys[image.name]))]
    if missing and not build:
        names = ", ".join(image.ref for image in missing)
        raise ImageBuildError(f"missing images {names}; build them with `commerce-jobs dev-cluster images`")
    if missing:
        with _lock(images_dir()):
            imagebuild.build(
                [image for image in wanted if not _complete(image.archive(keys[image.name]))], keys, images_dir()
            )
    return [(image.ref, image.archive(keys[image.name])) for image in wanted]


def _complete(archive: Path) -> bool:
    # The manifest is renamed into place before the archive, so an archive means a finished build.
    return archive.is_file() and manifest_path(archive).is_file()


def main(argv: list[str] | None = None) -> int:
    """`python -m commerce_jobs.devcluster.images`: build (or reuse) every image and list them."""
    import argparse

    parser = argparse.ArgumentParser(prog="commerce_jobs.devcluster.images", description=main.__doc__)
    parser.add_argument("--no-build", action="store_true", help="fail instead of building missing images")
    args = parser.parse_args(argv)
    try:
        built = ensure_images(build=not args.no_build)
    except ImageBuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for ref, archive in built:
        manifest = json.loads(manifest_path(archive).read_text())
        size = archive.stat().st_size / 2**20
        print(f"{ref:48} {size:6.1f} MiB  built in {manifest['build_seconds']:5.1f} s  {archive}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
