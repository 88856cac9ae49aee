"""Runs the kopf operator with the project's settings and its controllers."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

import kopf
from kubernetes import client, config

import commerce_jobs.handlers  # noqa: F401  (registers the handlers)
from commerce_jobs.config import ConfigError, OperatorConfig
from commerce_jobs.controller import CommerceJobController
from commerce_jobs.cron_controller import CronController
from commerce_jobs.handlers.commercejob import MANAGED_BY
from commerce_jobs.kubeapi import KubeApi

if TYPE_CHECKING:
    from commerce_jobs.console.app import ConsoleSettings

PREFIX = "commercejobs.dev"
WORKERS = 16


def api_client() -> client.ApiClient:
    """In a pod, the ServiceAccount's credentials; elsewhere, the current kubeconfig."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
    else:
        config.load_kube_config()
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = WORKERS
    return client.ApiClient(configuration)


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Keep kopf's bookkeeping off the objects: no progress or diff-base annotations, no Events for log lines.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    # The resources are known: no watch of CRDs or namespaces (nor the RBAC rights for one).
    settings.scanning.disabled = True
    # Only the Jobs that the operator made are streamed to it.
    managed = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
    settings.watching.label_selectors["batch", "jobs"] = managed
    settings.watching.label_selectors["v1", "pods"] = managed
    settings.watching.label_selectors["batch", "cronjobs"] = managed
    # Watches that go quiet behind a proxy are restarted instead of hanging for ever.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    api = KubeApi(api_client())
    controller = CommerceJobController(api, memo.config, workers=WORKERS)
    crons = CronController(api, memo.config, controller)
    if memo.get("console_settings") is not None:
        from commerce_jobs.console.app import Console  # aiohttp's web server only when the console is on

        # A connection pool of its own: followed logs stay open, and must not take the controller's connections.
        console = Console(controller, api_client(), memo.namespaces, memo.console_settings)
        await console.start()  # first: a port in use fails the start before any worker runs
        memo.console = console
    controller.start()
    crons.start()
    memo.controller = controller
    memo.crons = crons


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    for name in ("console", "crons", "controller"):
        component = memo.get(name)
        if component is not None:
            await component.stop()


def run_operator(
    namespaces: list[str],
    liveness_endpoint: str | None,
    standalone: bool,
    verbose: bool = False,
    log_format: str = "full",
    console: ConsoleSettings | None = None,
) -> int:
    try:
        # Read before kopf starts: a bad file stops the operator at once, with the reason, instead of a retry loop.
        operator_config = OperatorConfig.load()
    except ConfigError as e:
        print(f"commerce-jobs: invalid configuration: {e}", file=sys.stderr)
        return 2
    # One log configuration for kopf's messages and ours; "json" gives one structured record per line.
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat[log_format.upper()], log_refkey="object")
    if not verbose:
        # kopf logs every handled watch event at INFO: thousands of lines an hour that say nothing.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        asyncio.run(
            kopf.operator(
                standalone=standalone,
                namespaces=namespaces,
                clusterwide=not namespaces,
                liveness_endpoint=liveness_endpoint,
                memo=kopf.Memo(config=operator_config, console_settings=console, namespaces=namespaces),
            )
        )
    except KeyboardInterrupt:
        return 130
    return 0
