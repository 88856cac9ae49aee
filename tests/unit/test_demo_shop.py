"""The demo shop's console (examples/demo-shop), run with this machine's PHP as the image runs it with its own."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import pytest

SHOP = Path(__file__).resolve().parents[2] / "examples" / "demo-shop"
SYMFONY_CONSOLE = Path("/usr/share/php/Symfony/Component/Console/autoload.php")
COMMANDS = (
    "silver:import",
    "ibexa:commerce:index-econtent-job",
    "ibexa:commerce:refresh-cache",
    "silver:erp:resend-orders",
    "shop:slow",
)


@pytest.fixture(scope="module", autouse=True)
def php() -> None:
    if shutil.which("php") is None or not SYMFONY_CONSOLE.is_file():
        pytest.fail("needs PHP and Symfony Console: apt-get install -y php8.2-cli php-symfony-console")


def console(*args: str, shop: Path = SHOP) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["php", "bin/console", *args], cwd=shop, capture_output=True, text=True, timeout=60, check=False
    )


def test_list_shows_every_command() -> None:
    result = console("list", "--raw")
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines()}
    assert set(COMMANDS) <= listed


def test_the_import_prints_what_it_imported_and_accepts_the_platforms_env_option() -> None:
    result = console("silver:import", "tmp", "--env=prod")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Importing from remote system into tmp tables..."
    assert lines[-1] == "Imported 1250 products, 48 categories"
    assert result.stderr == ""


def test_a_bad_argument_is_refused_on_stderr() -> None:
    result = console("silver:import", "nowhere")
    assert result.returncode == 2
    assert 'Unknown table "nowhere"' in result.stderr


def test_the_failing_command_exits_3_with_its_reason_on_stderr() -> None:
    result = console("silver:erp:resend-orders", "--env=prod")
    assert result.returncode == 3
    assert result.stdout == "Resending 3 lost orders to the ERP...\n"
    assert "ERP request failed: connection refused" in result.stderr


def test_the_index_job_and_the_cache_refresh() -> None:
    index = console("ibexa:commerce:index-econtent-job", "--siteaccess=import", "-c", "500")
    assert index.returncode == 0, index.stderr
    assert "Indexed 1298 eContent objects into the tmp core" in index.stdout
    assert console("ibexa:commerce:index-econtent-job", "swap").stdout.startswith("Swapping the tmp and live")
    refresh = console("ibexa:commerce:refresh-cache", "--env=prod")
    assert refresh.returncode == 0
    assert "Refreshed the navigation cache" in refresh.stdout


def test_an_unknown_command_fails_as_symfony_says() -> None:
    result = console("silver:nothing")
    assert result.returncode == 1
    assert 'Command "silver:nothing" is not defined' in result.stderr


@pytest.mark.parametrize(("exit_code", "args"), [(0, []), (143, ["--exit-code-on-signal=143"])])
def test_the_slow_command_reports_progress_and_stops_cleanly_on_sigterm(exit_code: int, args: list[str]) -> None:
    process = subprocess.Popen(
        ["php", "bin/console", "shop:slow", "--seconds=30", *args], cwd=SHOP, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().startswith("Working for 30 seconds")
    assert process.stdout.readline() == "Progress: 1/30 seconds\n"  # its first second is over: the trap is set
    process.send_signal(signal.SIGTERM)
    rest = process.stdout.read()
    assert process.wait(timeout=10) == exit_code
    assert "Received SIGTERM after " in rest
    assert rest.endswith(": stopping cleanly\n")


def test_the_slow_command_finishes_when_left_alone() -> None:
    result = console("shop:slow", "--seconds=1")
    assert result.returncode == 0
    assert result.stdout.splitlines()[1:] == ["Progress: 1/1 seconds", "Done"]


def test_a_command_is_added_by_adding_a_file(tmp_path: Path) -> None:
    shop = tmp_path / "shop"
    shutil.copytree(SHOP, shop)
    (shop / "src/Command/HelloCommand.php").write_text(
        "<?php\n\ndeclare(strict_types=1);\n\nnamespace DemoShop\\Command;\n\n"
        "use Symfony\\Component\\Console\\Attribute\\AsCommand;\n"
        "use Symfony\\Component\\Console\\Command\\Command;\n"
        "use Symfony\\Component\\Console\\Input\\InputInterface;\n"
        "use Symfony\\Component\\Console\\Output\\OutputInterface;\n\n"
        "#[AsCommand(name: 'shop:hello')]\nfinal class HelloCommand extends Command\n{\n"
        "    protected function execute(InputInterface $input, OutputInterface $output): int\n    {\n"
        "        $output->writeln('hello');\n\n        return Command::SUCCESS;\n    }\n}\n"
    )
    # A file that is not a command (a helper class) is no command and breaks nothing.
    (shop / "src/Command/Helper.php").write_text(
        "<?php\n\ndeclare(strict_types=1);\n\nnamespace DemoShop\\Command;\n\nfinal class Helper\n{\n}\n"
    )
    assert console("shop:hello", shop=shop).stdout == "hello\n"
    assert "shop:hello" in console("list", "--raw", shop=shop).stdout


def test_every_php_file_declares_strict_types() -> None:
    for path in [SHOP / "bin/console", *sorted((SHOP / "src").rglob("*.php"))]:
        assert "declare(strict_types=1);" in path.read_text(), path
        lint = subprocess.run(["php", "-l", str(path)], capture_output=True, text=True, check=False)
        assert lint.returncode == 0, lint.stdout
