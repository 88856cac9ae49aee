"""Runs the kopf operator with the project's settings."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

import commerce_jobs.handlers  # noqa: F401  (registers the handlers)

FIELD_MANAGER_PREFIX = "commercejobs.dev"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Keep kopf's bookkeeping off the objects: no progress or diff-base annotations, no Events for log lines.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=FIELD_MANAGER_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=FIELD_MANAGER_PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    # Watches that go quiet behind a proxy are restarted instead of hanging for ever.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30


def run_operator(namespaces: list[str], liveness_endpoint: str | None, standalone: bool, verbose: bool = False) -> int:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO)
    try:
        asyncio.run(
            kopf.operator(
                standalone=standalone,
                namespaces=namespaces,
                clusterwide=not namespaces,
                liveness_endpoint=liveness_endpoint,
            )
        )
    except KeyboardInterrupt:
        return 130
    return 0
