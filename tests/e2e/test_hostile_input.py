"""Hostile and broken input end to end: generated objects of every kind sent to the real apiserver, outputs that
are huge, binary or without newlines, and dependency trees past their limits.

The property-based test runs a small, derandomized profile in CI; more examples with e.g.
``COMMERCE_JOBS_HYPOTHESIS=thorough pytest tests/e2e/test_hostile_input.py``.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import subprocess
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from commerce_jobs import crd
from tests.cjobs import FINAL, GROUP, VERSION, CommerceJobs, ready_reason, sim, state
from tests.conftest import Cluster
from tests.e2e.conftest import REPO, kubectl_apply
from tests.kube import wait_for

pytestmark = pytest.mark.usefixtures("simulated_cluster")

_COMMON = {"deadline": None, "database": None, "suppress_health_check": list(HealthCheck)}
settings.register_profile("ci", max_examples=20, derandomize=True, **_COMMON)
settings.register_profile("thorough", max_examples=150, **_COMMON)
PROFILE = settings.get_profile(os.environ.get("COMMERCE_JOBS_HYPOTHESIS", "ci"))

OPERATOR_LOG = REPO / "test-artifacts" / "operator.log"
OUTPUT_MAX = 16384  # the test operator's outputMaxBytes


# -- strategies -------------------------------------------------------------------------------------------------------
TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40)  # anything JSON can carry
HOSTILE = st.sampled_from(
    ["; rm -rf /", "$(id)", "`id`", "a\nb", "'", '"', "\\", "--env=prod", "ünï ✓ 😀", "*", "|", "&&", "\t", "\x00",
     "x" * 4096, "x" * 4097, "", " "]
)  # fmt: skip
COMMAND = st.one_of(
    st.sampled_from(["silver:import", "ibexa:commerce:index-econtent-job", "_outside:allowlist"]),
    st.from_regex(crd.CONSOLE_COMMAND, fullmatch=True).filter(lambda c: len(c) <= 60),
    TEXT,
    st.integers(),
)
PARAMS = st.one_of(st.lists(st.one_of(HOSTILE, TEXT), max_size=8), st.lists(st.just("p"), min_size=129, max_size=129))
SIM = st.builds(
    lambda code, duration, output: sim(exit_code=code, duration=duration, output=output),
    st.sampled_from([0, 0, 1, 255]),
    st.sampled_from([None, "1s"]),
    st.one_of(st.none(), TEXT),
)
ANNOTATIONS = st.one_of(SIM, st.builds(lambda s, extra: {**s, **extra}, SIM, st.dictionaries(TEXT, TEXT, max_size=2)))
ENV = st.lists(
    st.one_of(
        st.fixed_dictionaries({"name": st.sampled_from(["APP_ENV", "A=B", "X"]), "value": TEXT}),
        st.fixed_dictionaries({"value": TEXT}),
        st.dictionaries(TEXT, TEXT, max_size=2),
    ),
    max_size=2,
)
NAME = st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True)


def dependents(depth: int) -> st.SearchStrategy[list[dict[str, Any]]]:
    leaf = st.fixed_dictionaries({"name": NAME, "command": COMMAND}, optional={"podAnnotations": SIM})
    if depth >= crd.MAX_DEPENDENCY_DEPTH + 1:
        return st.lists(leaf, max_size=2)
    child = st.fixed_dictionaries(
        {"name": NAME, "command": COMMAND}, optional={"podAnnotations": SIM, "dependingJobs": dependents(depth + 1)}
    )
    return st.lists(child, max_size=2)


def job_fields(with_cancel: bool) -> dict[str, st.SearchStrategy[Any]]:
    fields: dict[str, st.SearchStrategy[Any]] = {
        "params": PARAMS,
        "label": TEXT,
        "image": st.sampled_from(["registry.example.com/shop:2", "", "UPPER CASE:image", "x" * 1025]),
        "consoleCommand": st.sampled_from([["php", "bin/console"], ["sh", "-c"], []]),
        "env": ENV,
        "resources": st.sampled_from([{}, {"limits": {"cpu": "1"}}, {"limits": {"cpu": "lots"}}, {"bogus": 1}]),
        "queue": st.one_of(NAME, TEXT),
        "priority": st.integers(min_value=-2000, max_value=2000),
        "maxRuntimeSeconds": st.integers(min_value=-1, max_value=5),
        "maxRetries": st.integers(min_value=-1, max_value=2) | st.just(99),
        "retryBackoffSeconds": st.just(1) | st.integers(min_value=-1, max_value=1),
        "dependingJobs": dependents(1),
        "podLabels": st.dictionaries(st.sampled_from(["team", "bad key!", "x" * 70]), TEXT, max_size=1),
        "unknownField": TEXT,
    }
    if with_cancel:
        fields["cancel"] = st.booleans()
        fields["executeAfter"] = st.sampled_from(["2020-01-01T00:00:00Z", "2099-01-01T00:00:00Z", "tomorrow"])
    return fields


CJOB = st.fixed_dictionaries(
    {"command": COMMAND, "podAnnotations": ANNOTATIONS},
    optional={**job_fields(with_cancel=True), "templateRef": st.fixed_dictionaries({"name": NAME})},
)
TEMPLATE = st.fixed_dictionaries({"command": COMMAND, "podAnnotations": ANNOTATIONS}, optional=job_fields(False))
CRON = st.fixed_dictionaries(
    {
        "command": COMMAND,
        "schedule": st.sampled_from(["0 0 1 1 *", "@yearly", "61 * * * *", "* * * *", "not a schedule"]) | TEXT,
        "podAnnotations": ANNOTATIONS,
    },
    optional={**job_fields(False), "timeZone": st.sampled_from(["Europe/Berlin", "Mars/Olympus", ""])},
)


# -- what is expected -------------------------------------------------------------------------------------------------
def refusal_message(error: ApiException) -> str:
    assert error.status in (400, 422), f"{error.status}: {error.body}"
    message = str(json.loads(error.body)["message"])
    assert "spec" in message, message  # it names what is wrong
    return message


def settled(obj: dict[str, Any]) -> bool:
    """A CommerceJob that has come to rest: final, or waiting for a reason that it shows (a later executeAfter, a
    template that does not exist)."""
    status = obj.get("status") or {}
    if status.get("state") in FINAL:
        return True
    return status.get("state") == "Pending" and status.get("reason") in ("Scheduled", "TemplateNotFound")


def test_generated_objects_are_refused_with_a_message_or_run_and_never_wedge_the_operator(
    cluster: Cluster, cjobs: CommerceJobs, operator: subprocess.Popen[bytes], custom: client.CustomObjectsApi,
    batch: client.BatchV1Api, namespace: str,
) -> None:  # fmt: skip
    offset = OPERATOR_LOG.stat().st_size
    names = (f"h{i}" for i in itertools.count())
    accepted: dict[str, list[str]] = {"commercejobs": [], "commercecronjobs": []}
    refused: list[str] = []

    def send(plural: str, kind: str, spec: dict[str, Any]) -> str | None:
        name = next(names)
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}, "spec": spec}
        try:
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
        except ApiException as e:
            refused.append(refusal_message(e))
            return None
        return name

    @PROFILE
    @given(cjob=CJOB, template=TEMPLATE, cron=CRON)
    def send_all(cjob: dict[str, Any], template: dict[str, Any], cron: dict[str, Any]) -> None:
        if (name := send("commercejobs", "CommerceJob", cjob)) is not None:
            accepted["commercejobs"].append(name)
        if (name := send("commercejobtemplates", "CommerceJobTemplate", template)) is not None:
            # A template runs when a job is started from it.
            started = send("commercejobs", "CommerceJob", {"templateRef": {"name": name}})
            assert started is not None
            accepted["commercejobs"].append(started)
        if (name := send("commercecronjobs", "CommerceCronJob", {**cron, "suspend": True})) is not None:
            accepted["commercecronjobs"].append(name)

    send_all()
    assert accepted["commercejobs"], "no generated CommerceJob was valid: the strategies need fixing"
    assert refused, "no generated object was invalid: the strategies need fixing"

    outcomes: list[str] = []
    for name in accepted["commercejobs"]:
        job = cjobs.wait(name, settled, timeout=120)
        status = job["status"]
        outcomes.append(f"{status['state']}/{status['reason']}")
        succeeded = next(c for c in status["conditions"] if c["type"] == "Succeeded")
        assert succeeded["reason"], job
        assert succeeded["message"], job
        if status.get("jobName"):
            # It ran: its argv is the spec's, item for item.
            spec = job["spec"]
            (container,) = batch.read_namespaced_job(status["jobName"], namespace).spec.template.spec.containers
            console = spec.get("consoleCommand") or ["php", "bin/console"]
            assert container.command == [*console, spec["command"], *(spec.get("params") or [])]
            assert container.args is None
    for name in accepted["commercecronjobs"]:
        cron = wait_for(custom.list_namespaced_custom_object, name, lambda o: ready_reason(o) is not None,
                        group=GROUP, version=VERSION, namespace=namespace, plural="commercecronjobs")  # fmt: skip
        ready = next(c for c in cron["status"]["conditions"] if c["type"] == "Ready")
        assert ready["message"], cron
        has_cronjob = bool(batch.list_namespaced_cron_job(namespace, field_selector=f"metadata.name={name}").items)
        assert has_cronjob == (ready["status"] == "True"), cron

    print(f"hostile input: {len(refused)} refused by the apiserver; CommerceJobs: {sorted(outcomes)}; "
          f"{len(accepted['commercecronjobs'])} CommerceCronJobs")  # fmt: skip
    # No crash, no wedge: the operator lives, logged no traceback, and still runs an ordinary job to its end.
    assert operator.poll() is None
    log = OPERATOR_LOG.read_bytes()[offset:].decode(errors="replace")
    assert "Traceback" not in log, log[-5000:]
    cjobs.create("ordinary", command="silver:import", podAnnotations=sim(output="ok\n"))
    assert state(cjobs.wait_final("ordinary")) == "Finished"


# -- outputs ----------------------------------------------------------------------------------------------------------
def test_huge_binary_and_unterminated_output_keeps_a_bounded_readable_tail(cjobs: CommerceJobs) -> None:
    binary = bytes(range(256)) * 8  # every byte value, NUL and ESC included (annotation values: 4 KiB at most)
    cjobs.create("megabytes", command="silver:import",  # 8 MB on one line, no newline at all
                 podAnnotations=sim(output="0123456789" * 100, output_repeat="8000"))  # fmt: skip
    cjobs.create("binary", command="silver:import",  # 1 MiB of binary
                 podAnnotations=sim(output_base64=base64.b64encode(binary).decode(), output_repeat="512"))  # fmt: skip
    cjobs.create("escapes", command="silver:import",
                 podAnnotations=sim(output="\x1b[2J\x1b]0;owned\x07progress\r100%\tdone"))  # fmt: skip
    for name in ("megabytes", "binary", "escapes"):
        final = cjobs.wait_final(name, timeout=120)
        assert state(final) == "Finished"
        output = final["status"]["output"]
        body = output.split("...]\n", 1)[1] if final["status"]["outputTruncated"] else output
        assert len(body.encode()) <= OUTPUT_MAX
        assert not any(ord(c) < 32 and c not in "\t\n\r" for c in output), name
    megabytes = cjobs.get("megabytes")["status"]
    assert megabytes["outputTruncated"] is True
    assert "only the last 16384 of 8000000 bytes are kept" in megabytes["output"]
    assert megabytes["output"].endswith("0123456789" * 100)
    binary_status = cjobs.get("binary")["status"]
    assert binary_status["outputTruncated"] is True
    assert "".join(chr(c) for c in range(32, 127)) in binary_status["output"]  # the printable bytes, as they were
    assert "\ufffd" in binary_status["output"]
    escapes = cjobs.get("escapes")["status"]["output"]
    assert escapes == "\ufffd[2J\ufffd]0;owned\ufffdprogress\r100%\tdone"


# -- dependency trees -------------------------------------------------------------------------------------------------
def tree(width: int, depth: int) -> list[dict[str, Any]]:
    """``width`` dependents on each of ``depth`` levels: width + width**2 + ... jobs."""
    below = {"dependingJobs": tree(width, depth - 1)} if depth > 1 else {}
    return [{"name": f"d{i}", "command": "silver:index", **below} for i in range(width)]


@pytest.mark.parametrize(
    ("width", "depth", "message"),
    [
        (crd.MAX_DEPENDENTS + 1, 1, f"spec.dependingJobs: Too many: {crd.MAX_DEPENDENTS + 1}: must have at most "
                                    f"{crd.MAX_DEPENDENTS} items"),
        (1, crd.MAX_DEPENDENCY_DEPTH + 1, f"dependingJobs nest at most {crd.MAX_DEPENDENCY_DEPTH} levels below a job"),
    ],
)  # fmt: skip
def test_a_dependency_tree_past_its_limits_is_refused_by_the_apiserver(
    cluster: Cluster, crds: None, custom: client.CustomObjectsApi, namespace: str, width: int, depth: int, message: str
) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CommerceJob", "metadata": {"name": "tree"},
            "spec": {"command": "silver:import", "dependingJobs": tree(width, depth)}}  # fmt: skip
    # Through the API without strict field validation (as the Python client and kopf send), and with kubectl.
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "commercejobs", body)
    assert message in refusal_message(refused.value)
    applied = kubectl_apply(cluster, namespace, json.dumps(body))
    assert applied.returncode != 0
    assert message in applied.stderr


def test_the_largest_allowed_tree_is_accepted_and_its_cancel_recorded(cjobs: CommerceJobs) -> None:
    # 20 + 20**2 + 20**3 = 8420 dependents: the most the schema allows, and what the status must then hold.
    cjobs.create("tree", command="silver:import", cancel=True, dependingJobs=tree(crd.MAX_DEPENDENTS, 3))
    final = cjobs.wait_final("tree")
    assert state(final) == "Canceled"
    dependents = final["status"]["dependents"]
    assert len(dependents) == 8420
    assert dependents[-1] == {"name": "tree-d19-d19-d19", "state": "Canceled"}
