"""manifests/install.yaml: the chart rendered with its default values, for `kubectl apply -k manifests/`.

The kustomize install is generated from the chart, never kept by hand; a test renders it again and compares.

    python -m commerce_jobs.devcluster.render        # rewrites manifests/install.yaml
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from commerce_jobs.devcluster.toolchain import Toolchain

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "commerce-jobs"
INSTALL = REPO / "manifests" / "install.yaml"
RELEASE = NAMESPACE = "commerce-jobs"
HEADER = "# Generated from charts/commerce-jobs by `python -m commerce_jobs.devcluster.render`; do not edit by hand.\n"


def render(helm: Path | None = None) -> str:
    helm = helm or Toolchain.default().path("helm")
    result = subprocess.run(
        # Without the `helm test` hook: kubectl would create its pod as part of the install.
        [str(helm), "template", RELEASE, str(CHART), f"--namespace={NAMESPACE}", "--include-crds", "--skip-tests"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return HEADER + result.stdout


if __name__ == "__main__":
    INSTALL.write_text(render())
    sys.stdout.write(f"wrote {INSTALL.relative_to(REPO)}\n")
