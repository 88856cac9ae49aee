"""The operator's probes and its start, as the chart's pod runs it (issue 20): `commerce-jobs run` processes against
the control plane, under the chart's ServiceAccount, with leader election on the chart's Lease.

- readiness means working: every watch listed, the workers run; an operator that may not watch is never Ready;
- a standby is Ready behind a live holder only, and never when it serves the console;
- any user id, with no passwd entry, no home and a read-only root file system;
- an operator that cannot start says why: on stderr and in an Event on its pod, which outlives the pod.

These processes watch a namespace of their own and create no CommerceJobs: the session's operator (tests/e2e/
conftest.py) may run at the same time, and only one may act on a job.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.conftest import Cluster
from tests.e2e.conftest import OPERATOR_CONFIG, RELEASE, REPO, _free_port, kubectl
from tests.e2e.operator_process import OperatorProcess, stopped_after
from tests.kube import wait_for

ARTIFACTS = REPO / "test-artifacts" / "readiness"
LEASE = f"{RELEASE}-commerce-jobs"  # the chart's Role allows this Lease only
FAST_LEASE = ["--lease-duration=3", "--lease-renew-deadline=2", "--lease-retry-period=0.5"]
# The five watched resources in one namespace: what "every watch listed" means there.
WATCHED = ("apis/commercejobs.dev/v1alpha1/namespaces/{ns}/commercejobs",
           "apis/commercejobs.dev/v1alpha1/namespaces/{ns}/commercecronjobs", "apis/batch/v1/namespaces/{ns}/jobs",
           "apis/batch/v1/namespaces/{ns}/cronjobs", "api/v1/namespaces/{ns}/pods")  # fmt: skip
NOBODY = 2_000_000_123  # a user id that exists nowhere, as OpenShift assigns them


class Operator(OperatorProcess):
    """One `commerce-jobs run` process; ``wrapper`` is an argv that runs it (e.g. under another user)."""

    def __init__(self, name: str, kubeconfig: Path, config: Path, *args: str, wrapper: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        self.name, self.port = name, _free_port()
        self.log_path = ARTIFACTS / f"{name}.log"
        argv = [*wrapper, sys.executable, "-m", "commerce_jobs", "run", f"--config={config}",
                f"--liveness=http://127.0.0.1:{self.port}/healthz", *args]  # fmt: skip
        environment = env if env is not None else dict(os.environ)
        environment["KUBECONFIG"] = str(kubeconfig)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=environment, cwd="/")

    def get(self, path: str) -> tuple[int, Any]:
        """A probe's answer as the kubelet reads it: (HTTP status, body); 0 when nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")
        except OSError:
            return 0, None

    def wait(self, path: str, check: Any, timeout: float = 60) -> tuple[int, Any]:
        """Polls a probe, as the kubelet does (an HTTP endpoint has no watch), until ``check(status, body)``."""
        deadline = time.monotonic() + timeout
        answer: tuple[int, Any] = (0, None)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            answer = self.get(path)
            if check(*answer):
                return answer
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: {path} never as expected; last {answer}:\n{self.log()[-4000:]}")

    def wait_ready(self, phase: str = "acting", timeout: float = 60) -> dict[str, Any]:
        _, body = self.wait("/readyz", lambda s, b: s == 200 and b["phase"] == phase, timeout)
        return dict(body)


@pytest.fixture
def operators() -> Iterator[list[Operator]]:
    """Every operator a test started; stopped after it, whatever happened."""
    yield from stopped_after([])


@pytest.fixture(scope="module")
def config_file() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "config.yaml"
    path.write_text(yaml.safe_dump(OPERATOR_CONFIG))
    return path


def leader(namespace: str) -> list[str]:
    return [f"--namespace={namespace}", "--leader-election", f"--lease-namespace={RELEASE}", f"--lease-name={LEASE}",
            *FAST_LEASE]  # fmt: skip


def watched_paths(namespace: str) -> list[str]:
    return sorted(f"/{path.format(ns=namespace)}" for path in WATCHED)


def test_the_acting_operator_is_ready_once_every_watch_listed(
    operators: list[Operator], operator_kubeconfig: Path, config_file: Path, namespace: str
) -> None:
    op = Operator("acting", operator_kubeconfig, config_file, *leader(namespace))
    operators.append(op)
    assert op.wait_ready() == {"phase": "acting", "ready": True}
    _, alive = op.wait("/healthz", lambda s, b: s == 200)
    assert alive["watches"]["streams"] == len(WATCHED)
    assert alive["watches"]["failing"] == 0


