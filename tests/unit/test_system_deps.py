"""`make system-deps` (run by `make test` and `make dev`): a missing Debian package, such as the browser of the
console's tests, is installed, or the command fails with the apt-get command that installs it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

DEVCLUSTER = Path(__file__).resolve().parents[2] / "operator" / "commerce_jobs" / "devcluster"


def run_as(tmp_path: Path, uid: int, installed: set[str]) -> subprocess.CompletedProcess[str]:
    """The script with `id` and `dpkg-query` of a machine where only ``installed`` packages are."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    cases = "\n".join(f"  {name}) echo 'install ok installed' ;;" for name in installed)
    (stubs / "dpkg-query").write_text(
        f'#!/bin/sh\nfor last; do :; done\ncase "$last" in\n{cases}\n  *) exit 1 ;;\nesac\n'
    )
    (stubs / "apt-get").write_text('#!/bin/sh\necho "apt-get $*" >&2\n')
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}"}
    return subprocess.run(["bash", str(DEVCLUSTER / "system-deps.sh")], capture_output=True, text=True, env=env,
                          check=False)  # fmt: skip


def listed() -> set[str]:
    lines = (DEVCLUSTER / "debian-packages.txt").read_text().splitlines()
    return {line.split("#")[0].strip() for line in lines} - {""}


def test_the_browser_of_the_console_tests_is_a_listed_package() -> None:
    assert "chromium" in listed()


def test_a_missing_package_fails_with_the_command_that_installs_it(tmp_path: Path) -> None:
    result = run_as(tmp_path, 1000, listed() - {"chromium"})
    assert result.returncode == 1
    assert "sudo apt-get update && sudo apt-get install -y chromium" in result.stderr


def test_as_root_the_missing_packages_are_installed(tmp_path: Path) -> None:
    result = run_as(tmp_path, 0, listed() - {"chromium"})
    assert result.returncode == 0, result.stderr
    assert "apt-get install -y -qq --no-install-recommends chromium" in result.stderr


def test_nothing_is_done_when_everything_is_installed(tmp_path: Path) -> None:
    result = run_as(tmp_path, 1000, listed())
    assert (result.returncode, result.stderr) == (0, "")
