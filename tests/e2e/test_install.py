"""Installing as users do: the Helm chart, the kustomize manifests, the image, RBAC, and GitOps."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from commerce_jobs.devcluster import render
from commerce_jobs.devcluster.toolchain import Toolchain
from tests.cjobs import CommerceJobs, sim
from tests.conftest import Cluster
from tests.e2e.conftest import REPO, kubectl
from tests.kube import has_condition, wait_for

CHART = REPO / "charts" / "commerce-jobs"


def template(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), "template", "shop-jobs", str(CHART), "-n", "shop", *args],
                          capture_output=True, text=True, check=False)  # fmt: skip


def kinds(rendered: str) -> dict[str, list[dict[str, Any]]]:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in yaml.safe_load_all(rendered):
        if doc:
            by_kind.setdefault(doc["kind"], []).append(doc)
    return by_kind


def test_helm_lint_strict_is_clean(helm: Path) -> None:
    result = subprocess.run([str(helm), "lint", "--strict", str(CHART)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_the_documented_values_render_what_the_readme_says(helm: Path) -> None:
    rendered = template(helm, "-f", str(REPO / "examples/values.yaml"))
    assert rendered.returncode == 0, rendered.stderr
    objects = kinds(rendered.stdout)
    assert sorted(c["metadata"]["name"] for c in objects["CommerceCronJob"]) == [
        "process-lost-orders", "refresh-cache", "sessions-write-stat"
    ]  # fmt: skip
    assert [t["metadata"]["name"] for t in objects["CommerceJobTemplate"]] == ["import-solr"]
    config = yaml.safe_load(objects["ConfigMap"][0]["data"]["config.yaml"])
    assert config["jobDefaults"]["image"] == "registry.example.com/shop:1.2.3"
    assert config["jobDefaults"]["envFrom"] == [{"secretRef": {"name": "shop-database"}}]
    assert config["queues"] == {"imports": {"maxRunning": 1}}
    assert config["retention"]["maxRetention"] == "1 day"
    (deployment,) = objects["Deployment"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["containers"][0]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}  # always, console or not
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]  # noqa: S108  (the emptyDir)
    assert deployment["spec"]["minReadySeconds"] == 10
    assert "--all-namespaces" in container["args"]
    # The operator reads that configuration, whatever the values.
    from commerce_jobs.config import OperatorConfig

    assert OperatorConfig.from_dict(config).queue_limit("other") == 4


def test_watched_namespaces_get_a_role_each_and_no_cluster_role(helm: Path) -> None:
    rendered = template(helm, "--set=watchNamespaces={shop-a,shop-b}")
    objects = kinds(rendered.stdout)
    assert "ClusterRole" not in objects
    # Besides the Lease's Role (test_leader_election_is_on_with_a_lease_role_...) and the one for the operator's own
    # Events in the release's namespace, and the `helm test` hook's (test_the_helm_test_hook_...).
    own = ("-leader-election", "-events", "-test")
    roles = [r for r in objects["Role"] if not r["metadata"]["name"].endswith(own)]
    bindings = [b for b in objects["RoleBinding"] if not b["metadata"]["name"].endswith(own)]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["shop-a", "shop-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["shop-a", "shop-b"]
    args = objects["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=shop-a" in args
    assert "--all-namespaces" not in args


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("replicaCount=two", "at '/replicaCount': got string, want integer"),
        ("retention.maxRetention=forever", "at '/retention/maxRetention': 'forever' does not match pattern"),
        ("queues.imports.maxRunning=0", "at '/queues/imports/maxRunning': minimum: got 0, want 1"),
        ("logFormat=xml", "at '/logFormat'"),
        ("jobDefaults.imagee=x", "additional properties 'imagee' not allowed"),
        ("minReadySeconds=-1", "at '/minReadySeconds': minimum: got -1, want 0"),
        ("tests.timeoutSeconds=1", "at '/tests/timeoutSeconds': minimum: got 1, want 10"),
        ("tests.command=rm -rf", "at '/tests/command': 'rm -rf' does not match pattern"),
        ("networkPolicy.apiServer.cidrs={10.0.0.1}", "at '/networkPolicy/apiServer/cidrs/0': '10.0.0.1' does not"),
        ("networkPolicy.egress=x", "additional properties 'egress' not allowed"),
    ],
)
def test_wrong_values_are_rejected_with_a_clear_message(helm: Path, value: str, message: str) -> None:
    result = template(helm, f"--set={value}")
    assert result.returncode != 0
    assert message in result.stderr


def test_the_kustomize_manifests_are_the_rendered_chart(helm: Path) -> None:
    assert (REPO / "manifests/install.yaml").read_text() == render.render(helm), (
        "run: python -m commerce_jobs.devcluster.render"
    )


def test_the_chart_installs_and_its_operator_pod_runs_restricted(
    cluster: Cluster, chart: str, simulated_cluster: Cluster
) -> None:
    apps = client.AppsV1Api(cluster.api)
    deployment = wait_for(apps.list_namespaced_deployment, f"{chart}-commerce-jobs",
                          has_condition("Available"), namespace=chart)  # fmt: skip
    assert deployment.status.ready_replicas == 1
    pods = client.CoreV1Api(cluster.api).list_namespaced_pod(chart).items
    assert [p.spec.security_context.run_as_non_root for p in pods] == [True]


def test_kubectl_apply_k_installs_and_a_second_apply_changes_nothing(cluster: Cluster, crds: None) -> None:
    first = kubectl(cluster, "apply", "--server-side", "--force-conflicts", "-k", str(REPO / "manifests"))
    assert "deployment.apps/commerce-jobs serverside-applied" in first.stdout
    second = kubectl(cluster, "apply", "-k", str(REPO / "manifests"), "--dry-run=server", "-o=name")
    assert second.returncode == 0
    diff = kubectl(cluster, "diff", "-k", str(REPO / "manifests"), "--server-side", "--force-conflicts", check=False)
    assert diff.returncode == 0, diff.stdout  # 0: no difference between the manifests and the cluster


def test_the_operator_runs_with_only_the_chart_rights(cluster: Cluster, operator_kubeconfig: Path) -> None:
    """The e2e operator uses this token; these are the rights it has, and some it has not."""

    def can(*args: str) -> bool:
        result = subprocess.run(
            [str(Toolchain.default().path("kubectl")), f"--kubeconfig={operator_kubeconfig}", "auth", "can-i", *args],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        return result.stdout.strip() == "yes"

    assert can("create", "jobs.batch", "-n", "anywhere")
    assert can("patch", "commercejobs.commercejobs.dev", "--subresource=status", "-n", "anywhere")
    assert can("get", "pods", "--subresource=log", "-n", "anywhere")
    assert not can("get", "pods", "--subresource=exec", "-n", "anywhere")
    for denied in (("get", "secrets"), ("list", "configmaps"), ("create", "pods"), ("delete", "pods"),
                   ("create", "deployments.apps"), ("update", "commercejobs.commercejobs.dev"),
                   ("create", "commercejobtemplates.commercejobs.dev"), ("list", "namespaces"),
                   ("create", "clusterrolebindings.rbac.authorization.k8s.io")):  # fmt: skip
        assert not can(*denied, "-n", "anywhere"), denied


def test_the_image_install_steps_work_in_a_clean_virtualenv(tmp_path: Path) -> None:
    """What the Dockerfile does, without a Docker engine: build the package, install it alone, start its command."""
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS build$", dockerfile, re.M)
    assert re.search(r"^ARG PYTHON_IMAGE=python:\d+\.\d+\.\d+-slim-\w+$", dockerfile, re.M)  # a pinned base
    assert re.search(r"^USER 65532:65532$", dockerfile, re.M)  # not root
    assert re.search(r'^ENTRYPOINT \["commerce-jobs"\]$', dockerfile, re.M)  # its argv: tests/unit/test_image_argv.py
    final_stage = dockerfile.split("\nFROM ")[-1]
    assert not re.search(r"pip install|apt-get|gcc", final_stage)  # no build tools in the final layer
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run([str(venv / "bin/pip"), "install", "--quiet", "--disable-pip-version-check", str(REPO)],
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert install.returncode == 0, install.stderr
    help_text = subprocess.run([str(venv / "bin/commerce-jobs"), "run", "--help"], capture_output=True, text=True,
                               check=True).stdout  # fmt: skip
    assert "--liveness" in help_text


@pytest.fixture(scope="module")
def lua_health() -> Any:
    lupa = pytest.importorskip("lupa")

    def health(script: str, obj: dict[str, Any]) -> tuple[str, str]:
        lua = lupa.LuaRuntime(unpack_returned_tuples=True)
        lua.globals().obj = lua.table_from(obj, recursive=True)
        result = lua.execute((REPO / "manifests" / "argocd" / script).read_text())
        return str(result["status"]), str(result["message"])

    return health


def test_the_argocd_health_checks_judge_real_objects(
    lua_health: Any, cjobs: CommerceJobs, cluster: Cluster, namespace: str
) -> None:
    cjobs.create("healthy", command="silver:import", podAnnotations=sim())
    cjobs.create("broken", command="silver:import", podAnnotations=sim(exit_code=3))
    cjobs.create("busy", command="silver:import", podAnnotations=sim(duration="10m"))
    assert lua_health("commercejob-health.lua", cjobs.wait_final("healthy"))[0] == "Healthy"
    status, message = lua_health("commercejob-health.lua", cjobs.wait_final("broken"))
    assert (status, message) == ("Degraded", "Failed: silver:import failed with exit code 3")
    assert lua_health("commercejob-health.lua", cjobs.wait_state("busy", "Running"))[0] == "Progressing"
    assert lua_health("commercejob-health.lua", {"metadata": {"name": "new"}})[0] == "Progressing"

    custom = client.CustomObjectsApi(cluster.api)
    for name, schedule in (("good", "@daily"), ("bad", "61 * * * *")):
        body = {"apiVersion": "commercejobs.dev/v1alpha1", "kind": "CommerceCronJob", "metadata": {"name": name},
                "spec": {"schedule": schedule, "command": "a:b"}}  # fmt: skip
        custom.create_namespaced_custom_object("commercejobs.dev", "v1alpha1", namespace, "commercecronjobs", body)
    list_crons = lambda **kw: custom.list_namespaced_custom_object(  # noqa: E731
        "commercejobs.dev", "v1alpha1", namespace, "commercecronjobs", **kw
    )
    ready = lambda o: any(c["type"] == "Ready" for c in (o.get("status") or {}).get("conditions") or [])  # noqa: E731
    assert lua_health("commercecronjob-health.lua", wait_for(list_crons, "good", ready))[0] == "Healthy"
    status, message = lua_health("commercecronjob-health.lua", wait_for(list_crons, "bad", ready))
    assert status == "Degraded"
    assert message.startswith("InvalidSchedule: ")


def test_leader_election_is_on_with_a_lease_role_limited_by_name(helm: Path) -> None:
    objects = kinds(template(helm, "--set=replicaCount=2").stdout)
    args = objects["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--leader-election" in args
    assert "--standalone" not in args
    assert {"--lease-name=shop-jobs-commerce-jobs", "--lease-namespace=shop"} <= set(args)
    (role,) = [r for r in objects["Role"] if r["metadata"]["name"].endswith("-leader-election")]
    assert role["metadata"]["namespace"] == "shop"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["shop-jobs-commerce-jobs"],
         "verbs": ["get", "update"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]  # fmt: skip


def test_lease_timings_that_would_let_two_replicas_act_are_refused_at_render(helm: Path) -> None:
    """Else the operator would exit 2 at start (LeaseTimings), and only the pod's log would say why."""
    result = template(helm, "--set=leaderElection.renewDeadlineSeconds=20")
    assert result.returncode != 0
    assert "leaderElection needs retryPeriodSeconds < renewDeadlineSeconds < leaseDurationSeconds" in result.stderr
    unused = template(helm, "--set=leaderElection.enabled=false", "--set=leaderElection.renewDeadlineSeconds=20")
    assert unused.returncode == 0  # without leader election the timings are not used


def test_two_replicas_without_leader_election_are_refused(helm: Path) -> None:
    result = template(helm, "--set=replicaCount=2", "--set=leaderElection.enabled=false")
    assert result.returncode != 0
    assert "replicaCount > 1 needs leaderElection.enabled" in result.stderr
    single = kinds(template(helm, "--set=leaderElection.enabled=false").stdout)
    assert "--standalone" in single["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["args"]


def test_the_console_with_two_replicas_is_refused(helm: Path) -> None:
    """Only the Lease holder serves the console, so a standby's console readiness probe would never pass."""
    result = template(helm, "--set=replicaCount=2", "--set=console.enabled=true")
    assert result.returncode != 0
    assert "console.enabled needs replicaCount: 1" in result.stderr