def test_an_operator_that_may_not_watch_one_resource_is_never_ready_and_then_not_alive(
    operators: list[Operator], cluster: Cluster, core: client.CoreV1Api, config_file: Path, namespace: str
) -> None:
    """What `helm install --wait` sees of an operator whose RBAC misses a rule: not Ready, with the reason; after the
    grace, the liveness probe fails and the kubelet restarts it."""
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="op")))
    rule = client.V1PolicyRule
    rules = [  # the chart's rules, without CronJobs
        rule(api_groups=["commercejobs.dev"], resources=["commercejobs", "commercecronjobs", "commercejobtemplates"],
             verbs=["get", "list", "watch", "create", "patch", "delete"]),
        rule(api_groups=["commercejobs.dev"], resources=["commercejobs/status", "commercecronjobs/status"],
             verbs=["patch"]),
        rule(api_groups=["batch"], resources=["jobs"], verbs=["get", "list", "watch", "create", "patch", "delete"]),
        rule(api_groups=[""], resources=["pods"], verbs=["list", "watch"]),
        rule(api_groups=[""], resources=["events"], verbs=["create"]),
    ]  # fmt: skip
    rbac.create_namespaced_role(namespace, client.V1Role(metadata=client.V1ObjectMeta(name="op"), rules=rules))
    rbac.create_namespaced_role_binding(namespace, client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name="op"),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="op"),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name="op", namespace=namespace)],
    ))  # fmt: skip
    kubeconfig = _token_kubeconfig(cluster, namespace, "op", ARTIFACTS / "no-cronjobs.kubeconfig")
    op = Operator("no-cronjobs", kubeconfig, config_file, f"--namespace={namespace}", "--standalone",
                  "--watch-failure-grace=5")  # fmt: skip
    operators.append(op)
    cronjobs = f"/apis/batch/v1/namespaces/{namespace}/cronjobs"
    _, body = op.wait("/readyz", lambda s, b: s == 503 and b["phase"] == "acting" and len(b["reasons"]) == 2)
    assert body["reasons"] == [f"not listed yet: {cronjobs}", f"failing: {cronjobs}: HTTP 403"]
    _, alive = op.wait("/healthz", lambda s, b: s == 500, timeout=30)
    assert alive["watches down"][0].startswith(f"{cronjobs}: failing for ")
    assert op.get("/readyz")[0] == 503  # never Ready in between


def test_a_standby_is_ready_behind_a_live_holder_and_takes_over_when_it_dies(
    operators: list[Operator], operator_kubeconfig: Path, config_file: Path, namespace: str
) -> None:
    """Two replicas: both Ready (the Deployment is Available), one acting. When the holder dies, the standby is not
    Ready for a moment (nobody acts), then acts."""
    first = Operator("holder", operator_kubeconfig, config_file, *leader(namespace))
    operators.append(first)
    first.wait_ready()
    second = Operator("standby", operator_kubeconfig, config_file, *leader(namespace))
    operators.append(second)
    standby = second.wait_ready("standby")
    assert standby["holder"].startswith(os.uname().nodename)
    assert second.get("/healthz") == (200, {"leader": False})
    first.kill()  # no clean stop: the Lease stays with the dead holder until it expires
    _, gap = second.wait("/readyz", lambda s, b: s == 503)
    reason = f"the Lease's holder {standby['holder']} is not seen renewing it: nobody may act"
    assert gap == {"phase": "standby", "holder": standby["holder"], "ready": False, "reasons": [reason]}
    assert second.wait_ready() == {"phase": "acting", "ready": True}


def test_the_restart_of_a_single_replica_behind_its_own_crashed_holder_is_not_ready_until_it_acts(
    operators: list[Operator], operator_kubeconfig: Path, config_file: Path, namespace: str
) -> None:
    """The restart that a crash loop makes: one read of the old Lease proves no holder alive, so the new process is
    not Ready until it acts (else `helm install --wait` would see a crash-looping operator Ready)."""
    crashed = Operator("crashed", operator_kubeconfig, config_file, *leader(namespace))
    operators.append(crashed)
    crashed.wait_ready()
    crashed.kill()
    restarted = Operator("restarted", operator_kubeconfig, config_file, *leader(namespace))
    operators.append(restarted)
    answers = []
    while (answer := restarted.wait("/readyz", lambda s, b: s != 0))[1]["phase"] != "acting" or answer[0] != 200:
        answers.append(answer)
        time.sleep(0.1)
    standby = [body for _, body in answers if body["phase"] == "standby"]
    assert standby, "it never stood by: the Lease of the crashed holder was not there"
    assert all(status == 503 for status, _ in answers)


def test_a_standby_that_serves_the_console_is_never_ready(
    operators: list[Operator], operator_kubeconfig: Path, config_file: Path, namespace: str
) -> None:
    """The console's Service must send users to the Lease holder alone: only it serves the console."""
    holder = Operator("console-holder", operator_kubeconfig, config_file, *leader(namespace))
    operators.append(holder)
    holder.wait_ready()
    console = Operator("console-standby", operator_kubeconfig, config_file, *leader(namespace),
                       f"--console=127.0.0.1:{_free_port()}")  # fmt: skip
    operators.append(console)
    console.wait("/healthz", lambda s, b: s == 200 and b == {"leader": False})
    for _ in range(10):  # the holder renews all along (every 0.5 s): still not Ready
        status, body = console.wait("/readyz", lambda s, b: s != 0)
        assert (status, body["reasons"]) == (503, ["a standby serves no console: only the Lease holder is Ready"])
        time.sleep(0.2)
    holder.stop()  # a clean stop gives the Lease up: the console's replica takes it at once
    assert console.wait_ready(timeout=30) == {"phase": "acting", "ready": True}


