"""The console's pages, rendered from cache entries: escaping, filters, paging, buttons by right, dependents."""

from __future__ import annotations

from typing import Any

from commerce_jobs.console import render
from commerce_jobs.console.render import JobFilter, Rights, Viewer

NS = "shop"
EDITOR = Viewer("alice", "csrf-1", {NS: Rights(view=True, start=True, cancel=True)})
LISTER = Viewer("bob", "csrf-2", {NS: Rights(view=True)})


def job(name: str, created: str = "2026-01-01T00:00:00Z", namespace: str = NS, **status: Any) -> dict[str, Any]:
    spec = status.pop("spec", {"command": "silver:import", "params": ["tmp"]})
    return {
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created, "resourceVersion": "1"},
        "spec": spec,
        "status": status,
    }


def test_everything_from_a_job_is_escaped() -> None:
    evil = job("x", state="Failed", message='<img src=x onerror="alert(1)">',
               spec={"command": "a:b", "params": ['"><script>alert(1)</script>']})  # fmt: skip
    html = render.job_row(evil, EDITOR)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img" not in html
    detail = render.detail({**evil, "status": {**evil["status"], "output": "</pre><script>x</script>"}}, {}, False)
    assert "<script>" not in detail
    assert "&lt;/pre&gt;&lt;script&gt;x&lt;/script&gt;" in detail


def test_the_list_is_newest_first_filtered_and_paged() -> None:
    jobs = [job(f"job-{i:02d}", f"2026-01-01T00:00:{i:02d}Z", state="Finished" if i % 2 else "Failed")
            for i in range(30)]  # fmt: skip
    jobs.append(job("elsewhere", "2026-01-02T00:00:00Z", namespace="other"))
    page = render.select(jobs, JobFilter(page=2), visible=[NS], page_size=10)
    assert [j["metadata"]["name"] for j in page.jobs] == [f"job-{i:02d}" for i in range(19, 9, -1)]
    assert (page.total, page.number, page.count) == (30, 2, 3)
    failed = render.select(jobs, JobFilter(state="Failed", text="JOB-1"), visible=None)
    assert [j["metadata"]["name"] for j in failed.jobs] == ["job-18", "job-16", "job-14", "job-12", "job-10"]
    assert render.select(jobs, JobFilter(queue="imports")).total == 0
    assert render.select(jobs, JobFilter(page=99), page_size=10).number == 4  # past the end: the last page


def test_a_filter_comes_from_the_query_and_goes_back_into_links() -> None:
    f = JobFilter.from_query({"state": "Running", "queue": "imports", "q": " silver ", "page": "x", "namespace": NS})
    assert f == JobFilter(namespace=NS, state="Running", queue="imports", text="silver", page=1)
    assert JobFilter.from_query({"state": "Bogus"}).state == ""
    assert f.query(page=2) == "namespace=shop&state=Running&queue=imports&q=silver&page=2"


def test_buttons_follow_the_users_rights_and_the_jobs_state() -> None:
    running, failed = job("r", state="Running"), job("f", state="Failed")
    assert 'data-action="cancel"' in render.actions(running, EDITOR)
    assert 'data-action="retry"' not in render.actions(running, EDITOR)
    assert 'data-action="retry"' in render.actions(failed, EDITOR)
    assert 'name="csrf" value="csrf-1"' in render.actions(failed, EDITOR)
    assert render.actions(running, LISTER) == render.actions(failed, LISTER) == ""
    canceling = job("c", state="Running", spec={"command": "a", "cancel": True})
    assert render.actions(canceling, EDITOR) == ""


def test_templates_offer_start_only_to_who_may_create() -> None:
    template = {"metadata": {"name": "import-solr", "namespace": NS}, "spec": {"label": "Import", "command": "x"}}
    assert "button" in render.templates_panel([template], EDITOR)
    assert "view only" in render.templates_panel([template], LISTER)
    assert render.templates_panel([template], Viewer("eve", "c")) == ""


def test_dependents_show_as_a_tree_with_their_states() -> None:
    parent = job("import", spec={"command": "silver:import", "dependingJobs": [
        {"name": "index", "command": "index", "dependingJobs": [{"name": "warm", "command": "warm"}]},
        {"name": "mail", "command": "mail"},
    ]}, dependents=[{"name": "import-mail", "state": "Canceled"}])  # fmt: skip
    cache = {(NS, "import-index"): job("import-index", state="Running")}
    tree = render.dependents_tree(parent, cache)
    assert tree.count('<ul class="tree">') == 2  # warm is nested below index
    assert tree.index("import-index") < tree.index("import-index-warm") < tree.index("import-mail")
    assert 'data-key="shop/import-index"><span class="name">import-index</span> <code>index</code> ' \
           '<span class="state state-running">Running</span>' in tree  # fmt: skip
    assert "not created yet" in tree
    assert "state-canceled" in tree


def test_a_running_job_is_followed_instead_of_its_status_output() -> None:
    running = job("r", state="Running", output="old attempt's output", attempts=2)
    assert 'data-following="true"></pre>' in render.detail(running, {}, following=True)
    assert "old attempt&#x27;s output" in render.detail(running, {}, following=False)
    assert "<dd>2 of 1</dd>" in render.detail(running, {}, following=False)


def test_dependencies_and_incoming_dependencies_show_with_their_states() -> None:
    """JMS's job page: "Dependencies" and "Incoming Dependencies", each job with its state."""
    index = job("index", spec={"command": "silver:index", "dependsOn": ["import-a", "import-b", "gone"]},
                state="Pending", dependencies=[{"name": "gone", "state": "NotFound"}])  # fmt: skip
    cache = {
        (NS, "import-a"): job("import-a", state="Finished"),
        (NS, "import-b"): job("import-b", state="Running"),
        (NS, "index"): index,
        (NS, "report"): job("report", "2026-01-02T00:00:00Z", spec={"command": "r:<b>", "dependsOn": ["index"]}),
        (NS, "mail"): job("mail", "2026-01-01T12:00:00Z", spec={"command": "m", "dependsOn": ["index"]}),
    }
    page = render.detail(index, cache, following=False, incoming=[(NS, "report"), (NS, "mail"), (NS, "deleted")])
    dependencies = page[page.index("<h4>Dependencies</h4>") : page.index("<h4>Incoming dependencies</h4>")]
    assert '<span class="name">import-a</span> <code>silver:import tmp</code> ' \
           '<span class="state state-finished">Finished</span>' in dependencies  # fmt: skip
    assert '<span class="state state-running">Running</span>' in dependencies
    assert '<span class="name">gone</span> <span class="state state-notfound">NotFound</span>' in dependencies
    incoming = page[page.index("<h4>Incoming dependencies</h4>") :]
    assert incoming.index("mail") < incoming.index("report")  # oldest first
    assert "r:&lt;b&gt;" in incoming
    assert "deleted" not in incoming  # gone from the cache: not listed
    alone = render.detail(job("alone"), {}, following=False)
    assert '<h4>Dependencies</h4><div class="dependencies"><p>(none)</p>' in alone
    assert '<h4>Incoming dependencies</h4><div class="incoming"><p>(none)</p>' in alone
