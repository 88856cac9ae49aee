import pytest

from commerce_jobs.config import OperatorConfig
from commerce_jobs.jobbuild import InvalidSpec, effective_spec, job_manifest, job_name

CONFIG = OperatorConfig(
    job_defaults={
        "image": "shop:1",
        "workingDir": "/var/www/html",
        "env": [{"name": "APP_ENV", "value": "prod"}, {"name": "DEBUG", "value": "0"}],
        "envFrom": [{"secretRef": {"name": "shop-db"}}],
        "podAnnotations": {"team": "shop"},
    }
)


def cjob(name: str = "import", **spec: object) -> dict:
    return {
        "metadata": {"name": name, "namespace": "shop", "uid": "uid-1"},
        "spec": {"command": "silver:import", **spec},
    }


HOSTILE_PARAMS = [
    "; rm -rf /", "$(whoami)", "`id`", "a b", "new\nline", "'single'", '"double"', "\\", "&& true | cat > x",
    "*", "~", "", "-", "--env=prod", "ünïcødé 😀", "x" * 4096,
]  # fmt: skip


def test_the_command_is_an_argv_list_never_a_shell_string() -> None:
    container = job_manifest(cjob(params=HOSTILE_PARAMS), 1, CONFIG)["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["php", "bin/console", "silver:import", *HOSTILE_PARAMS]
    assert "args" not in container


def test_a_custom_console_command_prefixes_the_argv() -> None:
    manifest = job_manifest(cjob(consoleCommand=["/usr/bin/php", "-d", "memory_limit=2G", "bin/console"]), 1, CONFIG)
    assert manifest["spec"]["template"]["spec"]["containers"][0]["command"][:4] == [
        "/usr/bin/php", "-d", "memory_limit=2G", "bin/console"
    ]  # fmt: skip


def test_one_job_per_attempt_owned_by_the_commercejob_without_kubernetes_retries() -> None:
    manifest = job_manifest(cjob(maxRuntimeSeconds=600), 2, CONFIG)
    meta, spec = manifest["metadata"], manifest["spec"]
    assert meta["name"] == "import-2"
    assert (
        meta["ownerReferences"][0] | {"uid": "uid-1", "controller": True, "kind": "CommerceJob"}
        == (meta["ownerReferences"][0])
    )
    assert meta["labels"]["commercejobs.dev/attempt"] == "2"
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "commerce-jobs"
    assert spec["backoffLimit"] == 0
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["template"]["metadata"]["labels"]["commercejobs.dev/job-name"] == "import"


def test_the_max_runtime_is_the_pods_deadline_and_the_jobs_comes_after_the_kill_and_its_grace_period() -> None:
    """The kubelet stops a pod at its activeDeadlineSeconds and keeps it, log and all; a Job's activeDeadlineSeconds
    makes the Job controller delete the pod at once. So the Job's deadline, a safety net for a pod that never reached
    a node, must come only after the kubelet's stop (SIGTERM, then SIGKILL after the 30 s grace period) is over."""
    spec = job_manifest(cjob(maxRuntimeSeconds=600), 1, CONFIG)["spec"]
    pod_spec = spec["template"]["spec"]
    assert pod_spec["activeDeadlineSeconds"] == 600
    assert "terminationGracePeriodSeconds" not in pod_spec  # Kubernetes' default: the 30 s counted on below
    assert spec["activeDeadlineSeconds"] >= 600 + 30 + 10
    unlimited = job_manifest(cjob(), 1, CONFIG)["spec"]
    assert "activeDeadlineSeconds" not in unlimited
    assert "activeDeadlineSeconds" not in unlimited["template"]["spec"]


def test_job_names_fit_a_label_value_and_stay_distinct() -> None:
    long_a, long_b = "a" * 250, "a" * 249 + "b"
    names = {job_name(long_a, 1), job_name(long_b, 1), job_name(long_a, 12)}
    assert len(names) == 3
    assert all(len(n) <= 63 for n in names)
    assert job_name(long_a, 12).endswith("-12")
    assert job_name(long_a, 1) == job_name(long_a, 1)  # deterministic: a retried reconcile makes no second Job


def test_defaults_fill_what_the_job_leaves_out_and_the_job_wins() -> None:
    spec = effective_spec(
        {"command": "x", "image": "shop:2", "env": [{"name": "DEBUG", "value": "1"}],
         "envFrom": [{"configMapRef": {"name": "extra"}}], "podAnnotations": {"a": "b"}},
        CONFIG.job_defaults,
    )  # fmt: skip
    assert spec["image"] == "shop:2"
    assert spec["workingDir"] == "/var/www/html"
    assert spec["env"] == [{"name": "APP_ENV", "value": "prod"}, {"name": "DEBUG", "value": "1"}]
    assert spec["envFrom"] == [{"secretRef": {"name": "shop-db"}}, {"configMapRef": {"name": "extra"}}]
    assert spec["podAnnotations"] == {"team": "shop", "a": "b"}


def test_pods_are_restricted_unless_loosened() -> None:
    pod = job_manifest(cjob(), 1, CONFIG)["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}
    }  # fmt: skip
    loosened = job_manifest(cjob(podSecurityContext={"runAsNonRoot": False}), 1, CONFIG)
    assert loosened["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is False


def test_a_job_without_an_image_anywhere_is_invalid() -> None:
    with pytest.raises(InvalidSpec, match="no image"):
        job_manifest(cjob(), 1, OperatorConfig())


def test_mounts_of_one_volume_at_two_paths_both_survive_the_merge() -> None:
    mounts = [
        {"name": "var", "mountPath": "/var/www/var/cache", "subPath": "cache"},
        {"name": "var", "mountPath": "/var/www/var/log", "subPath": "log"},
    ]
    job_mount = {"name": "logs", "mountPath": "/var/www/var/log"}
    spec = effective_spec({"command": "x", "volumeMounts": [job_mount]}, {"image": "shop:1", "volumeMounts": mounts})
    assert spec["volumeMounts"] == [mounts[0], job_mount]  # the job's mount replaces the default at its path


@pytest.mark.parametrize(
    ("spec", "defaults", "message"),
    [
        ({"env": [{"value": "x"}]}, {}, r"spec\.env\[0\] has no name"),
        ({}, {"volumes": [{"emptyDir": {}}]}, r"jobDefaults\.volumes\[0\] has no name"),
        ({"volumeMounts": [{"name": "var"}]}, {}, r"spec\.volumeMounts\[0\] has no mountPath"),
    ],
)
def test_list_items_without_their_key_make_the_spec_invalid_not_the_reconcile_crash(
    spec: dict, defaults: dict, message: str
) -> None:
    with pytest.raises(InvalidSpec, match=message):
        job_manifest(cjob(**spec), 1, OperatorConfig(job_defaults={"image": "shop:1", **defaults}))
