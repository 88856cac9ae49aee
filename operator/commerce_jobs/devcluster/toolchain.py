"""Where the Go-built binaries of the local control plane (and of its optional real node) live, and how they are
built."""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOOLS_ENV = HERE / "tools.env"
BUILD_SCRIPT = HERE / "build-tools.sh"
KWOK_STAGES = HERE / "kwok-stages.yaml"
PAUSE_SOURCE = HERE / "pause"

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok", "helm")
# The real node's (dev-cluster up --real-node), learnt apart so that the kwok-only cluster never needs them.
NODE_BINARIES = ("kubelet", "kube-proxy", "containerd", "containerd-shim-runc-v2", "ctr")
# build-tools.sh targets.
CONTROL_PLANE_TARGETS = ("kubernetes", "etcd", "kwok", "helm")
NODE_TARGETS = ("kubernetes-node", "containerd", "pause")
PAUSE_REPOSITORY = "localhost/commerce-jobs/node-pause"


class ToolchainError(RuntimeError):
    """A binary of the local control plane is missing and could not be built."""


def cache_dir() -> Path:
    return Path(os.environ.get("COMMERCE_JOBS_CACHE", Path.home() / ".cache" / "commerce-jobs"))


def pinned_versions() -> dict[str, str]:
    """The versions pinned in tools.env, e.g. {"KUBERNETES_VERSION": "v1.36.3", ...}."""
    versions: dict[str, str] = {}
    for line in TOOLS_ENV.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions


def pause_key() -> str:
    """The pause image's content key: build-tools.sh computes the same (`cat go.mod main.go | sha256sum`)."""
    source = (PAUSE_SOURCE / "go.mod").read_bytes() + (PAUSE_SOURCE / "main.go").read_bytes()
    return hashlib.sha256(source).hexdigest()[:12]


@dataclass(frozen=True)
class Toolchain:
    """Paths of the pinned binaries. Each tool version has its own directory, so a bump rebuilds it."""

    root: Path
    versions: dict[str, str]

    @classmethod
    def default(cls) -> Toolchain:
        return cls(root=cache_dir() / "tools", versions=pinned_versions())

    def _dir(self, tool: str) -> Path:
        return self.root / f"{tool}-{self.versions[tool.upper() + '_VERSION']}"

    def path(self, binary: str) -> Path:
        if binary in ("kubelet", "kube-proxy"):
            return self.root / f"kubernetes-node-{self.versions['KUBERNETES_VERSION']}" / binary
        if binary in ("containerd", "containerd-shim-runc-v2", "ctr"):
            return self._dir("containerd") / binary
        tool = {"etcd": "etcd", "kwok": "kwok", "helm": "helm"}.get(binary, "kubernetes")
        return self._dir(tool) / binary

    @property
    def kwok_crds(self) -> Path:
        return self._dir("kwok") / "crds"

    @property
    def pause_archive(self) -> Path:
        """The pod sandbox's image, an OCI archive whose index names it `pause_ref`."""
        return self.root / f"pause-{pause_key()}" / "pause.oci.tar"

    @property
    def pause_ref(self) -> str:
        return f"{PAUSE_REPOSITORY}:{pause_key()}"

    def missing(self, node: bool = False) -> list[str]:
        """The binaries (and with ``node``, the real node's binaries and pause image) that are not built yet."""
        missing = [b for b in BINARIES if not os.access(self.path(b), os.X_OK)]
        if node:
            missing += [b for b in NODE_BINARIES if not os.access(self.path(b), os.X_OK)]
            if not self.pause_archive.is_file():
                missing.append("pause image")
        return missing

    def ensure(self, build: bool = True, node: bool = False) -> None:
        """Builds whatever is missing (cold: about 20 minutes on 2 cores, the real node's tools 10 more; warm: nothing
        to do). Only the control plane's tools unless ``node``."""
        if not self.missing(node):
            return
        if not build:
            raise ToolchainError(
                f"missing {', '.join(self.missing(node))} under {self.root}; run `commerce-jobs dev-cluster build`"
            )
        self.build(CONTROL_PLANE_TARGETS + (NODE_TARGETS if node else ()))
        if self.missing(node):
            raise ToolchainError(f"building the tools left {', '.join(self.missing(node))} missing")

    def build(self, targets: tuple[str, ...] = CONTROL_PLANE_TARGETS + NODE_TARGETS) -> None:
        """Runs build-tools.sh for ``targets`` (each one is skipped when its directory exists)."""
        env = {**os.environ, "COMMERCE_JOBS_CACHE": str(cache_dir())}
        result = subprocess.run(["bash", str(BUILD_SCRIPT), *targets], env=env, check=False)
        if result.returncode != 0:
            raise ToolchainError(f"building the tools failed (exit {result.returncode}): {' '.join(targets)}")
