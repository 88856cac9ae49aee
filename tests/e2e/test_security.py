"""Security end to end: the command allowlist, secrets kept out of what the operator writes, restricted pods, the
production values, and the example roles (viewer, shop operator with its ValidatingAdmissionPolicy).

The session's operator runs with ``allowedCommands: ["[!_]*"]`` (tests/e2e/conftest.py): commands that begin with an
underscore are outside the allowlist.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from commerce_jobs.config import OperatorConfig
from commerce_jobs.policy import refusal
from tests.cjobs import GROUP, VERSION, CommerceJobs, condition, ready_reason, sim, state
from tests.conftest import Cluster
from tests.e2e.conftest import REPO, kubectl
from tests.kube import wait_for

pytestmark = pytest.mark.usefixtures("simulated_cluster")

CHART = REPO / "charts" / "commerce-jobs"
EXAMPLES = REPO / "manifests" / "examples" / "rbac"


def jobs_of(batch: client.BatchV1Api, namespace: str) -> list[client.V1Job]:
    return batch.list_namespaced_job(namespace).items


def assert_refused(cjobs: CommerceJobs, core: client.CoreV1Api, name: str, message: str) -> dict[str, Any]:
    final = cjobs.wait_final(name)
    assert state(final) == "Failed"
    assert final["status"]["reason"] == "CommandNotAllowed"
    succeeded = condition(final, "Succeeded")
    assert (succeeded["status"], succeeded["reason"]) == ("False", "CommandNotAllowed")
    assert message in succeeded["message"]
    assert final["status"]["attempts"] == 0
    assert "jobName" not in final["status"]
    # The Event follows the status write: wait for it.
    wanted = (name, "CommandNotAllowed")
    wait_for(core.list_namespaced_event, "", lambda e: (e.involved_object.name, e.reason) == wanted,
             namespace=cjobs.namespace)  # fmt: skip
    return final


def test_a_command_outside_the_allowlist_is_refused_and_never_runs(
    cjobs: CommerceJobs, core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str
) -> None:
    cjobs.create("drop", command="_doctrine:database:drop", params=["--force"], podAnnotations=sim())
    # A dependent outside it refuses the whole tree before anything runs, the parent included.
    cjobs.create(
        "import", command="silver:import", podAnnotations=sim(),
        dependingJobs=[{"name": "then-drop", "command": "silver:index",
                        "dependingJobs": [{"name": "drop", "command": "_doctrine:database:drop"}]}],
    )  # fmt: skip
    # An allowed name with a replaced console would run anything: refused as well.
    cjobs.create("shell", command="silver:import", consoleCommand=["sh", "-c", "id", "--"], podAnnotations=sim())
    assert_refused(cjobs, core, "drop", "spec.command '_doctrine:database:drop' is not allowed")
    parent = assert_refused(
        cjobs, core, "import", "spec.dependingJobs[0].dependingJobs[0].command '_doctrine:database:drop' is not"
    )
    assert parent["status"]["dependents"] == [
        {"name": "import-then-drop", "state": "Canceled"}, {"name": "import-then-drop-drop", "state": "Canceled"}
    ]  # fmt: skip
    assert_refused(cjobs, core, "shell", "spec.consoleCommand may not be changed")
    assert jobs_of(batch, namespace) == []
    assert [j["metadata"]["name"] for j in cjobs.list()] == ["drop", "import", "shell"]  # no dependent created
    # An allowed command still runs.
    cjobs.create("allowed", command="silver:import", podAnnotations=sim())
    assert state(cjobs.wait_final("allowed")) == "Finished"


def test_a_template_with_a_command_outside_the_allowlist_is_refused_when_started(
    cjobs: CommerceJobs, core: client.CoreV1Api, batch: client.BatchV1Api, custom: client.CustomObjectsApi,
    namespace: str,
) -> None:  # fmt: skip
    template = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CommerceJobTemplate", "metadata": {"name": "purge"},
                "spec": {"command": "_shop:purge-all", "podAnnotations": sim()}}  # fmt: skip
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "commercejobtemplates", template)
    cjobs.create("purge-now", templateRef={"name": "purge"})
    final = assert_refused(cjobs, core, "purge-now", "spec.command '_shop:purge-all' is not allowed")
    assert final["spec"]["command"] == "_shop:purge-all"  # taken from the template, then refused
    assert jobs_of(batch, namespace) == []


def test_a_commercecronjob_outside_the_allowlist_gets_no_cronjob(
    cluster: Cluster, operator: object, custom: client.CustomObjectsApi, batch: client.BatchV1Api, namespace: str
) -> None:
    def cron(name: str, command: str) -> dict[str, Any]:
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CommerceCronJob", "metadata": {"name": name},
                "spec": {"schedule": "*/5 * * * *", "command": command}}  # fmt: skip

    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "commercecronjobs", cron("wipe", "_cache:wipe"))
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "commercecronjobs", cron("refresh", "ibexa:commerce:refresh-cache")
    )
    list_fn = custom.list_namespaced_custom_object

    wipe = wait_for(list_fn, "wipe", lambda o: ready_reason(o) is not None, group=GROUP, version=VERSION,
                    namespace=namespace, plural="commercecronjobs")  # fmt: skip
    ready = condition(wipe, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "CommandNotAllowed")
    assert "spec.command '_cache:wipe' is not allowed" in ready["message"]
    wait_for(list_fn, "refresh", lambda o: ready_reason(o) == "Scheduled", group=GROUP, version=VERSION,
             namespace=namespace, plural="commercecronjobs")  # fmt: skip
    assert [c.metadata.name for c in batch.list_namespaced_cron_job(namespace).items] == ["refresh"]


def test_secrets_never_appear_in_status_events_or_the_operator_log(
    cluster: Cluster, cjobs: CommerceJobs, core: client.CoreV1Api, namespace: str
) -> None:
    secret_value = f"s3cr3t-{uuid.uuid4().hex}"
    env_value = f"plain-{uuid.uuid4().hex}"
    log = REPO / "test-artifacts" / "operator.log"
    offset = log.stat().st_size
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="shop-database"), string_data={"DATABASE_PASSWORD": secret_value}
    ))  # fmt: skip
    env = [
        {"name": "APP_ENV", "value": env_value},
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "shop-database", "key": "DATABASE_PASSWORD"}}},
    ]
    env_from = [{"secretRef": {"name": "shop-database"}}]
    # One that succeeds, one that fails and is retried, one that the apiserver refuses (an env name it rejects).
    cjobs.create("ok", command="silver:import", env=env, envFrom=env_from, podAnnotations=sim(output="done\n"))
    cjobs.create("fails", command="silver:import", env=env, envFrom=env_from, maxRetries=1, retryBackoffSeconds=1,
                 podAnnotations=sim(exit_code=3, output="boom\n"))  # fmt: skip
    cjobs.create("refused", command="silver:import", envFrom=env_from,
                 env=[*env, {"name": "NOT=A=NAME", "value": env_value}], podAnnotations=sim())  # fmt: skip
    finals = {name: cjobs.wait_final(name) for name in ("ok", "fails", "refused")}
    assert [state(finals[n]) for n in ("ok", "fails", "refused")] == ["Finished", "Failed", "Failed"]
    assert finals["refused"]["status"]["reason"] == "InvalidSpec"
    assert "the apiserver refused the Job" in finals["refused"]["status"]["message"]

    written = [yaml.safe_dump(final["status"]) for final in finals.values()]
    written += [str(e.to_dict()) for e in core.list_namespaced_event(namespace).items]
    written.append(log.read_bytes()[offset:].decode(errors="replace"))
    for text in written:
        assert secret_value not in text
        assert env_value not in text


def test_job_pods_are_admitted_by_a_namespace_that_enforces_restricted(
    cjobs: CommerceJobs, core: client.CoreV1Api, namespace: str
) -> None:
    core.patch_namespace(namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    # The namespace does enforce it: a pod without the restricted settings is refused.
    plain = client.V1Pod(metadata=client.V1ObjectMeta(name="plain"),
                         spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="shop:1")]))  # fmt: skip
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(namespace, plain, dry_run="All")
    assert refused.value.status == 403
    assert 'violates PodSecurity \\"restricted:latest\\"' in refused.value.body  # JSON-escaped
    cjobs.create("restricted", command="silver:import", podAnnotations=sim(output="ran\n"))
    final = cjobs.wait_final("restricted")
    assert state(final) == "Finished"
    assert final["status"]["output"] == "ran\n"


POD_SECURITY = {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 2000, "supplementalGroups": [3000]}
CONTAINER_SECURITY = {"readOnlyRootFilesystem": True, "runAsUser": 1001, "appArmorProfile": {"type": "RuntimeDefault"}}


def assert_pod_carries_the_security_contexts(pod_spec: dict[str, Any]) -> None:
    # Laid over the restricted baseline, which they do not loosen here.
    assert pod_spec["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"},
                                           **POD_SECURITY}  # fmt: skip
    assert pod_spec["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, **CONTAINER_SECURITY,
    }  # fmt: skip


def test_a_jobs_security_contexts_reach_its_pod_from_a_job_a_template_and_a_crontab_task(
    cluster: Cluster, cjobs: CommerceJobs, core: client.CoreV1Api, batch: client.BatchV1Api, namespace: str
) -> None:
    """spec.podSecurityContext and spec.securityContext, as the README documents them: kept by the schema of each
    kind (not pruned), and merged into the Job's pod template, so the pod runs with them."""
    contexts = {"podSecurityContext": POD_SECURITY, "securityContext": CONTAINER_SECURITY}
    api = client.ApiClient()
    custom = client.CustomObjectsApi(cluster.api)
    template = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CommerceJobTemplate", "metadata": {"name": "secured"},
                "spec": {"command": "silver:import", **contexts}}  # fmt: skip
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "commercejobtemplates", template)
    cron = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CommerceCronJob", "metadata": {"name": "secured-cron"},
            "spec": {"schedule": "@yearly", "command": "ibexa:commerce:refresh-cache", **contexts}}  # fmt: skip
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "commercecronjobs", cron)
    created = cjobs.create("secured", command="silver:import", **contexts)
    cjobs.create("from-template", templateRef={"name": "secured"})

    assert {k: created["spec"][k] for k in contexts} == contexts  # not pruned by the apiserver
    for name in ("secured", "from-template"):
        assert state(cjobs.wait_final(name)) == "Finished"
        job = batch.read_namespaced_job(f"{name}-1", namespace)
        assert_pod_carries_the_security_contexts(api.sanitize_for_serialization(job.spec.template.spec))
        (pod,) = core.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={name}-1").items
        assert_pod_carries_the_security_contexts(api.sanitize_for_serialization(pod.spec))
    cronjob = wait_for(batch.list_namespaced_cron_job, "secured-cron", lambda _: True, namespace=namespace)
    pod_template = api.sanitize_for_serialization(cronjob.spec.job_template.spec.template.spec)
    assert_pod_carries_the_security_contexts(pod_template)

    # What Kubernetes refuses in a securityContext is refused when the Job is created, with the apiserver's message.
    cjobs.create("bad-context", command="silver:import", securityContext={"runAsUser": -1})
    refused = cjobs.wait_final("bad-context")
    assert (state(refused), refused["status"]["reason"]) == ("Failed", "InvalidSpec")
    assert "securityContext.runAsUser" in refused["status"]["message"]


