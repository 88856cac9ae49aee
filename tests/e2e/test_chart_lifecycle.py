"""The chart's life after the install (issue 20): `helm test`, `helm upgrade`, `helm uninstall`, the NetworkPolicy.

On kwok the chart's pods are simulated, so the hook's Pod cannot run here (it would stay Running): its program runs
as a process instead, with the token of the hook's own ServiceAccount, against the session's operator. The real run
of `helm test` belongs to the real-node tier.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from commerce_jobs.devcluster.toolchain import Toolchain
from tests.cjobs import CommerceJobs, sim
from tests.conftest import Cluster
from tests.e2e.conftest import RELEASE, REPO, kubectl
from tests.kube import wait_deleted, wait_for

CHART = REPO / "charts" / "commerce-jobs"
ARTIFACTS = REPO / "test-artifacts" / "chart-lifecycle"
HOOK = f"{RELEASE}-commerce-jobs-test"  # the hook's ServiceAccount, Role, RoleBinding and Pod
HOOK_JOB = f"{RELEASE}-commerce-jobs-helm-test"  # the CommerceJob that it runs


def helm(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(Toolchain.default().path("helm")), f"--kubeconfig={cluster.kubeconfig}", *args],
                            capture_output=True, text=True, check=False)  # fmt: skip
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def render_hook(cluster: Cluster, *values: str) -> dict[str, dict[str, Any]]:
    """The `helm test` hook of the session's release, by kind."""
    rendered = helm(cluster, "template", RELEASE, str(CHART), f"--namespace={RELEASE}",
                    "--show-only=templates/tests/smoke-test.yaml", *values).stdout  # fmt: skip
    return {doc["kind"]: doc for doc in yaml.safe_load_all(rendered) if doc}


