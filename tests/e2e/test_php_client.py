"""The PHP client (clients/php) against the real apiserver and the operator: PHP scripts run by the host's php, as a
shop's code would start, wait for and cancel jobs (issue 17).

Each script prints one JSON line: what PHP saw (results, or the exception's class and what it names). The test then
checks the same jobs through the apiserver with the Python client.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.cjobs import GROUP, VERSION, CommerceJobs, sim, state
from tests.conftest import Cluster
from tests.e2e.conftest import REPO, kubectl
from tests.kube import wait_deleted

pytestmark = pytest.mark.usefixtures("simulated_cluster")

CLIENT_AUTOLOAD = REPO / "clients" / "php" / "autoload.php"
START_IMPORT = REPO / "clients" / "php" / "examples" / "StartImportCommand.php"
SYMFONY_CONSOLE = Path("/usr/share/php/Symfony/Component/Console/autoload.php")  # Debian's php-symfony-console
ROLE = REPO / "manifests" / "examples" / "rbac" / "shop-php-client.yaml"
INSTALL = "apt-get install php8.2-cli php8.2-curl php-symfony-console  (or: make system-deps)"

# Every script starts so: the client, a Client for the test's namespace, and out() for its one line of JSON.
PREAMBLE = r"""<?php
declare(strict_types=1);
require getenv('CLIENT_AUTOLOAD');
use CommerceJobs\Client\{Client, CommerceJob, DependingJob, Job};
use CommerceJobs\Client\Exception\CommerceJobsException;
$client = Client::fromEnvironment(getenv('CJ_NAMESPACE') ?: null);
// kwok's simulated pod of a job with these annotations runs for 10 minutes (README: Simulated pods).
const RUNS_10_MIN = ['podAnnotations', ['sim.commercejobs.dev/duration' => '10m']];
function out(array $data): void { echo json_encode($data, JSON_THROW_ON_ERROR), "\n"; }
function job(CommerceJob $j): array {
    return ['name' => $j->getName(), 'uid' => $j->getUid(), 'state' => $j->getState(), 'exitCode' => $j->getExitCode(),
            'dependents' => $j->getDependents()];
}
function failure(CommerceJobsException $e): array {
    $named = [];
    foreach (['getField', 'getFields', 'getVerb', 'getResource', 'getUser', 'getReason', 'isRbac'] as $m) {
        if (method_exists($e, $m)) { $named[$m] = $e->$m(); }
    }
    return ['exception' => (new ReflectionClass($e))->getShortName(), 'message' => $e->getMessage()] + $named;
}
"""


@pytest.fixture(scope="session")
def php() -> str:
    path = shutil.which("php")
    if path is None:
        pytest.fail(f"php is missing: {INSTALL}")
    if "curl" not in subprocess.run([path, "-m"], capture_output=True, text=True, check=True).stdout.split():
        pytest.fail(f"php's curl extension is missing: {INSTALL}")
    return path


def run_php(
    php: str, kubeconfig: Path, code: str, namespace: str | None = None, timeout: float = 120
) -> dict[str, Any]:
    """Runs PREAMBLE + code with KUBECONFIG (outside a pod: the kubeconfig's token and CA) and returns its JSON."""
    result = subprocess.run([php], input=PREAMBLE + code, capture_output=True, text=True, check=False,
                            env=php_env(kubeconfig, namespace), timeout=timeout)  # fmt: skip
    assert result.returncode == 0, f"php exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    lines = result.stdout.strip().splitlines()
    assert lines, f"the script printed nothing:\n{result.stderr}"
    output: dict[str, Any] = json.loads(lines[-1])
    return output


def php_env(kubeconfig: Path, namespace: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_SERVICE_")}
    env.update(KUBECONFIG=str(kubeconfig), CLIENT_AUTOLOAD=str(CLIENT_AUTOLOAD), CJ_NAMESPACE=namespace or "")
    return env


def test_a_jms_style_job_with_a_depending_job_runs_and_is_waited_for(
    php: str, cluster: Cluster, cjobs: CommerceJobs, namespace: str
) -> None:
    started = time.monotonic()
    seen = run_php(php, cluster.kubeconfig, r"""
        $job = new Job('silver:import', ['tmp', '--env=prod'], true, 'imports', Job::PRIORITY_HIGH);
        $job->setMaxRuntime(600)->setMaxRetries(2)->setLabel('Import from eZ');
        $job->addDependingJob((new DependingJob('index', 'ibexa:commerce:index-econtent-job'))->setMaxRetries(1));
        $created = $client->create($job);
        $tree = $client->waitTree($created->getName(), 90);
        out(['created' => $created->getName(), 'name' => $job->getName(), 'tree' => array_map('job', $tree)]);
    """, namespace)  # fmt: skip
    elapsed = time.monotonic() - started

    name = seen["created"]
    assert name.startswith("silver-import-")
    assert seen["name"] == name  # the Job knows its CommerceJob, as a JMS Job knows its id after the flush
    assert [(j["name"], j["state"], j["exitCode"]) for j in seen["tree"]] == [
        (name, "Finished", 0), (f"{name}-index", "Finished", 0),
    ]  # fmt: skip
    job = cjobs.get(name)
    assert job["spec"] == {
        "command": "silver:import", "params": ["tmp", "--env=prod"], "queue": "imports", "priority": 5,
        "maxRuntimeSeconds": 600, "maxRetries": 2, "label": "Import from eZ",
        "dependingJobs": [{"name": "index", "command": "ibexa:commerce:index-econtent-job", "maxRetries": 1}],
    }  # fmt: skip
    assert state(cjobs.get(f"{name}-index")) == "Finished"
    print(f"PHP: create, then wait for the job and its dependent: {elapsed:.1f} s (php start-up included)")


def test_a_job_from_a_template_takes_the_templates_fields(
    php: str, cluster: Cluster, cjobs: CommerceJobs, custom: client.CustomObjectsApi, namespace: str
) -> None:
    template = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CommerceJobTemplate", "metadata": {"name": "import-solr"},
                "spec": {"command": "silver:import", "params": ["tmp"], "queue": "imports",
                         "podAnnotations": sim(output="Imported 1250 products\n")}}  # fmt: skip
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "commercejobtemplates", template)

    seen = run_php(php, cluster.kubeconfig, r"""
        $created = $client->create(Job::fromTemplate('import-solr')->setPriority(Job::PRIORITY_LOW));
        $final = $client->wait($created->getName(), 90);
        out(job($final) + ['output' => $final->getOutput()]);
    """, namespace)  # fmt: skip

    assert (seen["state"], seen["output"]) == ("Finished", "Imported 1250 products\n")
    spec = cjobs.get(seen["name"])["spec"]
    assert spec["templateRef"] == {"name": "import-solr"}
    assert (spec["command"], spec["params"], spec["queue"]) == ("silver:import", ["tmp"], "imports")
    assert spec["priority"] == -5  # set by PHP: it wins over the template


