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
