from pathlib import Path

import pytest

from commerce_jobs.crontab import LineError, check_schedule, convert

SEED = Path(__file__).resolve().parents[2] / "examples" / "platform" / "crontab"


def test_the_platforms_required_tasks_become_three_commercecronjobs() -> None:
    result = convert(SEED.read_text(), namespace="shop", source="crontab")
    assert result.errors == []
    specs = {m["metadata"]["name"]: m["spec"] for m in result.manifests}
    wd = "/var/www/my_project"

    def task(command: str, *params: str) -> dict:
        return {"schedule": "*/5 * * * *", "workingDir": wd, "command": command, "params": list(params)}

    assert specs == {
        "ibexa-commerce-refresh-cache": task("ibexa:commerce:refresh-cache", "--env=prod"),
        "ibexa-commerce-process-lost-orders": task("ibexa:commerce:process-lost-orders", "--env=prod"),
        "ibexa-commerce-sessions": task("ibexa:commerce:sessions", "write_stat", "--env=prod"),
    }
    assert all(m["metadata"]["namespace"] == "shop" for m in result.manifests)
    # The host's /usr/bin/php is not carried over silently: it is named.
    assert len(result.warnings) == 3
    assert all("/usr/bin/php" in w for w in result.warnings)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("@reboot php bin/console a:b", "@reboot has no equivalent"),
        ("0 3 * * 7 php bin/console a:b", "day of week: 7 is outside 0-6 (use 0 for Sunday)"),
        ("0 4 L * * php bin/console a:b", "'L' is not a number or a name"),
        ("61 * * * * php bin/console a:b", "minute: 61 is outside 0-59"),
        ("*/0 * * * * php bin/console a:b", "step '0' must be a positive number"),
        ("* * * * php bin/console a:b", "day of week: 'php' is not a number or a name"),
        ("0 0 * * * /usr/local/bin/backup.sh", "not a Symfony console command"),
        ("*/5 * * * * php bin/console a:b | mail ops", "only one console command per line"),
        ("*/5 * * * * php bin/console a:b; php bin/console c:d", "only one console command"),
        ("@every 5m php bin/console a:b", "@every is not a schedule"),
        ("0 0 * * * php bin/console", "without a command"),
    ],
)
def test_lines_that_cannot_be_converted_are_errors_naming_the_line(line: str, message: str) -> None:
    result = convert(f"# tasks\n{line}\n", source="tasks")
    assert result.manifests == []
    (error,) = result.errors
    assert error.startswith("tasks:2: ")
    assert line in error
    assert any(part in error for part in message.split("|"))


def test_what_is_not_carried_over_is_a_warning() -> None:
    result = convert("MAILTO=ops@example.com\n0 4 * * * php bin/console c:d >> /var/log/c.log 2>&1\n", source="t")
    assert [m["spec"] for m in result.manifests] == [{"schedule": "0 4 * * *", "command": "c:d"}]
    assert result.warnings[0].startswith("t:1: the variable MAILTO is not carried over")
    assert [w for w in result.warnings if "redirection" in w] == [
        "t:2: the redirection >>/var/log/c.log is dropped: the output is kept in the run's status",
        "t:2: the redirection >&1 is dropped: the output is kept in the run's status",
    ]


def test_macros_names_and_duplicates() -> None:
    result = convert("@daily php bin/console a:b\n0 6 * jan-mar mon-fri php app/console a:b\n")
    assert [m["metadata"]["name"] for m in result.manifests] == ["a-b", "a-b-2"]
    assert result.manifests[1]["spec"]["consoleCommand"] == ["php", "app/console"]
    check_schedule("5,10-20/5 */2 1-31 * 0-6")
    with pytest.raises(LineError):
        check_schedule("0 0 * * * *")