def test_the_same_idempotency_key_twice_is_one_job(
    php: str, cluster: Cluster, cjobs: CommerceJobs, namespace: str
) -> None:
    # Each create is its own PHP process, as a retried web request would be.
    create = r"""
        $job = (new Job('silver:erp:export-order', ['4711']))->setIdempotencyKey('order-4711-export');
        out(job($client->create($job)));
    """
    first = run_php(php, cluster.kubeconfig, create, namespace)
    again = run_php(php, cluster.kubeconfig, create, namespace)
    other = run_php(php, cluster.kubeconfig, r"""
        try {
            $client->create((new Job('silver:erp:export-order', ['4712']))->setIdempotencyKey('order-4711-export'));
            out(['created' => true]);
        } catch (CommerceJobsException $e) {
            out(failure($e));
        }
    """, namespace)  # fmt: skip

    assert (again["name"], again["uid"]) == (first["name"], first["uid"])
    assert [j["metadata"]["name"] for j in cjobs.list()] == [first["name"]]
    assert other["exception"] == "IdempotencyConflictException"
    assert other["getFields"] == ["spec.params"]
    assert "exists with another spec.params" in other["message"]
    assert cjobs.get(first["name"])["spec"]["params"] == ["4711"]  # the job that exists is left as it is
    assert state(cjobs.wait_final(first["name"])) == "Finished"


