from pathlib import Path

import yaml

from commerce_jobs import crd

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "commercejobs.dev_commercejobs.yaml"


def test_the_committed_crd_is_the_generated_one() -> None:
    assert CRD_FILE.read_text() == crd.render(), (
        "run: python -m commerce_jobs.crd > crds/commercejobs.dev_commercejobs.yaml"
    )


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
    while "dependingJobs" in level["properties"]:
        level = level["properties"]["dependingJobs"]["items"]
        depth += 1
    assert depth == crd.MAX_DEPENDENCY_DEPTH
