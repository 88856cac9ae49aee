"""The PHP client's unit tests (PHPUnit, clients/php/tests), run by pytest so that `make test` runs them.

A PHPUnit failure fails this test with PHPUnit's report; a missing php or phpunit fails it with the command that
installs them, never a skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "php"
INSTALL = "apt-get install php8.2-cli php8.2-curl phpunit  (or: make system-deps)"


def test_every_php_file_parses() -> None:
    """Also the files that no unit test loads (the curl transport, the example console command)."""
    php = shutil.which("php")
    if php is None:
        pytest.fail(f"php is missing: {INSTALL}")
    files = sorted(CLIENT.rglob("*.php"))
    assert len(files) > 20
    for path in files:
        result = subprocess.run([php, "-l", str(path)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_phpunit_passes() -> None:
    php, phpunit = shutil.which("php"), shutil.which("phpunit")
    if php is None or phpunit is None:
        pytest.fail(f"{'php' if php is None else 'phpunit'} is missing: {INSTALL}")
    extensions = subprocess.run([php, "-m"], capture_output=True, text=True, check=True).stdout.split()
    if "curl" not in extensions:
        pytest.fail(f"php's curl extension is missing: {INSTALL}")
    result = subprocess.run(
        [phpunit, "--configuration", str(CLIENT / "phpunit.xml"), "--do-not-cache-result"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    # An empty suite exits 0 too: the report must count the tests that ran.
    assert re.search(r"^OK \([1-9][0-9]* tests, ", report, re.MULTILINE), report
