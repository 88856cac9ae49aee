"""Where the Go-built binaries of the local control plane live, and how they are built."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOOLS_ENV = HERE / "tools.env"
BUILD_SCRIPT = HERE / "build-tools.sh"
KWOK_STAGES = HERE / "kwok-stages.yaml"

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok", "helm")


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
        tool = {"etcd": "etcd", "kwok": "kwok", "helm": "helm"}.get(binary, "kubernetes")
        return self._dir(tool) / binary

    @property
    def kwok_crds(self) -> Path:
        return self._dir("kwok") / "crds"

    def missing(self) -> list[str]:
        return [b for b in BINARIES if not os.access(self.path(b), os.X_OK)]

    def ensure(self, build: bool = True) -> None:
        """Builds whatever is missing (cold: about 20 minutes on 2 cores; warm: nothing to do)."""
        if not self.missing():
            return
        if not build:
            raise ToolchainError(
                f"missing {', '.join(self.missing())} under {self.root}; run `commerce-jobs dev-cluster build`"
            )
        env = {**os.environ, "COMMERCE_JOBS_CACHE": str(cache_dir())}
        result = subprocess.run(["bash", str(BUILD_SCRIPT)], env=env, check=False)
        if result.returncode != 0 or self.missing():
            raise ToolchainError(f"building the control plane's tools failed (exit {result.returncode})")
