"""The console's SVG pictures and its History and Crontab tasks pages (pure rendering)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

from commerce_jobs import lifecycle
from commerce_jobs.console import pictures, tasks
from commerce_jobs.console.render import Rights, Viewer

NOW = datetime(2026, 12, 3, 10, 30, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script>&"\''


def job(name: str, state: str, seconds: float | None, ended_ago: timedelta = timedelta(minutes=5),
        namespace: str = "shop", **extra: Any) -> dict[str, Any]:  # fmt: skip
    end = NOW - ended_ago
    status: dict[str, Any] = {"state": state}
    if seconds is not None:
        status["startTime"] = lifecycle.format_time(end - timedelta(seconds=seconds))
        if state in lifecycle.FINAL_STATES:
            status["completionTime"] = lifecycle.format_time(end)
    return {"metadata": {"name": name, "namespace": namespace, "creationTimestamp": lifecycle.format_time(end),
                         **extra.get("metadata", {})},
            "spec": extra.get("spec", {}), "status": status}  # fmt: skip


def bars(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)  # noqa: S314  our own output
    return [r for r in root.iter(f"{SVG}rect") if r.get("class") in ("run", "hour")]


def test_a_strip_draws_each_run_as_a_bar_as_high_as_its_duration_coloured_by_state() -> None:
    runs = [pictures.Run.of(job(f"r{i}", state, s, timedelta(minutes=10 - i)), NOW)
            for i, (state, s) in enumerate([("Finished", 60), ("Failed", 30), ("Finished", 0)])]  # fmt: skip
    runs.append(pictures.Run.of(job("now", "Running", 15, timedelta(0)), NOW))
    svg = pictures.run_strip(runs, "shop/lost-orders", slots=10, height=36)
    drawn = bars(svg)
    assert [b.get("data-state") for b in drawn] == ["Finished", "Failed", "Finished", "Running"]
    heights = [float(b.get("height", "")) for b in drawn]
    assert heights[0] == 34  # the longest run fills the strip (36 less the base line)
    assert heights[1] == 17  # half as long, half as high
    assert heights[2] == 2  # 0 s: still a sliver
    assert heights[3] == 8.5  # running for 15 s so far
    assert [b.get("fill") for b in drawn[:2]] == [pictures.COLOURS["Finished"], pictures.COLOURS["Failed"]]
    xs = [float(b.get("x", "")) for b in drawn]
    assert xs == sorted(xs)
    assert xs[-1] == 9 * 13  # the newest run is in the last slot
    assert drawn[1].findtext(f"{SVG}title") == "r1: Failed, 30s"
    assert ET.fromstring(svg).get("aria-label") == "last runs of shop/lost-orders: 1 Failed, 2 Finished, 1 Running"  # noqa: S314


def test_a_strip_keeps_only_the_last_slots_and_an_empty_one_says_so() -> None:
    runs = [pictures.Run.of(job(f"r{i:02}", "Finished", i + 1, timedelta(minutes=60 - i)), NOW) for i in range(30)]
    assert len(bars(pictures.run_strip(runs, "x", slots=20))) == 20
    empty = pictures.run_strip([], "x")
    assert bars(empty) == []
    assert "no runs" in empty


def test_values_from_jobs_are_escaped_and_nothing_needs_inline_script_or_style() -> None:
    run = pictures.Run.of(job(HOSTILE, "Failed", 3, namespace="shop"), NOW)
    svg = pictures.run_strip([run], HOSTILE)
    assert "<script" not in svg
    assert "style=" not in svg
    (bar,) = bars(svg)
    assert bar.findtext(f"{SVG}title") == f"{HOSTILE}: Failed, 3s"  # escaped in the markup, intact as text
    link = next(ET.fromstring(svg).iter(f"{SVG}a"))  # noqa: S314
    assert link.get("href", "").startswith("/?q=%3Cscript%3E")


def test_runs_are_grouped_by_template_and_by_crontab_task_newest_last() -> None:
    jobs = [
        job("a-1", "Finished", 5, timedelta(hours=2), spec={"templateRef": {"name": "import"}}),
        job("a-2", "Failed", 5, timedelta(hours=1), spec={"templateRef": {"name": "import"}}),
        job("c-1", "Finished", 5, metadata={"ownerReferences": [{"kind": "CommerceCronJob", "name": "lost-orders"}]}),
        job("plain", "Finished", 5),
    ]
    assert {k: [r.name for r in v] for k, v in pictures.last_runs(jobs, pictures.template_of, NOW).items()} == {
        ("shop", "import"): ["a-1", "a-2"]
    }  # fmt: skip
    assert list(pictures.last_runs(jobs, pictures.cron_of, NOW)) == [("shop", "lost-orders")]


def test_the_hourly_chart_stacks_the_jobs_that_ended_in_each_hour_by_state() -> None:
    jobs = [job("f1", "Finished", 1, timedelta(minutes=5)), job("f2", "Finished", 1, timedelta(minutes=20)),
            job("x1", "Failed", 1, timedelta(minutes=25)), job("old", "Finished", 1, timedelta(hours=2, minutes=1)),
            job("ancient", "Finished", 1, timedelta(days=2)), job("run", "Running", 1, timedelta(0))]  # fmt: skip
    buckets = pictures.hourly_counts(jobs, NOW)
    assert len(buckets) == 24
    assert buckets[-1] == {"Finished": 2, "Failed": 1}  # 10:00-10:30
    assert buckets[-3] == {"Finished": 1}  # 08:29
    assert sum(sum(b.values()) for b in buckets) == 4  # not the one of two days ago, not the running one
    drawn = bars(pictures.hourly_chart(buckets, NOW))
    current = [b for b in drawn if float(b.get("x", "")) == max(float(d.get("x", "")) for d in drawn)]
    assert [(b.get("data-state"), b.get("data-count")) for b in current] == [("Finished", "2"), ("Failed", "1")]
    finished, failed = (float(b.get("height", "")) for b in current)
    assert abs(finished - 2 * failed) <= 0.11  # each drawn to a tenth of a pixel
    assert abs(float(current[1].get("y", "")) + failed - float(current[0].get("y", ""))) <= 0.11  # stacked on top


def viewer(suspend: bool = True) -> tuple[Viewer, dict[str, tasks.CronRights]]:
    rights = {"shop": tasks.CronRights(view=True, suspend=suspend), "other": tasks.CronRights()}
    return Viewer("alice", "csrf-1", {"shop": Rights(view=True)}), rights


def cron(name: str, namespace: str = "shop", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace},
            "spec": {"schedule": "*/5 * * * *", "command": "ibexa:commerce:process-lost-orders", **spec},
            "status": {"lastSuccessfulTime": lifecycle.format_time(NOW - timedelta(hours=1)),
                       "lastRun": {"name": f"{name}-1", "state": "Failed",
                                   "completionTime": lifecycle.format_time(NOW - timedelta(minutes=3))}}}  # fmt: skip


def test_the_crontab_page_shows_schedule_next_and_last_run_last_success_and_suspend() -> None:
    who, rights = viewer()
    run = job("lost-orders-2", "Finished", 4, timedelta(minutes=10),
              metadata={"ownerReferences": [{"kind": "CommerceCronJob", "name": "lost-orders"}]})  # fmt: skip
    page = tasks.crontab_page(who, [cron("lost-orders", timeZone="Europe/Berlin"), cron("paused", suspend=True),
                                    cron("hidden", namespace="other")], rights, [run], NOW)  # fmt: skip
    assert 'data-key="other/hidden"' not in page  # no right to list there
    lost = page.split('data-key="shop/lost-orders"')[1].split("</tr>")[0]
    assert "<code>*/5 * * * *</code>" in lost
    assert "Europe/Berlin" in lost
    assert '2026-12-03 10:35 UTC</time> <span class="muted">in 5m0s</span>' in lost  # the next run
    assert 'class="state state-failed">Failed</span>' in lost  # the last run
    # The run that succeeded 10 minutes ago is newer than the CronJob's lastSuccessfulTime.
    assert '<td class="success"><time datetime="2026-12-03T10:20:00Z"' in lost
    assert 'name="suspend" value="true"' in lost
    assert ">Suspend</button>" in lost
    assert 'class="run" data-state="Finished"' in lost
    paused = page.split('data-key="shop/paused"')[1].split("</tr>")[0]
    assert '<td class="next">suspended</td>' in paused
    assert ">Resume</button>" in paused
    assert 'name="suspend" value="false"' in paused


def test_without_the_right_to_patch_there_is_no_button_and_values_are_escaped() -> None:
    who, rights = viewer(suspend=False)
    page = tasks.crontab_page(who, [cron("lost-orders", command=HOSTILE, schedule=HOSTILE)], rights, [], NOW)
    assert "<button" not in page.split("<tbody>")[1].split("</tbody>")[0]
    assert "<script>alert" not in page
    assert "invalid schedule" in page


def test_the_history_page_has_the_hourly_chart_and_a_strip_per_template_and_task() -> None:
    who, _ = viewer()
    jobs = [job("imp-1", "Finished", 40, spec={"templateRef": {"name": "import"}})]
    templates = [{"metadata": {"name": "import", "namespace": "shop"}, "spec": {"label": "Import", "command": "a:b"}}]
    page = tasks.history_page(who, jobs, templates, [cron("lost-orders")], NOW)
    assert page.count('<svg class="hourly"') == 1
    template_row = page.split('<tr class="template" data-key="shop/import">')[1].split("</tr>")[0]
    assert template_row.count('class="run"') == 1
    cron_row = page.split('<tr class="cron" data-key="shop/lost-orders">')[1].split("</tr>")[0]
    assert "no runs" in cron_row
