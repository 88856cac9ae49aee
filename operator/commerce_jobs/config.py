"""Operator-wide settings: job defaults (the shop's image, console, env ...), queue limits, output size.

Read from a YAML file (the chart mounts it from a ConfigMap), path given by ``--config`` or COMMERCE_JOBS_CONFIG:

    jobDefaults:            # what a CommerceJob leaves out, it takes from here
      image: registry.example.com/shop:1.2.3
      consoleCommand: [php, bin/console]
      workingDir: /var/www/html
      envFrom: [{secretRef: {name: shop-database}}]
    queues:
      default: {maxRunning: 4}
      imports: {maxRunning: 1}
    defaultQueueMaxRunning: null    # queues not listed: unlimited
    outputMaxBytes: 65536
    podStartTimeoutSeconds: 300     # a container that cannot start (ImagePullBackOff ...) fails its attempt after this
    dependencyGraceSeconds: 300     # a job of spec.dependsOn that does not exist fails the job after this
    startedEventHoldSeconds: 10     # an attempt that ends sooner has only its end's Event, not also "Started"
    retention:                      # as jms-job-queue:clean-up, continuously
      maxRetention: 7 days          # any final state
      maxRetentionSucceeded: 1 hour # Finished
      perCall: 10                   # deletions per round
      intervalSeconds: 60           # between rounds while there is a backlog
    allowedCommands:                # off when absent or empty: any console command runs
      - "silver:*"                  # glob patterns, matched against the command's name only (see policy.py)
      - "ibexa:commerce:*"
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from commerce_jobs.output import DEFAULT_MAX_BYTES
from commerce_jobs.retention import DurationError, RetentionPolicy, parse_duration

CONFIG_ENV = "COMMERCE_JOBS_CONFIG"


class ConfigError(ValueError):
    """The operator's configuration file is invalid; the message says where."""


@dataclass(frozen=True)
class OperatorConfig:
    job_defaults: dict[str, Any] = field(default_factory=dict)
    queue_limits: dict[str, int] = field(default_factory=dict)
    default_queue_limit: int | None = None
    output_max_bytes: int = DEFAULT_MAX_BYTES
    pod_start_timeout_seconds: int = 300
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    retention_interval_seconds: float = 60.0
    # Glob patterns of the console commands that may run; empty: any (see policy.py for what is matched).
    allowed_commands: tuple[str, ...] = ()
    # How long a job waits for a job of its dependsOn that does not exist (see dependencies.py).
    dependency_grace_seconds: int = 300
    # An attempt's Started Event waits this long; an attempt that ends sooner has only its end's Event (events.py).
    started_event_hold_seconds: float = 10.0

    def queue_limit(self, queue: str) -> int | None:
        return self.queue_limits.get(queue, self.default_queue_limit)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OperatorConfig:
        if not isinstance(data, dict):
            raise ConfigError("the configuration must be a mapping")
        unknown = set(data) - {
            "jobDefaults",
            "queues",
            "defaultQueueMaxRunning",
            "outputMaxBytes",
            "podStartTimeoutSeconds",
            "retention",
            "allowedCommands",
            "dependencyGraceSeconds",
            "startedEventHoldSeconds",
        }
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
        defaults = data.get("jobDefaults") or {}
        if not isinstance(defaults, dict):
            raise ConfigError("jobDefaults must be a mapping")
        limits: dict[str, int] = {}
        for name, options in (data.get("queues") or {}).items():
            limit = (options or {}).get("maxRunning")
            if not isinstance(limit, int) or limit < 1:
                raise ConfigError(f"queues.{name}.maxRunning must be an integer >= 1")
            limits[name] = limit
        default_limit = data.get("defaultQueueMaxRunning")
        if default_limit is not None and (not isinstance(default_limit, int) or default_limit < 1):
            raise ConfigError("defaultQueueMaxRunning must be an integer >= 1, or null for no limit")
        max_bytes = data.get("outputMaxBytes", DEFAULT_MAX_BYTES)
        if not isinstance(max_bytes, int) or not 1024 <= max_bytes <= 512 * 1024:
            raise ConfigError("outputMaxBytes must be an integer between 1024 and 524288")
        start_timeout = data.get("podStartTimeoutSeconds", 300)
        if not isinstance(start_timeout, int) or start_timeout < 1:
            raise ConfigError("podStartTimeoutSeconds must be an integer >= 1")
        retention, interval = _retention(data.get("retention") or {})
        allowed = data.get("allowedCommands") or []
        if not isinstance(allowed, list) or not all(isinstance(p, str) and p.strip() for p in allowed):
            raise ConfigError("allowedCommands must be a list of glob patterns, e.g. ['silver:*', 'ibexa:commerce:*']")
        grace = data.get("dependencyGraceSeconds", 300)
        if not isinstance(grace, int) or isinstance(grace, bool) or grace < 0:
            raise ConfigError("dependencyGraceSeconds must be an integer >= 0")
        hold = data.get("startedEventHoldSeconds", 10)
        if not isinstance(hold, int | float) or isinstance(hold, bool) or not 0 <= hold <= 3600:
            raise ConfigError("startedEventHoldSeconds must be a number of seconds from 0 (post at once) to 3600")
        return cls(
            defaults, limits, default_limit, max_bytes, start_timeout, retention, interval, tuple(allowed), grace,
            float(hold),
        )  # fmt: skip

    @classmethod
    def load(cls, path: str | Path | None = None) -> OperatorConfig:
        path = path or os.environ.get(CONFIG_ENV)
        if not path:
            return cls()
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read {path}: {e}") from e
        return cls.from_dict(data)


def _retention(data: dict[str, Any]) -> tuple[RetentionPolicy, float]:
    unknown = set(data) - {"maxRetention", "maxRetentionSucceeded", "perCall", "intervalSeconds"}
    if unknown:
        raise ConfigError(f"unknown retention settings: {', '.join(sorted(unknown))}")
    default = RetentionPolicy()
    try:
        max_retention = parse_duration(data["maxRetention"]) if "maxRetention" in data else default.max_retention
        succeeded = (
            parse_duration(data["maxRetentionSucceeded"])
            if "maxRetentionSucceeded" in data
            else default.max_retention_succeeded
        )
    except DurationError as e:
        raise ConfigError(f"retention: {e}") from e
    per_call = data.get("perCall", default.per_call)
    if not isinstance(per_call, int) or per_call < 1:
        raise ConfigError("retention.perCall must be an integer >= 1")
    interval = data.get("intervalSeconds", 60)
    if not isinstance(interval, int | float) or interval <= 0:
        raise ConfigError("retention.intervalSeconds must be a number > 0")
    return RetentionPolicy(max_retention, succeeded, per_call), float(interval)