def test_the_apiservers_refusals_name_the_field(
    php: str, cluster: Cluster, cjobs: CommerceJobs, namespace: str
) -> None:
    seen = run_php(php, cluster.kubeconfig, r"""
        $refused = [];
        // The CRD's schema: a queue name that Kubernetes cannot take.
        try { $client->create(new Job('silver:import', ['tmp'], true, 'Imports Queue')); }
        catch (CommerceJobsException $e) { $refused['schema'] = failure($e); }
        // A CEL rule of the CRD: depending jobs nest at most 3 levels below a job.
        $deep = new DependingJob('d4', 'silver:import');
        foreach (['d3', 'd2', 'd1'] as $level) {
            $deep = (new DependingJob($level, 'silver:import'))->addDependingJob($deep);
        }
        try { $client->create((new Job('silver:import'))->addDependingJob($deep)); }
        catch (CommerceJobsException $e) { $refused['cel'] = failure($e); }
        out($refused);
    """, namespace)  # fmt: skip

    schema, cel = seen["schema"], seen["cel"]
    assert schema["exception"] == "InvalidFieldException"
    assert schema["getField"] == "spec.queue"
    assert 'spec.queue: "Imports Queue": spec.queue in body should match' in schema["message"]
    assert cel["exception"] == "InvalidFieldException"
    assert cel["getField"] == "spec.dependingJobs[0].dependingJobs[0].dependingJobs[0]"
    assert cel["message"] == (
        "the CommerceJob was refused: spec.dependingJobs[0].dependingJobs[0].dependingJobs[0]: "
        "dependingJobs nest at most 3 levels below a job"
    )
    assert cjobs.list() == []


def test_a_command_outside_the_allowlist_is_an_exception_of_the_wait(
    php: str, cluster: Cluster, cjobs: CommerceJobs, namespace: str
) -> None:
    # The e2e operator's allowlist lets every command run but those that begin with an underscore.
    seen = run_php(php, cluster.kubeconfig, r"""
        $refused = [];
        $jobs = [
            'own' => new Job('_doctrine:database:drop', ['--force']),
            'dependent' => (new Job('silver:import', ['tmp']))->addDependingJob(new DependingJob('purge', '_purge')),
        ];
        foreach ($jobs as $case => $job) {
            $created = $client->create($job);  // the apiserver takes it: the operator refuses it
            try { $client->wait($created->getName(), 60); $refused[$case] = ['waited' => true]; }
            catch (CommerceJobsException $e) { $refused[$case] = failure($e) + ['name' => $created->getName()]; }
        }
        out($refused);
    """, namespace)  # fmt: skip

    own, dependent = seen["own"], seen["dependent"]
    assert own["exception"] == "CommandNotAllowedException"
    assert (own["getField"], own["getReason"]) == ("spec.command", "CommandNotAllowed")
    assert own["message"] == (
        f"the operator refused to run the CommerceJob {own['name']} (CommandNotAllowed): spec.command "
        "'_doctrine:database:drop' is not allowed: the operator's allowedCommands are [!_]*"
    )
    assert dependent["exception"] == "CommandNotAllowedException"
    assert dependent["getField"] == "spec.dependingJobs[0].command"
    for refused in (own, dependent):
        final = cjobs.get(refused["name"])
        assert (state(final), final["status"]["attempts"]) == ("Failed", 0)  # it never ran


