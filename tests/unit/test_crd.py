from pathlib import Path

import pytest
import yaml

from commerce_jobs import crd

CRDS = Path(__file__).resolve().parents[2] / "crds"
CRD_FILE = CRDS / "commercejobs.dev_commercejobs.yaml"


@pytest.mark.parametrize("directory", [CRDS, CRDS.parent / "charts" / "commerce-jobs" / "crds"])
def test_the_committed_crds_are_the_generated_ones(directory: Path) -> None:
    assert sorted(p.name for p in directory.glob("*.yaml")) == sorted(crd.CRDS)
    for filename, builder in crd.CRDS.items():
        assert (directory / filename).read_text() == crd.render(builder), "run: python -m commerce_jobs.crd"


def test_names_and_columns_that_users_type_and_read() -> None:
    spec = yaml.safe_load(CRD_FILE.read_text())["spec"]
    assert spec["names"]["shortNames"] == ["cjob"]  # cj is CronJob's
    assert spec["names"]["categories"] == ["commerce"]
    version = spec["versions"][0]
    assert version["subresources"] == {"status": {}}
    default_columns = [c["name"] for c in version["additionalPrinterColumns"] if "priority" not in c]
    assert default_columns == ["Command", "State", "Exit", "Attempts", "Duration", "Age"]


def test_depending_jobs_nest_exactly_to_the_documented_depth() -> None:
    schema = yaml.safe_load(CRD_FILE.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    level = schema["properties"]["spec"]
    depth = 0
    while "properties" in level["properties"]["dependingJobs"]["items"]:
        level = level["properties"]["dependingJobs"]["items"]
        depth += 1
    assert depth == crd.MAX_DEPENDENCY_DEPTH
    # The level below the last is declared only to be refused with a message (see the e2e test of kubectl apply).
    (rule,) = level["x-kubernetes-validations"]
    assert rule["rule"] == "!has(self.dependingJobs)"


def _empty_values(node: object, path: str = "") -> list[str]:
    """Paths of empty strings, lists and maps: the apiserver drops them when it stores a CRD."""
    found = []
    if node in ("", [], {}) and not path.endswith(".subresources.status"):
        found.append(path)
    if isinstance(node, dict):
        for key, value in node.items():
            found += _empty_values(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _empty_values(value, f"{path}[{index}]")
    return found


@pytest.mark.parametrize("filename", sorted(crd.CRDS))
def test_the_crds_hold_nothing_that_the_apiserver_would_drop_or_default(filename: str) -> None:
    # An empty description (or list, or map) is dropped when the CRD is stored, so the stored CRD differs from the
    # applied one, and a second manager's server-side apply conflicts on .spec.versions (tests/e2e/test_install.py).
    stored = yaml.safe_load((CRDS / filename).read_text())
    assert _empty_values(stored) == []
    assert stored["spec"]["conversion"] == {"strategy": "None"}  # the apiserver's default, written out


@pytest.mark.parametrize("filename", sorted(crd.CRDS))
def test_every_kind_keeps_the_pod_and_container_security_contexts(filename: str) -> None:
    # The README documents spec.podSecurityContext and spec.securityContext; without them in the schema the
    # apiserver would prune them. Their keys are kept as written: the Job's own validation checks them.
    spec = yaml.safe_load((CRDS / filename).read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    properties = spec["properties"]["spec"]["properties"]
    for name in ("podSecurityContext", "securityContext"):
        assert properties[name]["type"] == "object"
        assert properties[name]["x-kubernetes-preserve-unknown-fields"] is True


def test_a_schedule_is_checked_by_a_rule_whose_message_a_person_reads() -> None:
    spec = crd.commercecronjob_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    schedule = spec["properties"]["schedule"]
    assert "pattern" not in schedule  # its refusal would quote the regular expression
    (rule,) = schedule["x-kubernetes-validations"]
    assert rule["message"].startswith("a schedule is 5 fields (minute hour day-of-month month day-of-week")
    assert "@hourly" in rule["message"]


def test_depends_on_is_a_commercejob_field_only_with_its_column_in_wide() -> None:
    """Templates and CommerceCronJobs are unchanged: a dependency names a job that exists, which they cannot."""
    job = crd.commercejob_crd()["spec"]["versions"][0]
    schema = job["schema"]["openAPIV3Schema"]
    depends_on = schema["properties"]["spec"]["properties"]["dependsOn"]
    assert (depends_on["maxItems"], depends_on["x-kubernetes-list-type"]) == (crd.MAX_DEPENDS_ON, "set")
    assert {"dependencies", "waitingOn"} <= set(schema["properties"]["status"]["properties"])
    assert [r["message"] for r in schema["x-kubernetes-validations"]] == ["a job cannot depend on itself"]
    column = next(c for c in job["additionalPrinterColumns"] if c["name"] == "Waiting On")
    assert (column["jsonPath"], column["priority"]) == (".status.waitingOn", 1)
    for builder in (crd.commercejobtemplate_crd, crd.commercecronjob_crd):
        spec = builder()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        assert "dependsOn" not in spec["properties"]