def apply(cluster: Cluster, docs: list[dict[str, Any]]) -> None:
    """`kubectl apply -f -` of these objects, as helm would create its hooks."""
    argv = [str(Toolchain.default().path("kubectl")), f"--kubeconfig={cluster.kubeconfig}", "apply", "-f", "-"]
    result = subprocess.run(argv, input=yaml.safe_dump_all(docs), capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def hook_rbac_objects(hook: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [hook[kind] for kind in ("ServiceAccount", "Role", "RoleBinding")]


def token_kubeconfig(cluster: Cluster, namespace: str, account: str, name: str) -> Path:
    token = kubectl(cluster, "create", "token", account, f"--namespace={namespace}", "--duration=1h").stdout.strip()
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"] = [{"name": account, "user": {"token": token}}]
    for context in config["contexts"]:
        context["context"]["user"] = account
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@pytest.fixture
def hook_rbac(cluster: Cluster, chart: str, namespace: str) -> Iterator[dict[str, dict[str, Any]]]:
    """The hook's ServiceAccount, Role and RoleBinding applied as helm would before its Pod (tests.namespace: this
    test's namespace); deleted afterwards."""
    hook = render_hook(cluster, f"--set=tests.namespace={namespace}")
    apply(cluster, hook_rbac_objects(hook))
    yield hook
    kubectl(cluster, "delete", "serviceaccount", HOOK, f"--namespace={chart}", "--ignore-not-found")


def run_hook_program(pod: dict[str, Any], kubeconfig: Path, **overrides: str) -> subprocess.CompletedProcess[str]:
    """The hook Pod's command line, run here: its program with its args, under the hook's ServiceAccount."""
    (container,) = pod["spec"]["containers"]
    argv = [*container["command"], *container["args"]]
    assert argv[:3] == ["python", "-m", "commerce_jobs.smoketest"]
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    return subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True, env=env, timeout=120,
                          check=False)  # fmt: skip


def test_the_helm_test_hook_has_exactly_the_rights_it_needs(
    cluster: Cluster, chart: str, namespace: str, hook_rbac: dict[str, dict[str, Any]]
) -> None:
    kubeconfig = token_kubeconfig(cluster, chart, HOOK, "hook.kubeconfig")

    def can(*args: str) -> bool:
        result = subprocess.run([str(Toolchain.default().path("kubectl")), f"--kubeconfig={kubeconfig}", "auth",
                                 "can-i", *args], capture_output=True, text=True, check=False)  # fmt: skip
        return result.stdout.strip() == "yes"

    cjobs = "commercejobs.commercejobs.dev"
    assert can("create", cjobs, "-n", namespace)
    for verb in ("get", "list", "watch", "delete"):
        assert can(verb, f"{cjobs}/{HOOK_JOB}", "-n", namespace), verb
        assert not can(verb, f"{cjobs}/someone-elses", "-n", namespace), verb
    denied = [("list", cjobs), ("patch", f"{cjobs}/{HOOK_JOB}"), ("patch", cjobs, "--subresource=status"),
              ("create", "jobs.batch"), ("create", "pods"), ("get", "secrets"), ("get", "pods", "--subresource=log"),
              ("create", "commercejobtemplates.commercejobs.dev")]  # fmt: skip
    for args in denied:
        assert not can(*args, "-n", namespace), args
    assert not can("create", cjobs, "-n", chart)  # only in tests.namespace
    # The Pod runs restricted, under its own ServiceAccount, and is not one of the operator's pods.
    pod = hook_rbac["Pod"]
    assert pod["spec"]["serviceAccountName"] == HOOK
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "commerce-jobs-test"
    for doc in hook_rbac.values():
        assert doc["metadata"]["annotations"]["helm.sh/hook"] == "test"
        assert doc["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"


def test_the_helm_test_hook_runs_a_job_to_finished_and_deletes_it(
    cluster: Cluster, chart: str, namespace: str, cjobs: CommerceJobs, hook_rbac: dict[str, dict[str, Any]]
) -> None:
    kubeconfig = token_kubeconfig(cluster, chart, HOOK, "hook.kubeconfig")
    result = run_hook_program(hook_rbac["Pod"], kubeconfig)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"commercejob.commercejobs.dev/{HOOK_JOB} created in {namespace}: list"
    assert f"{HOOK_JOB}: Finished, exit code 0" in lines
    assert lines[-1] == f"{HOOK_JOB}: Finished, and deleted"
    cjobs.wait_deleted(HOOK_JOB)


def test_a_failing_helm_test_says_why_and_keeps_the_job_for_inspection(
    cluster: Cluster, chart: str, namespace: str, cjobs: CommerceJobs
) -> None:
    """A command that the operator's allowlist refuses (the session's operator refuses names with a leading _)."""
    hook = render_hook(cluster, f"--set=tests.namespace={namespace}", "--set=tests.command=_not_allowed")
    apply(cluster, hook_rbac_objects(hook))
    try:
        kubeconfig = token_kubeconfig(cluster, chart, HOOK, "hook.kubeconfig")
        first = run_hook_program(hook["Pod"], kubeconfig)
        assert first.returncode == 1
        assert "CommandNotAllowed" in first.stdout
        assert f"FAILED; kept: kubectl -n {namespace} describe commercejob {HOOK_JOB}" in first.stdout
        assert cjobs.get(HOOK_JOB)["status"]["state"] == "Failed"
        # The next run starts clean: the job of the failed one is deleted first.
        second = run_hook_program(hook["Pod"], kubeconfig)
        assert f"{HOOK_JOB}: deleted the job of an earlier run" in second.stdout.splitlines()
    finally:
        kubectl(cluster, "delete", "serviceaccount", HOOK, f"--namespace={chart}", "--ignore-not-found")


LIFE = "cj-life"  # a release of its own: uninstalled by the test


@pytest.fixture
def life_release(cluster: Cluster) -> Iterator[str]:
    yield LIFE
    helm(cluster, "uninstall", LIFE, f"--namespace={LIFE}", "--ignore-not-found", check=False)
    kubectl(cluster, "delete", "namespace", LIFE, "--ignore-not-found", "--wait=false")


def test_upgrade_then_uninstall_keeps_the_crds_and_commercejobs_and_leaves_no_job_without_its_owner(
    cluster: Cluster, life_release: str, cjobs: CommerceJobs, namespace: str, batch: client.BatchV1Api
) -> None:
    """`helm uninstall` deletes what the chart made (its crontab tasks with their CronJobs and runs, by garbage
    collection); the CRDs and every other CommerceJob stay, and each Job keeps an owner that exists."""
    cron_tasks = {"refresh-cache": {"schedule": "*/5 * * * *", "command": "a:b"}}
    # A second release in the cluster: the CRDs are the session release's (and may have been applied by kubectl).
    helm(cluster, "upgrade", "--install", LIFE, str(CHART), f"--namespace={LIFE}", "--create-namespace", "--wait",
         "--skip-crds", "--timeout=2m", "--set=jobDefaults.image=registry.example.com/shop:e2e",
         f"--set-json=cronTasks={json.dumps(cron_tasks)}")  # fmt: skip
    custom = client.CustomObjectsApi(cluster.api)
    crons = lambda **kw: custom.list_namespaced_custom_object(  # noqa: E731
        "commercejobs.dev", "v1alpha1", LIFE, "commercecronjobs", **kw
    )
    wait_for(crons, "refresh-cache", lambda c: bool((c.get("status") or {}).get("conditions")))
    wait_for(batch.list_namespaced_cron_job, "refresh-cache", lambda _: True, namespace=LIFE)
    # A job of the shop's, running when the operator goes.
    cjobs.create("import", command="silver:import", podAnnotations=sim(duration="10m"))
    running = cjobs.wait_state("import", "Running")

    upgraded = helm(cluster, "upgrade", LIFE, str(CHART), f"--namespace={LIFE}", "--reuse-values", "--wait",
                    "--timeout=2m", "--set=logFormat=plain")  # fmt: skip
    assert "STATUS: deployed" in upgraded.stdout
    assert "REVISION: 2" in upgraded.stdout

    helm(cluster, "uninstall", LIFE, f"--namespace={LIFE}", "--wait")
    apps = client.AppsV1Api(cluster.api)
    assert not apps.list_namespaced_deployment(LIFE).items
    extensions = client.ApiextensionsV1Api(cluster.api)
    for crd in ("commercejobs", "commercecronjobs", "commercejobtemplates"):
        extensions.read_custom_resource_definition(f"{crd}.commercejobs.dev")  # still there
    assert cjobs.get("import")["metadata"]["uid"] == running["metadata"]["uid"]  # the same job, still there
    # The crontask went with the release, and its CronJob with it (garbage collection).
    assert not crons()["items"]
    wait_deleted(batch.list_namespaced_cron_job, "refresh-cache", namespace=LIFE)
    # No Job without an owner that exists.
    jobs = batch.list_namespaced_job(namespace, label_selector="app.kubernetes.io/managed-by=commerce-jobs").items
    assert [j.metadata.name for j in jobs] == [running["status"]["jobName"]]
    for job in jobs:
        owners = job.metadata.owner_references or []
        assert owners, f"{job.metadata.name} has no owner"
        for owner in owners:
            assert owner.kind == "CommerceJob"
            assert cjobs.get(owner.name)["metadata"]["uid"] == owner.uid


def test_the_network_policy_is_valid_and_reads_the_api_servers_addresses(cluster: Cluster) -> None:
    """With the addresses given, the policy is what the API server accepts; without, helm install reads them from
    the kubernetes EndpointSlice, and helm template (which cannot) says what to set."""
    base = ["template", "np", str(CHART), "--namespace=np", "--show-only=templates/networkpolicy.yaml",
            "--set=networkPolicy.enabled=true", "--set=console.enabled=true"]  # fmt: skip
    refused = helm(cluster, *base, check=False)
    assert refused.returncode != 0
    assert "set networkPolicy.apiServer.cidrs" in refused.stderr
    given = helm(cluster, *base, "--set=networkPolicy.apiServer.cidrs={10.0.0.1/32,fd00::1/128}").stdout
    policy, hook_policy = yaml.safe_load_all(given)
    # The test hook's pod: the API server only, nothing reaches it.
    assert hook_policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "commerce-jobs-test"
    assert "ingress" not in hook_policy["spec"]
    assert hook_policy["spec"]["egress"] == policy["spec"]["egress"]
    assert policy["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "commerce-jobs",
                                                            "app.kubernetes.io/instance": "np"}  # fmt: skip
    assert [rule["ports"] for rule in policy["spec"]["ingress"]] == [
        [{"port": "health", "protocol": "TCP"}], [{"port": "console", "protocol": "TCP"}]
    ]  # fmt: skip
    (egress,) = policy["spec"]["egress"]  # no DNS unless asked
    assert egress["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}, {"ipBlock": {"cidr": "fd00::1/128"}}]
    dry_run = kubectl(cluster, "create", "namespace", "np", "--dry-run=client", "-o=yaml").stdout
    validated = subprocess.run(
        [str(Toolchain.default().path("kubectl")), f"--kubeconfig={cluster.kubeconfig}", "apply", "--dry-run=server",
         "-f", "-"], input=dry_run + "---\n" + given.replace("namespace: np", "namespace: default"),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert validated.returncode == 0, validated.stderr

    # helm install reads the addresses itself (a server-side dry run: nothing is installed).
    discovery = client.DiscoveryV1Api(cluster.api)
    existing = discovery.list_namespaced_endpoint_slice("default", field_selector="metadata.name=kubernetes").items
    created = not existing
    if existing:
        slice_ = existing[0]
    else:  # the dev control plane reconciles no endpoints: one as a cluster would have it
        slice_ = discovery.create_namespaced_endpoint_slice("default", client.V1EndpointSlice(
            metadata=client.V1ObjectMeta(name="kubernetes", labels={"kubernetes.io/service-name": "kubernetes"}),
            address_type="IPv4", endpoints=[client.V1Endpoint(addresses=["192.0.2.10"])],
            ports=[client.DiscoveryV1EndpointPort(name="https", port=8443, protocol="TCP")],
        ))  # fmt: skip
    try:
        installed = helm(cluster, "install", "np", str(CHART), "--namespace=np", "--dry-run=server",
                         "--set=networkPolicy.enabled=true").stdout  # fmt: skip
    finally:
        if created:
            discovery.delete_namespaced_endpoint_slice("kubernetes", "default")
    policy = next(d for d in yaml.safe_load_all(installed.split("NOTES:")[0].split("MANIFEST:")[-1])
                  if d and d["kind"] == "NetworkPolicy")  # fmt: skip
    (egress,) = policy["spec"]["egress"]
    addresses = [a for e in slice_.endpoints for a in e.addresses]
    assert egress["to"] == [{"ipBlock": {"cidr": f"{a}/32"}} for a in addresses]
    ports = {p["port"] for p in egress["ports"]}
    assert {443, 6443} | {p.port for p in slice_.ports} == ports
