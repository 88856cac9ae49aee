"""What the operator refuses to run, whoever asks: console commands outside the operator-wide allowlist (pure).

The allowlist (``allowedCommands`` of the configuration) is a list of glob patterns (``fnmatch``, case-sensitive:
``*`` any characters including ``:``, ``?`` one character, ``[...]`` a class) matched against the console command's
NAME only, e.g. ``silver:import`` of ``php bin/console silver:import tmp``: never against its params, the console or
the image. A job is refused when its command, or the command of any dependent in its dependingJobs tree, matches no
pattern; so is a job that replaces the console (spec.consoleCommand) while the allowlist is on, because
``consoleCommand: [sh, -c, ...]`` would run anything under an allowed name.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from fnmatch import fnmatchcase
from typing import Any


def command_allowed(command: str, patterns: Sequence[str]) -> bool:
    """Whether ``command`` (a console command's name) matches one of the patterns; no patterns: any command."""
    return not patterns or any(fnmatchcase(command, pattern) for pattern in patterns)


def _commands(spec: dict[str, Any], where: str) -> Iterator[tuple[str, str]]:
    if isinstance(spec.get("command"), str):
        yield where, spec["command"]
    for index, item in enumerate(spec.get("dependingJobs") or []):
        if isinstance(item, dict):
            yield from _commands(item, f"{where}.dependingJobs[{index}]")


def refusal(spec: dict[str, Any], patterns: Sequence[str], default_console: Sequence[str]) -> str | None:
    """Why a job with this spec may not run under the allowlist ``patterns``; None when it may (or there is none).
    ``default_console`` is the console of the operator's jobDefaults, the only one allowed with an allowlist."""
    if not patterns:
        return None
    allowed = ", ".join(patterns)
    for where, command in _commands(spec, "spec"):
        if not command_allowed(command, patterns):
            return f"{where}.command {command!r} is not allowed: the operator's allowedCommands are {allowed}"
    console = spec.get("consoleCommand")
    if console and list(console) != list(default_console):
        return (
            "spec.consoleCommand may not be changed while the operator has allowedCommands: remove it to use the "
            f"operator's {list(default_console)}"
        )
    return None
