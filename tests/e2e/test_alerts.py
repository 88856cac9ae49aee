"""The chart's monitoring objects: the alert rules through `promtool test rules`, the Grafana dashboard's queries
through `promtool check rules`, and the Service, ServiceMonitor and PrometheusRule as `helm template` renders them.

promtool comes from Debian's `prometheus` package (operator/commerce_jobs/devcluster/debian-packages.txt).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import REPO
from tests.e2e.test_install import kinds, template
from tests.unit.test_metrics import DOCUMENTED

CASES = REPO / "tests" / "e2e" / "alerts" / "alerts.test.yaml"
MONITORING = ["--set=metrics.prometheusRule.enabled=true", "--set=metrics.serviceMonitor.enabled=true",
              "--set=metrics.grafanaDashboard.enabled=true"]  # fmt: skip


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: apt-get install prometheus (or `make system-deps`)")
    return found


def rendered(helm: Path, *args: str) -> dict[str, list[dict[str, Any]]]:
    result = template(helm, *MONITORING, *args)
    assert result.returncode == 0, result.stderr
    return kinds(result.stdout)


def write_rules(helm: Path, directory: Path, *args: str) -> dict[str, Any]:
    (rule,) = rendered(helm, *args)["PrometheusRule"]
    (directory / "rules.yaml").write_text(yaml.safe_dump(rule["spec"]))
    return dict(rule["spec"])


def alerts(spec: dict[str, Any]) -> dict[str, str]:
    return {r["alert"]: r["expr"] for group in spec["groups"] for r in group["rules"] if "alert" in r}


def test_every_alert_fires_for_its_series_in_promtool(helm: Path, promtool: str, tmp_path: Path) -> None:
    spec = write_rules(helm, tmp_path)
    shutil.copy(CASES, tmp_path / CASES.name)
    checked = subprocess.run([promtool, "check", "rules", "rules.yaml"], cwd=tmp_path, capture_output=True,
                             text=True, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([promtool, "test", "rules", CASES.name], cwd=tmp_path, capture_output=True, text=True,
                            check=False)  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # Each alert of the shared file has a case in which it fires.
    cases = yaml.safe_load(CASES.read_text())["tests"]
    fired = {t["alertname"] for case in cases for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert fired == set(alerts(spec)) == {
        "CommerceJobsCronTaskNotSucceeding", "CommerceJobsFailing", "CommerceJobsQueueBackedUp",
        "CommerceJobsNoLeader", "CommerceJobsWatchesUnhealthy",
    }  # fmt: skip


def test_a_wrong_expectation_fails_promtool(helm: Path, promtool: str, tmp_path: Path) -> None:
    """The cases are not vacuous: one expected annotation changed, and promtool says what it got instead."""
    write_rules(helm, tmp_path)
    (tmp_path / CASES.name).write_text(CASES.read_text().replace("waited 35m 0s", "waited 20m 0s"))
    tested = subprocess.run([promtool, "test", "rules", CASES.name], cwd=tmp_path, capture_output=True, text=True,
                            check=False)  # fmt: skip
    assert tested.returncode != 0
    assert "waited 35m 0s" in tested.stdout + tested.stderr


def test_the_thresholds_come_from_the_values(helm: Path, promtool: str, tmp_path: Path) -> None:
    spec = write_rules(helm, tmp_path, "--set=metrics.prometheusRule.queueWaitMinutes=5",
                       "--set=metrics.prometheusRule.cronMissedSchedules=10",
                       "--set=metrics.prometheusRule.failingWindow=1h")  # fmt: skip
    rules = alerts(spec)
    assert "commerce_jobs_queue_oldest_waiting_seconds" in rules["CommerceJobsQueueBackedUp"]
    assert rules["CommerceJobsQueueBackedUp"].rstrip().endswith("> 300")
    assert ">= 10" in rules["CommerceJobsCronTaskNotSucceeding"]
    assert "[1h]" in rules["CommerceJobsFailing"]
    checked = subprocess.run([promtool, "check", "rules", "rules.yaml"], cwd=tmp_path, capture_output=True,
                             text=True, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def metric_names(expressions: list[str]) -> set[str]:
    names = set()
    for expr in expressions:
        for name in re.findall(r"\b(?:commerce_jobs|process)_[a-z_]+", expr):
            names.add(re.sub(r"_(total|bucket|sum|count)$", "", name))
    return names


def test_the_alerts_and_the_dashboard_use_only_metrics_that_the_operator_exposes(helm: Path, tmp_path: Path) -> None:
    expressions = list(alerts(write_rules(helm, tmp_path)).values()) + [q for q, _ in dashboard_queries(helm)]
    assert metric_names(expressions) <= DOCUMENTED, metric_names(expressions) - DOCUMENTED


def dashboard_queries(helm: Path) -> list[tuple[str, str]]:
    """(query, where) of every panel target and template variable of the dashboard, as the chart ships it."""
    (config_map,) = [c for c in rendered(helm)["ConfigMap"] if c["metadata"]["name"].endswith("-dashboard")]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"  # what Grafana's sidecar looks for
    dashboard = json.loads(config_map["data"]["commerce-jobs.json"])
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found.append((target["expr"], f"panel {panel['title']!r} {target['refId']}"))
    for variable in dashboard["templating"]["list"]:
        match = re.fullmatch(r"label_values\((.+), \w+\)", variable.get("definition", ""))
        if match:
            found.append((match.group(1), f"variable {variable['name']}"))
    return found


def test_the_dashboard_queries_are_valid_promql(helm: Path, promtool: str, tmp_path: Path) -> None:
    queries = dashboard_queries(helm)
    assert len(queries) >= 20
    # Grafana's variables become what Grafana would put there; each query becomes a recording rule to check.
    grafana = {"$__rate_interval": "5m", "$job": ".*", "$namespace": ".*"}
    rules = []
    for index, (query, where) in enumerate(queries):
        for variable, stand_in in grafana.items():
            query = query.replace(variable, stand_in)
        assert "$" not in query, f"{where}: an unknown Grafana variable in {query}"
        rules.append({"record": f"dashboard:query_{index}", "expr": query})
    (tmp_path / "dashboard.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = subprocess.run([promtool, "check", "rules", "dashboard.yaml"], cwd=tmp_path, capture_output=True,
                             text=True, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_broken_query_fails_the_check(promtool: str, tmp_path: Path) -> None:
    rules = {"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "sum by (queue (commerce_jobs_jobs)"}]}]}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(rules))
    checked = subprocess.run([promtool, "check", "rules", "bad.yaml"], cwd=tmp_path, capture_output=True, text=True,
                             check=False)  # fmt: skip
    assert checked.returncode != 0


def test_the_metrics_service_and_its_monitor_select_the_operator(helm: Path) -> None:
    objects = rendered(helm)
    (deployment,) = objects["Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--metrics=0.0.0.0:8082" in container["args"]
    assert {"name": "metrics", "containerPort": 8082} in container["ports"]
    (service,) = [s for s in objects["Service"] if s["metadata"]["name"] == "shop-jobs-commerce-jobs-metrics"]
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8082, "targetPort": "metrics"}]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (monitor,) = objects["ServiceMonitor"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s", "honorLabels": True}
    ]  # fmt: skip
    # The alerts select the job that the ServiceMonitor gives the targets: the Service's name.
    (rule,) = objects["PrometheusRule"]
    assert all('job="shop-jobs-commerce-jobs-metrics"' in expr for expr in alerts(rule["spec"]).values())


def test_monitoring_objects_are_off_by_default_and_metrics_on(helm: Path) -> None:
    result = template(helm)
    assert result.returncode == 0, result.stderr
    objects = kinds(result.stdout)
    assert "ServiceMonitor" not in objects
    assert "PrometheusRule" not in objects
    assert not [c for c in objects["ConfigMap"] if c["metadata"]["name"].endswith("-dashboard")]
    assert "shop-jobs-commerce-jobs-metrics" in [s["metadata"]["name"] for s in objects["Service"]]
    off = kinds(template(helm, "--set=metrics.enabled=false", *MONITORING).stdout)
    assert "ServiceMonitor" not in off
    assert not any(a.startswith("--metrics") for a in off["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]
                   ["args"])  # fmt: skip


@pytest.mark.parametrize(
    ("value", "message"),
    [("metrics.port=8081", "metrics.port must differ from console.port"), ("metrics.port=8080", "at '/metrics/port'")],
)
def test_a_metrics_port_taken_by_the_console_or_the_probe_is_refused(helm: Path, value: str, message: str) -> None:
    result = template(helm, f"--set={value}", "--set=console.enabled=true")
    assert result.returncode != 0
    assert message in result.stderr