# -- the chart's production values ------------------------------------------------------------------------------------
def test_the_production_values_lint_clean_and_turn_the_allowlist_on(helm: Path) -> None:
    production = str(CHART / "values-production.yaml")
    linted = subprocess.run([str(helm), "lint", "--strict", str(CHART), "-f", production],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert linted.returncode == 0, linted.stdout + linted.stderr
    rendered = subprocess.run([str(helm), "template", "shop-jobs", str(CHART), "-f", production],
                              capture_output=True, text=True, check=True).stdout  # fmt: skip
    (configmap,) = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ConfigMap"]
    config = OperatorConfig.from_dict(yaml.safe_load(configmap["data"]["config.yaml"]))
    console = ["php", "bin/console"]
    for command in ("silver:import", "ibexa:commerce:index-econtent-job", "ibexa:commerce:refresh-cache",
                    "ibexa:commerce:process-lost-orders", "ibexa:commerce:sessions", "ibexa:cron:run"):  # fmt: skip
        assert refusal({"command": command}, config.allowed_commands, console) is None, command
    for command in ("doctrine:database:drop", "cache:clear", "debug:container", "ibexa:reindex"):
        assert refusal({"command": command}, config.allowed_commands, console), command
    # The default values leave it off.
    default = subprocess.run([str(helm), "template", "shop-jobs", str(CHART)], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
    assert "allowedCommands" not in default
    wrong = subprocess.run([str(helm), "template", "x", str(CHART), "--set=allowedCommands=silver:*"],
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert wrong.returncode != 0
    assert "at '/allowedCommands': got string, want array" in wrong.stderr


# -- the example roles ------------------------------------------------------------------------------------------------
def as_user(cluster: Cluster, user: str, group: str) -> client.ApiClient:
    """An API client that the admin's credentials impersonate ``user`` of ``group`` with (as kubectl --as)."""
    api = client.ApiClient(cluster.api.configuration)
    api.set_default_header("Impersonate-User", user)
    api.set_default_header("Impersonate-Group", group)
    return api


def apply_examples(cluster: Cluster, namespace: str) -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        text = path.read_text().replace("namespace: shop", f"namespace: {namespace}")
        result = subprocess.run(
            [str(cluster.local.toolchain.path("kubectl") if cluster.local else "kubectl"),
             f"--kubeconfig={cluster.kubeconfig}", "apply", "--server-side", "-f", "-"],
            input=text, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode == 0, f"{path.name}: {result.stderr}"


def wait_policy_enforced(api: client.CustomObjectsApi, namespace: str, timeout: float = 30) -> None:
    """The apiserver loads a new ValidatingAdmissionPolicy asynchronously, and nothing reports when it did: ask with
    a dry run until it refuses (the Kubernetes e2e tests of VAP wait the same way)."""
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CommerceJob", "metadata": {"name": "probe"},
            "spec": {"command": "silver:import"}}  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            api.create_namespaced_custom_object(GROUP, VERSION, namespace, "commercejobs", body, dry_run="All")
        except ApiException as e:
            if e.status in (403, 422):
                return
            raise
        time.sleep(0.2)  # no watch tells when an admission policy takes effect
    raise TimeoutError(f"the ValidatingAdmissionPolicy was not enforced within {timeout}s")


def forbidden(call: Any) -> ApiException:
    with pytest.raises(ApiException) as refused:
        call()
    assert refused.value.status in (403, 422), refused.value.body
    return refused.value


def test_the_example_roles_let_viewers_read_and_shop_operators_only_start_templates(
    cluster: Cluster, cjobs: CommerceJobs, custom: client.CustomObjectsApi, namespace: str
) -> None:
    apply_examples(cluster, namespace)
    template = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CommerceJobTemplate", "metadata": {"name": "import-solr"},
                "spec": {"command": "silver:import", "params": ["tmp"], "podAnnotations": sim()}}  # fmt: skip
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "commercejobtemplates", template)

    def job(name: str, **spec: Any) -> dict[str, Any]:
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CommerceJob", "metadata": {"name": name}, "spec": spec}

    # A viewer reads jobs, templates, crontab tasks and the output, and changes nothing.
    viewer = client.CustomObjectsApi(as_user(cluster, "vera", "shop-viewers"))
    assert viewer.list_namespaced_custom_object(GROUP, VERSION, namespace, "commercejobs")["items"] == []
    assert len(viewer.list_namespaced_custom_object(GROUP, VERSION, namespace, "commercejobtemplates")["items"]) == 1
    forbidden(lambda: viewer.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "commercejobs", job("v", templateRef={"name": "import-solr"})))  # fmt: skip
    core_viewer = client.CoreV1Api(as_user(cluster, "vera", "shop-viewers"))
    assert forbidden(lambda: core_viewer.list_namespaced_secret(namespace)).status == 403

    # A shop operator starts a template, and nothing else.
    operator = client.CustomObjectsApi(as_user(cluster, "otto", "shop-operators"))
    wait_policy_enforced(operator, namespace)
    operator.create_namespaced_custom_object(GROUP, VERSION, namespace, "commercejobs",
                                             job("started", templateRef={"name": "import-solr"}))  # fmt: skip
    for name, spec, message in [
        ("own-command", {"command": "silver:import"}, "may only start a CommerceJobTemplate"),
        ("override", {"templateRef": {"name": "import-solr"}, "command": "silver:export"},
         "may only start a CommerceJobTemplate"),
        ("env", {"templateRef": {"name": "import-solr"}, "env": [{"name": "APP_ENV", "value": "dev"}]},
         "may only start a CommerceJobTemplate"),
        ("image", {"templateRef": {"name": "import-solr"}, "image": "evil:1"}, "may only start a CommerceJobTemplate"),
    ]:  # fmt: skip
        refused = forbidden(lambda n=name, s=spec: operator.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "commercejobs", job(n, **s)))  # fmt: skip
        assert message in refused.body, name
    mine = {**template, "metadata": {"name": "mine"}}
    forbidden(lambda: operator.create_namespaced_custom_object(GROUP, VERSION, namespace, "commercejobtemplates", mine))
    forbidden(lambda: operator.delete_namespaced_custom_object(GROUP, VERSION, namespace, "commercejobs", "started"))
    # The job that the shop operator started runs the template, as the operator's ServiceAccount fills it in.
    final = cjobs.wait_final("started")
    assert state(final) == "Finished"
    assert final["spec"]["command"] == "silver:import"
    assert [j["metadata"]["name"] for j in cjobs.list()] == ["started"]


def test_kubectl_can_i_matches_the_documented_rights(cluster: Cluster, namespace: str) -> None:
    apply_examples(cluster, namespace)

    def can(group: str, verb: str, resource: str) -> bool:
        result = kubectl(cluster, "auth", "can-i", verb, resource, f"-n={namespace}", "--as=someone",
                         f"--as-group={group}", check=False)  # fmt: skip
        return result.stdout.strip() == "yes"

    assert can("shop-viewers", "list", "commercejobs.commercejobs.dev")
    assert can("shop-viewers", "get", "pods/log")
    assert not can("shop-viewers", "create", "commercejobs.commercejobs.dev")
    assert can("shop-operators", "create", "commercejobs.commercejobs.dev")
    assert not can("shop-operators", "patch", "commercejobs.commercejobs.dev")
    assert not can("shop-operators", "create", "commercejobtemplates.commercejobs.dev")
    assert not can("shop-operators", "get", "secrets")
