"""The operator's connection to the apiserver: its credentials and its pool, shared by the operator and the CLI."""

from __future__ import annotations

import os

from kubernetes import client, config

from commerce_jobs import metrics

WORKERS = 16  # the CommerceJob controller's workers: each may hold one of the pool's connections


def api_client() -> client.ApiClient:
    """In a pod, the ServiceAccount's credentials; elsewhere, the current kubeconfig."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
    else:
        config.load_kube_config()
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = WORKERS
    api = client.ApiClient(configuration)
    metrics.track(api)  # its requests count in commerce_jobs_api_requests_total (with --metrics, on the Lease holder)
    return api