@pytest.fixture
def nobody_files(operator_kubeconfig: Path, config_file: Path) -> Iterator[Path]:
    """The kubeconfig and configuration, readable by the user id NOBODY only (not under /tmp, which the test
    replaces by an empty file system as the chart's emptyDir does)."""
    with pytest.raises(KeyError):
        pwd.getpwuid(NOBODY)
    directory = ARTIFACTS / "nobody"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700)
    shutil.copy(config_file, directory / config_file.name)
    # The CA inline: its file is under /tmp, and not the unknown user's to read.
    kubeconfig = yaml.safe_load(operator_kubeconfig.read_text())
    for entry in kubeconfig["clusters"]:
        if "certificate-authority" in entry["cluster"]:
            ca = Path(entry["cluster"].pop("certificate-authority")).read_bytes()
            entry["cluster"]["certificate-authority-data"] = base64.b64encode(ca).decode()
    (directory / operator_kubeconfig.name).write_text(yaml.safe_dump(kubeconfig))
    for path in (directory, *directory.iterdir()):
        os.chown(path, NOBODY, NOBODY)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_the_operator_runs_under_a_user_id_that_exists_nowhere_with_a_read_only_root(
    operators: list[Operator], nobody_files: Path, namespace: str
) -> None:
    """As OpenShift runs it: an arbitrary uid without a passwd entry, no HOME/USER/LOGNAME, a read-only root file
    system and an empty writable /tmp (the chart's emptyDir)."""
    if os.geteuid() != 0:
        pytest.fail("needs root (as CI runs): it switches to another user id and mounts / read-only")
    for tool in ("unshare", "setpriv", "mount"):
        assert shutil.which(tool), f"{tool} is missing: apt-get install util-linux mount"
    # A mount namespace of its own: / read-only, a fresh /tmp; then the operator under the unknown uid.
    wrapper = ("unshare", "--mount", "--propagation=private", "--", "sh", "-c",
               'mount -o remount,bind,ro / && mount -t tmpfs -o size=16m,mode=1777 tmpfs /tmp && exec "$@"', "sh",
               "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "USER", "LOGNAME", "KUBECONFIG")}
    op = Operator("nobody", nobody_files / "operator.kubeconfig", nobody_files / "config.yaml", *leader(namespace),
                  wrapper=wrapper, env=env)  # fmt: skip
    operators.append(op)
    assert op.wait_ready() == {"phase": "acting", "ready": True}
    status = Path(f"/proc/{op.proc.pid}/status").read_text()
    assert f"Uid:\t{NOBODY}\t{NOBODY}" in status
    root = next(line.split() for line in Path(f"/proc/{op.proc.pid}/mounts").read_text().splitlines()
                if line.split()[1] == "/")  # fmt: skip
    assert "ro" in root[3].split(",")


def test_an_operator_that_cannot_start_says_why_in_an_event_on_its_pod(
    operator_kubeconfig: Path, core: client.CoreV1Api, namespace: str
) -> None:
    """`helm install --rollback-on-failure` removes the pod, and its termination message with it; the Event stays."""
    bad = ARTIFACTS / "bad-config.yaml"
    bad.write_text("retention: {maxRetention: forever}\n")
    pod = f"cj-op-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "KUBECONFIG": str(operator_kubeconfig), "POD_NAME": pod, "POD_NAMESPACE": namespace}
    result = subprocess.run([sys.executable, "-m", "commerce_jobs", "run", f"--config={bad}", "--standalone", "-A"],
                            capture_output=True, text=True, env=env, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 2
    assert "commerce-jobs: invalid configuration: " in result.stderr
    event = wait_for(core.list_namespaced_event, "", lambda e: e.involved_object.name == pod, namespace=namespace)
    assert (event.type, event.reason, event.involved_object.kind) == ("Warning", "OperatorStopped", "Pod")
    assert event.message == result.stderr.strip()


def test_an_operator_that_fails_in_its_start_says_why_and_exits(
    operator_kubeconfig: Path, config_file: Path, namespace: str
) -> None:
    """A failure inside kopf's start (here the console's port is taken) ends the process with the reason."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "KUBECONFIG": str(operator_kubeconfig)}
        result = subprocess.run(
            [sys.executable, "-m", "commerce_jobs", "run", f"--config={config_file}", "--standalone",
             f"--namespace={namespace}", f"--console=127.0.0.1:{port}"],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("commerce-jobs: the operator stopped: ")


def _token_kubeconfig(cluster: Cluster, namespace: str, account: str, path: Path) -> Path:
    token = kubectl(cluster, "create", "token", account, f"--namespace={namespace}", "--duration=1h").stdout.strip()
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"] = [{"name": account, "user": {"token": token}}]
    for context in config["contexts"]:
        context["context"]["user"] = account
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path
