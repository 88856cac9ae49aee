"""The commands that need no cluster, run as a user runs them."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "commerce_jobs", *args], capture_output=True, text=True, check=False)


def test_crontab_convert_names_each_bad_line_and_still_writes_the_good_ones(tmp_path: Path) -> None:
    crontab = tmp_path / "crontab"
    crontab.write_text(
        "@reboot php bin/console a:b\n*/5 * * * * php bin/console c:d --env=prod\n0 0 * * * ./backup.sh\n"
    )
    result = run("crontab", "convert", str(crontab))
    assert result.returncode == 1
    assert f"error: {crontab}:1: @reboot has no equivalent" in result.stderr
    assert f"error: {crontab}:3: not a Symfony console command" in result.stderr
    (manifest,) = yaml.safe_load_all(result.stdout)
    assert manifest["spec"] == {"schedule": "*/5 * * * *", "command": "c:d", "params": ["--env=prod"]}


def test_import_config_writes_templates() -> None:
    result = run("import-config", str(REPO / "examples/platform/add_jobs.yaml"), "-n", "shop")
    assert result.returncode == 0, result.stderr
    (template,) = yaml.safe_load_all(result.stdout)
    assert (template["kind"], template["metadata"]["namespace"]) == ("CommerceJobTemplate", "shop")


def test_import_config_names_the_unknown_keys_and_the_accepted_ones(tmp_path: Path) -> None:
    config = tmp_path / "add_jobs.yaml"
    config.write_text("parameters:\n  siso_control_center.default.add_jobs:\n"
                      "    import_solr: {command: silver:import, description: Imports, schedule: daily}\n")  # fmt: skip
    result = run("import-config", str(config))
    assert result.returncode == 1
    assert result.stderr == (
        f"commerce-jobs import-config: {config}: import_solr: unknown keys description, schedule"
        " (an entry has only label, desc, command, params, depending_jobs)\n"
    )
    assert result.stdout == ""


def test_a_bad_operator_configuration_stops_the_operator_at_once(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("queues: {imports: {maxRunning: 0}}\n")
    result = run("run", f"--config={config}")
    assert result.returncode == 2
    assert "invalid configuration: queues.imports.maxRunning must be an integer >= 1" in result.stderr


@pytest.mark.parametrize("module", ["commerce_jobs.cli", "commerce_jobs.runner"])
def test_the_operators_start_up_does_not_load_the_development_cluster(module: str) -> None:
    """devcluster/ is for development only: `commerce-jobs run` (the CLI, then the runner) never imports it."""
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith('commerce_jobs.devcluster')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
