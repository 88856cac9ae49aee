"""The console's History and Crontab tasks pages (pure HTML from the cache and a list of CommerceCronJobs).

- History: jobs that ended per hour over the last day, and the last runs of every template and crontab task;
- Crontab tasks: schedule, next run, last run and its state, last success, suspended, the last runs, and
  Suspend/Resume for users who may patch CommerceCronJobs.

Every value from an object goes through ``esc``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from commerce_jobs import lifecycle, schedule
from commerce_jobs.console import pictures
from commerce_jobs.console.render import Viewer, _layout, esc
from commerce_jobs.fields import spec_of, status_of

NAV = (("/", "Jobs"), ("/history", "History"), ("/crontab", "Crontab tasks"))


def nav(current: str) -> str:
    current_mark = ' aria-current="page"'
    links = [f'<a href="{href}"{current_mark if href == current else ""}>{text}</a>' for href, text in NAV]
    return f'<nav class="views">{" ".join(links)}</nav>'


@dataclass(frozen=True)
class CronRights:
    """What a user may do with the CommerceCronJobs of one namespace (answered by SubjectAccessReviews)."""

    view: bool = False  # list commercecronjobs
    suspend: bool = False  # patch commercecronjobs


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def _when(value: datetime | None, now: datetime) -> str:
    if value is None:
        return ""
    delta = (value - now).total_seconds()
    relative = esc(pictures.duration_text(abs(delta)))
    stamp = esc(lifecycle.format_time(value))
    ago = f"in {relative}" if delta >= 0 else f"{relative} ago"
    return (
        f'<time datetime="{stamp}" title="{stamp}">{value:%Y-%m-%d %H:%M} UTC</time> <span class="muted">{ago}</span>'
    )


def _state(state: str) -> str:
    return f'<span class="state state-{esc(state.lower())}">{esc(state)}</span>'


def history_page(viewer: Viewer, jobs: Iterable[Mapping[str, Any]], templates: Iterable[Mapping[str, Any]],
                 crons: Iterable[Mapping[str, Any]], now: datetime) -> str:  # fmt: skip
    """``jobs``, ``templates`` and ``crons``: those of the namespaces the viewer may see."""
    jobs = list(jobs)
    chart = pictures.hourly_chart(pictures.hourly_counts(jobs, now), now)
    by_template = pictures.last_runs(jobs, pictures.template_of, now)
    by_cron = pictures.last_runs(jobs, pictures.cron_of, now)
    sections = [f'<section class="pictures"><h2>Jobs that ended per hour, last 24 hours</h2>{chart}</section>']
    for title, kind, objects, runs in (("Configured jobs", "template", templates, by_template),
                                       ("Crontab tasks", "cron", crons, by_cron)):  # fmt: skip
        rows = []
        for obj in sorted(objects, key=_key):
            key = _key(obj)
            spec = spec_of(obj)
            label = spec.get("label") or key[1]
            strip = pictures.run_strip(runs.get(key, []), f"{key[0]}/{key[1]}")
            rows.append(f'<tr class="{kind}" data-key="{esc(key[0])}/{esc(key[1])}"><td><strong>{esc(label)}</strong>'
                        f'<div class="ns">{esc(key[0])}/{esc(key[1])}</div></td>'
                        f"<td><code>{esc(spec.get('command', ''))}</code></td><td>{strip}</td></tr>")  # fmt: skip
        body = "".join(rows) or '<tr class="empty"><td colspan="3">none</td></tr>'
        sections.append(f'<section class="pictures"><h2>{title}: last runs</h2><table class="runs">'
                        f"<thead><tr><th>Name</th><th>Command</th><th>Last 20 runs (height: duration)</th></tr>"
                        f"</thead><tbody>{body}</tbody></table></section>")  # fmt: skip
    return _layout("CommerceJobs: history", nav("/history") + "".join(sections), viewer)


def _last_success(cron: Mapping[str, Any], jobs_done: datetime | None) -> datetime | None:
    """The CronJob's lastSuccessfulTime, or a run's later success (one that succeeded on a retry)."""
    recorded = lifecycle.parse_time(status_of(cron).get("lastSuccessfulTime"))
    return max((t for t in (recorded, jobs_done) if t is not None), default=None)


def crontab_page(viewer: Viewer, crons: Iterable[Mapping[str, Any]], rights: Mapping[str, CronRights],
                 jobs: Iterable[Mapping[str, Any]], now: datetime, notice: str = "") -> str:  # fmt: skip
    """``crons``: every CommerceCronJob read; only those of namespaces the viewer may list are shown."""
    jobs = list(jobs)
    runs = pictures.last_runs(jobs, pictures.cron_of, now)
    succeeded: dict[tuple[str, str], datetime] = {}
    for job in jobs:
        key, status = pictures.cron_of(job), status_of(job)
        ended = lifecycle.parse_time(status.get("completionTime"))
        if (
            key
            and status.get("state") == lifecycle.FINISHED
            and ended
            and (key not in succeeded or ended > succeeded[key])
        ):
            succeeded[key] = ended
    rows = []
    for cron in sorted(crons, key=_key):
        key = _key(cron)
        allowed = rights.get(key[0], CronRights())
        if not allowed.view:
            continue
        spec, status = spec_of(cron), status_of(cron)
        suspended = bool(spec.get("suspend"))
        zone = spec.get("timeZone")
        upcoming = None if suspended else schedule.next_run(str(spec.get("schedule", "")), zone, now)
        last = status.get("lastRun") or {}
        last_cell = ""
        if last.get("name"):
            ended = lifecycle.parse_time(last.get("completionTime"))
            last_cell = (f'<div>{esc(last["name"])}</div>{_state(str(last.get("state") or lifecycle.PENDING))} '
                         f'{_when(ended, now) if ended else ""}')  # fmt: skip
        action = ""
        if allowed.suspend and not viewer.anonymous:
            verb = "resume" if suspended else "suspend"
            action = (f'<form method="post" action="/crontab/suspend" class="cron-action">'
                      f'<input type="hidden" name="csrf" value="{esc(viewer.csrf)}">'
                      f'<input type="hidden" name="namespace" value="{esc(key[0])}">'
                      f'<input type="hidden" name="name" value="{esc(key[1])}">'
                      f'<input type="hidden" name="suspend" value="{"false" if suspended else "true"}">'
                      f'<button type="submit" class="{verb}">{verb.capitalize()}</button></form>')  # fmt: skip
        zone_cell = f'<div class="ns">{esc(zone)}</div>' if zone else ""
        next_cell = (
            "suspended" if suspended else (_when(upcoming, now) or '<span class="error">invalid schedule</span>')
        )
        rows.append(
            f'<tr class="cron" data-key="{esc(key[0])}/{esc(key[1])}" data-suspended="{str(suspended).lower()}">'
            f'<td><strong>{esc(key[1])}</strong><div class="ns">{esc(key[0])}</div></td>'
            f"<td><code>{esc(spec.get('schedule', ''))}</code>"
            f"{zone_cell}</td>"
            f"<td><code>{esc(spec.get('command', ''))}</code></td>"
            f'<td class="next">{next_cell}</td><td class="last">{last_cell}</td>'
            f'<td class="success">{_when(_last_success(cron, succeeded.get(key)), now)}</td>'
            f'<td class="suspended">{"yes" if suspended else "no"}</td>'
            f"<td>{pictures.run_strip(runs.get(key, []), f'{key[0]}/{key[1]}')}</td>"
            f'<td class="actions">{action}</td></tr>'
        )
    body = "".join(rows) or '<tr class="empty"><td colspan="9">No crontab tasks that you may see.</td></tr>'
    flash = f'<p class="error refused" role="alert">{esc(notice)}</p>' if notice else ""
    table = (
        '<table class="jobs crontab"><thead><tr><th>Task</th><th>Schedule</th><th>Command</th><th>Next run</th>'
        "<th>Last run</th><th>Last success</th><th>Suspended</th><th>Last 20 runs</th><th></th></tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )
    return _layout("CommerceJobs: crontab tasks", nav("/crontab") + flash + table, viewer)
