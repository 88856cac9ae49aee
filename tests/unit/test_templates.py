from pathlib import Path

import pytest
import yaml

from commerce_jobs.templates import ConfigImportError, templates_from_config

SEED = Path(__file__).resolve().parents[2] / "examples" / "platform" / "add_jobs.yaml"


def test_the_seed_add_jobs_become_a_template_with_its_depending_job() -> None:
    (template,) = templates_from_config(yaml.safe_load(SEED.read_text()), namespace="shop")
    assert template["kind"] == "CommerceJobTemplate"
    assert template["metadata"]["name"] == "import-solr"
    assert template["metadata"]["namespace"] == "shop"
    assert template["metadata"]["annotations"] == {"commercejobs.dev/add-jobs-id": "import_solr"}
    assert template["spec"] == {
        "command": "silver:import",
        "label": "Import from eZ",
        "description": "Starts import from a remote system",
        "params": ["tmp"],
        "dependingJobs": [
            {"name": "index-solr", "command": "ibexa:commerce:index-econtent-job", "label": "Index econtent tmp cores"}
        ],
    }


def test_every_scope_and_a_bare_mapping_are_read() -> None:
    scopes = {
        "siso_control_center.site_a.add_jobs": {"a": {"command": "x:a"}},
        "siso_control_center.default.add_jobs": {"b": {"command": "x:b", "params": [1]}},
    }
    config = {"parameters": scopes}
    assert [t["metadata"]["name"] for t in templates_from_config(config)] == ["a", "b"]
    assert templates_from_config(config)[1]["spec"]["params"] == ["1"]
    assert templates_from_config({"c": {"command": "x:c"}})[0]["spec"] == {"command": "x:c"}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"parameters": {"siso_control_center.default.add_jobs": {"broken": {"label": "no command"}}}},
            "broken: no command",
        ),
        ({"parameters": {"other": 1}}, "no siso_control_center"),
        ({"j": {"command": "x", "params": "tmp"}}, "j: params must be a list"),
        (
            {"j": {"command": "x", "when": "daily", "cron": 1}},
            r"^j: unknown keys cron, when \(an entry has only label, desc, command, params, depending_jobs\)$",
        ),
        ({"j": "silver:import"}, "j: expected a mapping with the keys label, desc, command, params, depending_jobs"),
        ({"j": {"command": "x", "depending_jobs": {"k": {"label": "k"}}}}, "j.k: no command"),
    ],
)
def test_bad_entries_are_named_in_the_error(config: dict, message: str) -> None:
    with pytest.raises(ConfigImportError, match=message):
        templates_from_config(config)
