import json

import yaml

from commerce_jobs.kubeapi import apply_body


def test_an_apply_body_keeps_any_text_exact_for_a_yaml_parser() -> None:
    hostile = 'emoji 😀 \U000c94a4 bell \x07 del \x7f nel \x85 ls \u2028 nul \x00 quote " back \\ nl \n ffff \uffff'
    body = apply_body({"spec": {"params": [hostile]}})
    assert "\\ud83d" not in body  # no surrogate escapes: YAML refuses them
    assert json.loads(body)["spec"]["params"] == [hostile]
    assert yaml.safe_load(body)["spec"]["params"] == [hostile]
