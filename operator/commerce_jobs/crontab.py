"""A crontab file -> CommerceCronJob manifests (pure).

    */5 * * * * cd '/var/www/my_project' && /usr/bin/php bin/console ibexa:commerce:refresh-cache --env=prod

becomes a CommerceCronJob with schedule ``*/5 * * * *``, workingDir ``/var/www/my_project``, command
``ibexa:commerce:refresh-cache`` and params ``[--env=prod]``. Each line that cannot become one gets an error, and
each part of a line that is not carried over gets a warning, both naming the line: nothing is dropped silently.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from commerce_jobs.api_names import API_VERSION, COMMERCECRONJOB, CRONTAB_ANNOTATION

MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
# Field name, lowest and highest value, as Kubernetes' cron parser (robfig/cron, standard syntax) accepts them.
FIELDS = [("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 6)]
NAMES = {
    "month": {
        m: i + 1
        for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])
    },
    "day of week": {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
}
ENV_LINE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\s*=")


@dataclass
class Conversion:
    manifests: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class LineError(ValueError):
    pass


def check_schedule(schedule: str) -> None:
    """Raises LineError when Kubernetes' CronJob would refuse the schedule, saying which field and why."""
    if schedule.startswith("@"):
        if schedule not in MACROS:
            raise LineError(f"{schedule} is not a schedule that Kubernetes accepts ({', '.join(sorted(MACROS))})")
        return
    parts = schedule.split()
    if len(parts) != 5:
        raise LineError(f"a schedule has 5 fields, {schedule!r} has {len(parts)}")
    for text, (name, low, high) in zip(parts, FIELDS, strict=True):
        for item in text.split(","):
            _check_item(item, name, low, high)


def _check_item(item: str, name: str, low: int, high: int) -> None:
    body, _, step = item.partition("/")
    if step and (not step.isdigit() or int(step) == 0):
        raise LineError(f"{name}: step {step!r} must be a positive number")
    if body in ("*", "?"):
        return
    for bound in body.split("-", 1):
        value = NAMES.get(name, {}).get(bound.lower()) if not bound.isdigit() else int(bound)
        if value is None:
            raise LineError(f"{name}: {bound!r} is not a number or a name (L, W and # are not supported)")
        if not low <= value <= high:
            hint = " (use 0 for Sunday)" if name == "day of week" and value == 7 else ""
            raise LineError(f"{name}: {value} is outside {low}-{high}{hint}")


def _split_line(line: str) -> tuple[str, str]:
    if line.startswith("@"):
        macro, _, command = line.partition(" ")
        if macro == "@reboot":
            raise LineError("@reboot has no equivalent in Kubernetes: run it as a Job when the shop is deployed")
        return macro, command.strip()
    parts = line.split(None, 5)
    if len(parts) < 6:
        raise LineError("expected 5 schedule fields and a command")
    return " ".join(parts[:5]), parts[5]


REDIRECTIONS = {">", ">>", "<", ">&", "&>", ">|", "<&"}
CONTROL = {";", "|", "||", "&", "&&", "(", ")"}


def _tokens(command: str) -> list[str]:
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError as e:
        raise LineError(f"cannot parse the command: {e}") from e


def _parse_command(command: str, warnings: list[str]) -> dict[str, Any]:
    tokens = _tokens(command)
    spec: dict[str, Any] = {}
    if len(tokens) >= 3 and tokens[0] == "cd" and tokens[2] == "&&":
        spec["workingDir"] = tokens[1]
        tokens = tokens[3:]
    # Output redirections are the shell's; the output is kept in the CommerceJob's status instead.
    kept: list[str] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token in REDIRECTIONS:
            target = tokens[index + 1] if index + 1 < len(tokens) else ""
            # "2>&1" arrives as "2", ">&", "1": the 2 belongs to the redirection when it touched it in the line.
            if kept and kept[-1].isdigit() and re.search(rf"(^|\s){kept[-1]}{re.escape(token)}", command):
                kept.pop()
            warnings.append(f"the redirection {token}{target} is dropped: the output is kept in the run's status")
            index += 2
            continue
        if token in CONTROL or token.startswith(("$(", "`")):
            raise LineError(f"{token!r}: only one console command per line can become a CommerceCronJob")
        kept.append(token)
        index += 1
    tokens = kept
    if tokens and re.fullmatch(r"(.*/)?php[0-9.]*", tokens[0]):
        if tokens[0] != "php":
            warnings.append(f"{tokens[0]} becomes the image's php (consoleCommand [php, ...])")
        tokens = tokens[1:]
    if not tokens or not re.fullmatch(r"(.*/)?console", tokens[0]):
        raise LineError("not a Symfony console command (expected [php] bin/console COMMAND ...)")
    if tokens[0] != "bin/console":
        spec["consoleCommand"] = ["php", tokens[0]]
    if len(tokens) < 2:
        raise LineError("bin/console without a command")
    spec["command"] = tokens[1]
    if len(tokens) > 2:
        spec["params"] = tokens[2:]
    return spec


def _name(command: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", command.lower()).strip("-")[:50].rstrip("-") or "task"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


def convert(text: str, namespace: str | None = None, source: str = "crontab") -> Conversion:
    result = Conversion()
    taken: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        where = f"{source}:{number}"
        if not line or line.startswith("#"):
            continue
        if ENV_LINE.match(line):
            result.warnings.append(f"{where}: the variable {line.split('=')[0].strip()} is not carried over: "
                                   "set it in the job's env")  # fmt: skip
            continue
        warnings: list[str] = []
        try:
            schedule, command = _split_line(line)
            check_schedule(schedule)
            spec = _parse_command(command, warnings)
        except LineError as e:
            result.errors.append(f"{where}: {e}: {line}")
            continue
        result.warnings.extend(f"{where}: {w}" for w in warnings)
        metadata: dict[str, Any] = {
            "name": _name(spec["command"], taken),
            "annotations": {CRONTAB_ANNOTATION: line},
        }
        if namespace:
            metadata["namespace"] = namespace
        result.manifests.append({
            "apiVersion": API_VERSION, "kind": COMMERCECRONJOB, "metadata": metadata,
            "spec": {"schedule": schedule, **spec},
        })  # fmt: skip
    return result