def test_a_shop_service_account_with_the_example_role_starts_and_waits_but_cannot_cancel(
    php: str, cluster: Cluster, cjobs: CommerceJobs, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    kubeconfig = shop_service_account(cluster, core, namespace, tmp_path)

    # No namespace given: the client takes the kubeconfig context's, as in a pod it takes the ServiceAccount's.
    seen = run_php(php, kubeconfig, r"""
        $created = $client->create((new Job('silver:export', ['prices']))->setSpecField(...RUNS_10_MIN));
        $running = $client->get($created->getName());
        $result = ['namespace' => $client->getNamespace(), 'created' => job($running)];
        try { $client->cancel($created->getName()); $result['canceled'] = true; }
        catch (CommerceJobsException $e) { $result['cancel'] = failure($e); }
        try { $client->wait($created->getName(), 2); }
        catch (CommerceJobsException $e) { $result['wait'] = failure($e); }
        out($result);
    """)  # fmt: skip

    assert seen["namespace"] == namespace
    refused = seen["cancel"]
    assert refused["exception"] == "ForbiddenException"
    assert (refused["getVerb"], refused["getResource"]) == ("patch", "commercejobs.commercejobs.dev")
    assert refused["getUser"] == f"system:serviceaccount:{namespace}:shop"
    assert refused["isRbac"] is True
    assert refused["message"] == (
        f"the ServiceAccount system:serviceaccount:{namespace}:shop may not patch commercejobs.commercejobs.dev in "
        f'the namespace {namespace}: its Role lacks the verb "patch" on "commercejobs" (API group "commercejobs.dev")'
    )
    # The wait was allowed (get, watch): it ran out of time on a job that runs for 10 minutes, and said so.
    assert seen["wait"]["exception"] == "WaitTimeoutException"
    assert "is still" in seen["wait"]["message"]
    assert "cancel" not in cjobs.get(seen["created"]["name"])["spec"]


def test_cancel_stops_a_running_job_that_another_process_waits_for(
    php: str, cluster: Cluster, cjobs: CommerceJobs, batch: client.BatchV1Api, namespace: str, tmp_path: Path
) -> None:
    created = run_php(php, cluster.kubeconfig, r"""
        $job = (new Job('silver:export', ['prices']))->setSpecField(...RUNS_10_MIN);
        $job->addDependingJob(new DependingJob('upload', 'silver:upload'));
        out(job($client->create($job)));
    """, namespace)  # fmt: skip
    name = created["name"]
    job_name = cjobs.wait_state(name, "Running")["status"]["jobName"]
    # A second PHP process waits for the job while the first one cancels it.
    script = tmp_path / "wait.php"
    script.write_text(PREAMBLE + f"echo \"waiting\\n\";\nout(job($client->wait('{name}', 90)));\n")
    waiter = subprocess.Popen([php, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=php_env(cluster.kubeconfig, namespace))  # fmt: skip
    assert waiter.stdout is not None
    assert waiter.stdout.readline() == "waiting\n"

    canceled = run_php(php, cluster.kubeconfig, f"out(job($client->cancel('{name}')));", namespace)

    assert canceled["name"] == name
    stdout, stderr = waiter.communicate(timeout=90)
    assert waiter.returncode == 0, stdout + stderr
    final = json.loads(stdout.strip().splitlines()[-1])
    assert final["state"] == "Canceled"
    assert final["dependents"] == [{"name": f"{name}-upload", "state": "Canceled"}]
    assert cjobs.get(name)["spec"]["cancel"] is True
    wait_deleted(batch.list_namespaced_job, job_name, namespace=namespace)


def test_add_dependency_needs_an_operator_with_depends_on(
    php: str, cluster: Cluster, cjobs: CommerceJobs, namespace: str
) -> None:
    """`addDependency()` maps to spec.dependsOn. With a CRD that lacks it, the apiserver refuses the field by name
    (the client asks for strict field validation, so it is never dropped silently); with one that has it, the job
    waits for its dependency and then runs."""
    crd = client.ApiextensionsV1Api(cluster.api).read_custom_resource_definition(f"commercejobs.{GROUP}")
    spec_fields = crd.spec.versions[0].schema.open_apiv3_schema.properties["spec"].properties
    seen = run_php(php, cluster.kubeconfig, r"""
        $first = new Job('silver:import', ['tmp']);
        $first->setSpecField('podAnnotations', ['sim.commercejobs.dev/duration' => '2s']);
        $client->create($first);
        try {
            $second = $client->create((new Job('ibexa:commerce:index-econtent-job'))->addDependency($first));
            $waited = [$client->wait($first->getName(), 60), $client->wait($second->getName(), 60)];
            out(['first' => job($waited[0]), 'second' => job($waited[1])]);
        } catch (CommerceJobsException $e) {
            out(failure($e));
        }
    """, namespace)  # fmt: skip

    if "dependsOn" not in spec_fields:
        assert seen["exception"] == "UnknownFieldException"
        assert seen["getField"] == "spec.dependsOn"
        assert "use Job::addDependingJob() (spec.dependingJobs) instead" in seen["message"]
        assert len(cjobs.list()) == 1  # only the first job
        return
    assert (seen["first"]["state"], seen["second"]["state"]) == ("Finished", "Finished")
    second = cjobs.get(seen["second"]["name"])
    assert second["spec"]["dependsOn"] == [seen["first"]["name"]]
    assert second["status"]["startTime"] >= cjobs.get(seen["first"]["name"])["status"]["completionTime"]


def test_the_example_console_command_starts_the_import_and_waits_for_it_with_only_the_example_role(
    php: str, cluster: Cluster, cjobs: CommerceJobs, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    """clients/php/examples/StartImportCommand.php (`shop:start-import`, for the demo shop), in a Symfony console on
    this machine, as the shop's ServiceAccount with only the example Role: what a job's pod will run on the real
    node."""
    if not SYMFONY_CONSOLE.is_file():
        pytest.fail(f"Symfony Console is missing: {INSTALL}")
    kubeconfig = shop_service_account(cluster, core, namespace, tmp_path)
    console = tmp_path / "console"
    console.write_text(
        "<?php\n"
        f"require '{SYMFONY_CONSOLE}';\nrequire '{CLIENT_AUTOLOAD}';\nrequire '{START_IMPORT}';\n"
        "$app = new Symfony\\Component\\Console\\Application('shop');\n"
        "$app->add(new DemoShop\\Command\\StartImportCommand());\nexit($app->run());\n"
    )

    def start_import(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([php, str(console), "shop:start-import", "--timeout=90", *args], capture_output=True,
                              text=True, env=php_env(kubeconfig, None), timeout=120, check=False)  # fmt: skip

    done = start_import("--table=tmp")

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    name = lines[0].split("/")[1].split(":")[0]
    assert lines[0] == f"Started CommerceJob {namespace}/{name}: silver:import"
    assert f"{name}: Finished, exit code 0" in lines
    assert f"{name}-index: Finished, exit code 0" in lines
    assert cjobs.get(name)["spec"]["dependingJobs"][0]["command"] == "ibexa:commerce:index-econtent-job"

    refused = start_import("--import-command=_doctrine:database:drop")

    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "CommandNotAllowedException: the operator refused to run the CommerceJob" in refused.stderr
    assert "spec.command '_doctrine:database:drop' is not allowed" in refused.stderr


def shop_service_account(cluster: Cluster, core: client.CoreV1Api, namespace: str, directory: Path) -> Path:
    """The ServiceAccount `shop` with only the example Role (manifests/examples/rbac/shop-php-client.yaml), and a
    kubeconfig with its token."""
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="shop"))
    )
    path = directory / "role.yaml"
    path.write_text(ROLE.read_text().replace("namespace: shop", f"namespace: {namespace}"))
    kubectl(cluster, "apply", "--server-side", f"--filename={path}")
    return service_account_kubeconfig(cluster, namespace, "shop", directory)


def service_account_kubeconfig(cluster: Cluster, namespace: str, account: str, directory: Path) -> Path:
    """A kubeconfig with a token of the ServiceAccount (as `kubectl create token`) and the namespace as context's."""
    token = kubectl(cluster, "create", "token", account, f"--namespace={namespace}", "--duration=1h").stdout.strip()
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"] = [{"name": account, "user": {"token": token}}]
    for context in config["contexts"]:
        context["context"]["user"] = account
        context["context"]["namespace"] = namespace
    path = directory / f"{account}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path
