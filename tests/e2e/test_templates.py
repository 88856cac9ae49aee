"""CommerceJobTemplates: the Back Office's configured jobs, started with one command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.cjobs import CommerceJobs, sim, state
from tests.conftest import Cluster
from tests.e2e.conftest import REPO, commerce_jobs, kubectl, kubectl_apply

pytestmark = pytest.mark.usefixtures("simulated_cluster")


def apply_templates(cluster: Cluster, namespace: str, tmp_path: Path, annotate: dict[str, dict[str, str]]) -> None:
    """The seed's add_jobs, converted by `commerce-jobs import-config`, with simulation annotations added."""
    converted = commerce_jobs(cluster, "import-config", str(REPO / "examples/platform/add_jobs.yaml"), "-n", namespace)
    assert converted.returncode == 0, converted.stderr
    templates = list(yaml.safe_load_all(converted.stdout))
    for template in templates:
        template["spec"]["podAnnotations"] = annotate["parent"]
        for child in template["spec"].get("dependingJobs", []):
            child["podAnnotations"] = annotate["child"]
    path = tmp_path / "templates.yaml"
    path.write_text(yaml.safe_dump_all(templates))
    kubectl(cluster, "apply", "-f", str(path))


def test_a_template_started_from_the_cli_runs_with_its_dependent(
    cluster: Cluster, cjobs: CommerceJobs, namespace: str, tmp_path: Path
) -> None:
    apply_templates(cluster, namespace, tmp_path, {
        "parent": sim(duration="1s", output="Imported 1250 products\n"), "child": sim(output="indexed\n"),
    })  # fmt: skip

    started = commerce_jobs(cluster, "start", "import-solr", "-n", namespace, "--follow")

    assert started.returncode == 0, started.stdout + started.stderr
    lines = started.stdout.splitlines()
    name = lines[0].split()[0].split("/")[1]
    assert lines[0] == f"commercejob.commercejobs.dev/{name} created from template import-solr"
    assert f"{name}: Running" in lines
    assert "Imported 1250 products" in lines
    assert f"{name}: Finished, exit code 0" in lines
    assert "indexed" in lines
    assert f"{name}-index-solr: Finished, exit code 0" in lines
    job = cjobs.get(name)
    # The template's fields were copied into the job before it started, so it keeps them if the template changes.
    assert job["spec"]["command"] == "silver:import"
    assert job["spec"]["params"] == ["tmp"]
    assert job["spec"]["templateRef"] == {"name": "import-solr"}
    assert job["metadata"]["labels"]["commercejobs.dev/template"] == "import-solr"


def test_follow_after_a_retry_shows_each_attempts_output_and_each_final_state_once(
    cluster: Cluster, cjobs: CommerceJobs, namespace: str
) -> None:
    # Attempt 1 exits 3, attempt 2 succeeds; each prints the same line, so it must show up twice.
    template = {
        "apiVersion": "commercejobs.dev/v1alpha1", "kind": "CommerceJobTemplate", "metadata": {"name": "flaky-import"},
        "spec": {"command": "silver:import", "params": ["tmp"], "maxRetries": 1, "retryBackoffSeconds": 1,
                 "podAnnotations": sim(exit_code=3, exit_code_attempt_2="0", duration="2s",
                                       output="Imported 1250 products\n")},
    }  # fmt: skip
    applied = kubectl_apply(cluster, namespace, yaml.safe_dump(template))
    assert applied.returncode == 0, applied.stderr

    started = commerce_jobs(cluster, "start", "flaky-import", "-n", namespace, "--follow")

    assert started.returncode == 0, started.stdout + started.stderr
    lines = started.stdout.splitlines()
    name = lines[0].split()[0].split("/")[1]
    outputs = [i for i, line in enumerate(lines) if line == "Imported 1250 products"]
    retry = next(i for i, line in enumerate(lines) if line.startswith(f"{name}: Running (RetryBackoff: attempt 1"))
    final = lines.index(f"{name}: Finished, exit code 0")
    assert len(outputs) == 2, started.stdout  # attempt 1's pod, then attempt 2's
    assert outputs[0] < retry < outputs[1] < final, started.stdout
    assert lines.count(f"{name}: Finished, exit code 0") == 1
    assert f"{name}: Finished" not in lines  # the final state once, not once more without its exit code
    assert (cjobs.get(name)["status"]["attempts"], cjobs.get(name)["status"]["state"]) == (2, "Finished")


def test_the_kubectl_plugin_starts_a_template(
    cluster: Cluster, cjobs: CommerceJobs, namespace: str, tmp_path: Path
) -> None:
    apply_templates(cluster, namespace, tmp_path, {"parent": sim(), "child": sim(exit_code=4, output="no cores\n")})
    kubectl_bin = str(cluster.local.toolchain.path("kubectl")) if cluster.local else "kubectl"
    # kubectl finds the plugin `kubectl-commercejob` on PATH (the package installs it) and passes its environment.
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "KUBECONFIG": str(cluster.kubeconfig),
    }
    result = subprocess.run(
        [kubectl_bin, "commercejob", "start", "import-solr", "-n", namespace, "--wait"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    # The dependent failed, so the whole run did not succeed.
    assert result.returncode == 1, result.stdout + result.stderr
    assert "-index-solr: Failed, exit code 4" in result.stdout


def test_starting_a_missing_template_says_so(cluster: Cluster, crds: None, namespace: str) -> None:
    result = commerce_jobs(cluster, "start", "no-such-template", "-n", namespace)
    assert result.returncode == 1
    assert "no CommerceJobTemplate 'no-such-template'" in result.stderr


def test_a_job_whose_template_is_missing_waits_pending(cjobs: CommerceJobs) -> None:
    cjobs.create("orphan", templateRef={"name": "not-there-yet"})
    pending = cjobs.wait("orphan", lambda o: (o.get("status") or {}).get("reason") == "TemplateNotFound")
    assert state(pending) == "Pending"
    assert "CommerceJobTemplate 'not-there-yet' not found" in pending["status"]["message"]
