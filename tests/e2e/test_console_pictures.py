"""The console's History and Crontab tasks pages in headless Chromium (tests/e2e/test_console.py's set-up) against
the real control plane: the SVG pictures of real runs, and Suspend/Resume of a crontab task checked by
SubjectAccessReview. Screenshots go to test-artifacts/console/ (docs/console-history.png and
docs/console-crontab.png are copies of them).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.cjobs import GROUP, VERSION, CommerceJobs, condition, sim
from tests.conftest import Cluster
from tests.e2e import test_console
from tests.e2e.conftest import kubectl, kubectl_apply
from tests.e2e.test_console import User, expect, shot, sign_in
from tests.e2e.test_install import kinds, template
from tests.kube import wait_for

simulated = pytest.mark.usefixtures("simulated_cluster")
CRONS = "commercecronjobs"
# The browser, its page and the console's address, as tests/e2e/test_console.py has them.
browser, page, console = test_console.browser, test_console.page, test_console.console


def cron_user(cluster: Cluster, namespace: str, name: str, cron_verbs: list[str]) -> User:
    """A ServiceAccount that may list CommerceJobs, and do ``cron_verbs`` with CommerceCronJobs."""
    rules = [{"apiGroups": [GROUP], "resources": ["commercejobs", "commercejobtemplates"],
              "verbs": ["get", "list", "watch"]}]  # fmt: skip
    if cron_verbs:
        rules.append({"apiGroups": [GROUP], "resources": [CRONS], "verbs": cron_verbs})
    manifests = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name}, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]},
    ]  # fmt: skip
    applied = kubectl_apply(cluster, namespace, yaml.safe_dump_all(manifests))
    assert applied.returncode == 0, applied.stderr
    token = kubectl(cluster, "create", "token", name, f"--namespace={namespace}", "--duration=1h").stdout.strip()
    return User(f"system:serviceaccount:{namespace}:{name}", token)


@pytest.fixture
def history(cluster: Cluster, cjobs: CommerceJobs, namespace: str) -> dict[str, Any]:
    """A template with four runs (two Finished, one Failed, one Running) and a crontab task with three (two started
    by hand from its CronJob, one that failed)."""
    custom = client.CustomObjectsApi(cluster.api)
    template = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CommerceJobTemplate", "metadata": {"name": "import"},
                "spec": {"label": "Import from eZ", "command": "silver:import", "params": ["tmp"]}}  # fmt: skip
    assert kubectl_apply(cluster, namespace, yaml.safe_dump(template)).returncode == 0
    for name, simulated in (("import-1", sim(duration="1s")), ("import-2", sim(exit_code=1, duration="2s")),
                            ("import-3", sim(duration="4s")), ("import-4", sim(duration="600s"))):  # fmt: skip
        cjobs.create(name, templateRef={"name": "import"}, podAnnotations=simulated)
    cron = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CommerceCronJob", "metadata": {"name": "lost-orders"},
            "spec": {"schedule": "0 3 * * *", "timeZone": "Europe/Berlin",
                     "command": "ibexa:commerce:process-lost-orders",
                     "podAnnotations": sim(duration="2s")}}  # fmt: skip
    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, CRONS, cron)
    list_crons = functools.partial(custom.list_namespaced_custom_object, GROUP, VERSION, namespace, CRONS)
    wait_for(list_crons, "lost-orders", lambda o: (condition(o, "Ready") or {}).get("status") == "True")
    for run in ("lost-orders-manual-1", "lost-orders-manual-2"):
        kubectl(cluster, "create", "job", "--from=cronjob/lost-orders", run, f"-n={namespace}")
        cjobs.wait_final(run)
    owner = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CommerceCronJob", "name": "lost-orders",
             "uid": created["metadata"]["uid"]}  # fmt: skip
    failed = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CommerceJob",
              "metadata": {"name": "lost-orders-retry", "ownerReferences": [owner]},
              "spec": {"command": "ibexa:commerce:process-lost-orders",
                       "podAnnotations": sim(exit_code=2)}}  # fmt: skip
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "commercejobs", failed)
    for name in ("import-1", "import-2", "import-3", "lost-orders-retry"):
        cjobs.wait_final(name)
    cjobs.wait_state("import-4", "Running")
    return {"custom": custom, "list_crons": list_crons}


@simulated
def test_history_and_crontab_pages_draw_the_runs_and_suspend_resume_a_task(
    page: Any, console: str, cluster: Cluster, namespace: str, history: dict[str, Any], batch: client.BatchV1Api
) -> None:
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    editor = cron_user(cluster, namespace, "cron-editor", ["get", "list", "watch", "patch"])
    sign_in(page, console, editor)
    page.set_viewport_size({"width": 1400, "height": 240})  # the screenshots (full page) as tall as their content

    page.click("nav.views >> text=History")
    expect(page.locator("svg.hourly")).to_be_visible()
    # Three jobs ended in this hour, in the last column of the day: two Finished and one Failed (the template's).
    expect(page.locator('svg.hourly rect.hour[data-state="Failed"]')).to_have_count(1)
    template = page.locator(f'tr.template[data-key="{namespace}/import"]')
    expect(template.locator("rect.run")).to_have_count(4)
    expect(template.locator('rect.run[data-state="Failed"]')).to_have_count(1)
    expect(template.locator('rect.run[data-state="Running"]')).to_have_count(1)
    heights = {r.get_attribute("data-state") + str(i): float(r.get_attribute("height"))
               for i, r in enumerate(template.locator("rect.run").element_handles())}  # fmt: skip
    assert max(heights.values()) == heights["Running3"]  # running for longer than the others ran
    cron_row = page.locator(f'tr.cron[data-key="{namespace}/lost-orders"]')
    expect(cron_row.locator("rect.run")).to_have_count(3)
    shot(page, "history")

    page.click("nav.views >> text=Crontab tasks")
    row = page.locator(f'tr.cron[data-key="{namespace}/lost-orders"]')
    expect(row.locator("td.next")).to_contain_text("in ")
    expect(row).to_contain_text("Europe/Berlin")
    expect(row.locator("td.last .state")).to_have_text("Failed")
    expect(row.locator("td.success time")).to_have_count(1)
    expect(row.locator("td.suspended")).to_have_text("no")
    expect(row.locator("rect.run")).to_have_count(3)
    shot(page, "crontab")

    row.locator("button.suspend").click()
    expect(row).to_have_attribute("data-suspended", "true")
    expect(row.locator("td.next")).to_have_text("suspended")
    assert history["custom"].get_namespaced_custom_object(GROUP, VERSION, namespace, CRONS, "lost-orders")["spec"][
        "suspend"
    ]  # fmt: skip
    # The operator carries it to the CronJob, so the schedule stops.
    wait_for(batch.list_namespaced_cron_job, "lost-orders", lambda c: c.spec.suspend is True, namespace=namespace)
    row.locator("button.resume").click()
    expect(row).to_have_attribute("data-suspended", "false")
    wait_for(batch.list_namespaced_cron_job, "lost-orders", lambda c: c.spec.suspend is False, namespace=namespace)
    assert violations == []


@simulated
def test_suspend_needs_the_right_to_patch_crontab_tasks_and_viewing_the_right_to_list_them(
    page: Any, console: str, cluster: Cluster, namespace: str, history: dict[str, Any]
) -> None:
    lister = cron_user(cluster, namespace, "cron-lister", ["get", "list", "watch"])
    sign_in(page, console, lister)
    page.goto(f"{console}/crontab")
    row = page.locator(f'tr.cron[data-key="{namespace}/lost-orders"]')
    expect(row).to_be_visible()
    expect(row.locator("button")).to_have_count(0)
    answer = page.evaluate(
        """async ([namespace]) => {
            const csrf = document.querySelector('meta[name="csrf-token"]').content;
            const body = new URLSearchParams({csrf, namespace, name: 'lost-orders', suspend: 'true'});
            const r = await fetch('/crontab/suspend', {method: 'POST', body});
            return [r.status, await r.text()];
        }""",
        [namespace],
    )
    assert answer == [403, f"{lister.name} may not patch CommerceCronJobs in {namespace}"]
    assert not history["custom"].get_namespaced_custom_object(GROUP, VERSION, namespace, CRONS, "lost-orders")[
        "spec"
    ].get("suspend")  # fmt: skip

    nobody = cron_user(cluster, namespace, "cron-nobody", [])
    sign_in(page, console, nobody)
    page.goto(f"{console}/crontab")
    expect(page.locator("tr.cron")).to_have_count(0)
    expect(page.locator("p.refused")).to_contain_text("may not list CommerceCronJobs")


def test_the_chart_lets_the_operator_patch_crontab_tasks_only_with_the_console(helm: Path) -> None:
    def cron_verbs(*args: str) -> set[str]:
        roles = kinds(template(helm, *args).stdout)["ClusterRole"]
        (role,) = [r for r in roles if r["metadata"]["name"] == "shop-jobs-commerce-jobs"]
        return {v for rule in role["rules"] if CRONS in rule["resources"] for v in rule["verbs"]}

    assert cron_verbs() == {"list", "watch"}
    assert cron_verbs("--set=console.enabled=true") == {"list", "watch", "patch"}
