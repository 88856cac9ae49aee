"""The console's pictures: inline SVG built by the server from the controller's cache (pure functions, no I/O).

- ``run_strip``: the last runs of a template or a crontab task as bars, height the duration, colour the state;
- ``hourly_chart``: the jobs that ended in each hour of the last day, stacked by state.

No script and no style attribute (the page's Content-Security-Policy allows neither inline): colours and sizes are
SVG presentation attributes. Every value from a job goes through ``esc``; a bar's tooltip is an SVG ``<title>``.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote

from commerce_jobs import lifecycle
from commerce_jobs.api_names import COMMERCECRONJOB
from commerce_jobs.fields import spec_of, status_of

K = TypeVar("K", bound=Hashable)

COLOURS = {
    lifecycle.FINISHED: "#12b76a",
    lifecycle.FAILED: "#d92d20",
    lifecycle.TERMINATED: "#f79009",
    lifecycle.INCOMPLETE: "#9e77ed",
    lifecycle.CANCELED: "#98a2b3",
    lifecycle.RUNNING: "#2e90fa",
    lifecycle.PENDING: "#d0d5dd",
}
# Bottom to top in the hourly chart: what succeeded first, then what needs a look.
ENDED_STATES = (lifecycle.FINISHED, lifecycle.FAILED, lifecycle.TERMINATED, lifecycle.INCOMPLETE, lifecycle.CANCELED)


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


@dataclass(frozen=True)
class Run:
    """One run (a CommerceJob) as a bar: its state and how long it ran (or has run so far)."""

    namespace: str
    name: str
    state: str
    created: str  # creationTimestamp: the order of runs
    seconds: float | None  # None: it has not started

    @classmethod
    def of(cls, job: Mapping[str, Any], now: datetime) -> Run:
        meta, status = job.get("metadata") or {}, status_of(job)
        state = str(status.get("state") or lifecycle.PENDING)
        started = lifecycle.parse_time(status.get("startTime"))
        ended = lifecycle.parse_time(status.get("completionTime")) if state in lifecycle.FINAL_STATES else now
        seconds = max((ended - started).total_seconds(), 0.0) if started and ended else None
        return cls(str(meta.get("namespace", "")), str(meta.get("name", "")), state,
                   str(meta.get("creationTimestamp", "")), seconds)  # fmt: skip


def template_of(job: Mapping[str, Any]) -> tuple[str, str] | None:
    """(namespace, template) of a job started from a CommerceJobTemplate."""
    ref = spec_of(job).get("templateRef") or {}
    name = ref.get("name") if isinstance(ref, Mapping) else None
    return (str((job.get("metadata") or {}).get("namespace", "")), str(name)) if name else None


def cron_of(job: Mapping[str, Any]) -> tuple[str, str] | None:
    """(namespace, task) of a run of a CommerceCronJob."""
    meta = job.get("metadata") or {}
    owner = next((r.get("name") for r in meta.get("ownerReferences") or [] if r.get("kind") == COMMERCECRONJOB), None)
    return (str(meta.get("namespace", "")), str(owner)) if owner else None


def last_runs(
    jobs: Iterable[Mapping[str, Any]], key: Callable[[Mapping[str, Any]], K | None], now: datetime, count: int = 20
) -> dict[K, list[Run]]:
    """The newest ``count`` runs of each group (oldest first, as a strip reads left to right)."""
    groups: dict[K, list[Run]] = {}
    for job in jobs:
        group = key(job)
        if group is not None:
            groups.setdefault(group, []).append(Run.of(job, now))
    return {g: sorted(runs, key=lambda r: (r.created, r.name))[-count:] for g, runs in groups.items()}


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "not started"
    return lifecycle.duration(datetime.min, datetime.min + timedelta(seconds=seconds))


def run_strip(runs: Sequence[Run], label: str, slots: int = 20, bar: int = 10, gap: int = 3, height: int = 36) -> str:
    """The runs as bars, newest on the right; each bar's height is its duration against the longest shown (at least
    a sliver, so a run of 0 s is still seen), each bar links to the job in the list."""
    shown = list(runs)[-slots:]
    longest = max((r.seconds or 0.0 for r in shown), default=0.0) or 1.0
    width = slots * (bar + gap) - gap
    counts = Counter(r.state for r in shown)
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no runs"
    parts = [
        f'<svg class="strip" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(f"last runs of {label}: {summary}")}">',
        f'<line x1="0" y1="{height - 0.5}" x2="{width}" y2="{height - 0.5}" stroke="#e4e7ec"/>',
    ]
    offset = slots - len(shown)  # right-aligned: the newest run is always in the last slot
    for index, run in enumerate(shown):
        size = max(2.0, round((run.seconds or 0.0) / longest * (height - 2), 1))
        x = (offset + index) * (bar + gap)
        tooltip = f"{run.name}: {run.state}, {duration_text(run.seconds)}"
        parts.append(
            f'<a href="/?{esc("q=" + quote(run.name, safe=""))}&amp;namespace={esc(quote(run.namespace, safe=""))}">'
            f'<rect class="run" data-state="{esc(run.state)}" x="{x}" y="{height - 1 - size}" width="{bar}" '
            f'height="{size}" rx="1.5" fill="{COLOURS.get(run.state, "#667085")}">'
            f"<title>{esc(tooltip)}</title></rect></a>"
        )
    parts.append("</svg>")
    return "".join(parts)


def hourly_counts(jobs: Iterable[Mapping[str, Any]], now: datetime, hours: int = 24) -> list[Counter[str]]:
    """Jobs that reached a final state, by hour of their completion (oldest hour first; the last is the current
    one) and state."""
    current = now.replace(minute=0, second=0, microsecond=0)
    first = current - timedelta(hours=hours - 1)
    buckets: list[Counter[str]] = [Counter() for _ in range(hours)]
    for job in jobs:
        status = status_of(job)
        state = status.get("state")
        ended = lifecycle.parse_time(status.get("completionTime")) if state in lifecycle.FINAL_STATES else None
        if ended is None or ended < first or ended > now:
            continue
        buckets[int((ended - first).total_seconds() // 3600)][str(state)] += 1
    return buckets


def hourly_chart(buckets: Sequence[Counter[str]], now: datetime, column: int = 22, height: int = 140) -> str:
    """Stacked columns, one per hour, labelled every 6 hours (UTC); a legend of the states below."""
    top = max((sum(b.values()) for b in buckets), default=0)
    scale = (height - 30) / top if top else 0.0
    left, base = 34, height - 18
    width = left + len(buckets) * column + 4
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=len(buckets) - 1)
    total = sum(sum(b.values()) for b in buckets)
    parts = [
        f'<svg class="hourly" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 22}" '
        f'viewBox="0 0 {width} {height + 22}" role="img" '
        f'aria-label="{esc(f"jobs that ended per hour over the last {len(buckets)} hours: {total}")}">',
        f'<line x1="{left}" y1="{base + 0.5}" x2="{width}" y2="{base + 0.5}" stroke="#98a2b3"/>',
        f'<text x="{left - 4}" y="{base - (top * scale) + 4:.0f}" text-anchor="end" font-size="10" fill="#667085">'
        f"{top}</text>",
        f'<text x="{left - 4}" y="{base}" text-anchor="end" font-size="10" fill="#667085">0</text>',
    ]
    for index, bucket in enumerate(buckets):
        x = left + index * column + 2
        y = float(base)
        hour = first + timedelta(hours=index)
        for state in ENDED_STATES:
            count = bucket.get(state, 0)
            if not count:
                continue
            size = count * scale
            y -= size
            tooltip = f"{hour:%Y-%m-%d %H}:00 UTC: {count} {state}"
            parts.append(
                f'<rect class="hour" data-state="{esc(state)}" data-count="{count}" x="{x}" y="{y:.1f}" '
                f'width="{column - 4}" height="{size:.1f}" fill="{COLOURS[state]}"><title>{esc(tooltip)}</title></rect>'
            )
        if hour.hour % 6 == 0:
            parts.append(f'<text x="{x + (column - 4) / 2:.0f}" y="{height - 4}" text-anchor="middle" font-size="10" '
                         f'fill="#667085">{hour:%H}:00</text>')  # fmt: skip
    x = left
    for state in ENDED_STATES:
        parts.append(f'<rect x="{x}" y="{height + 8}" width="10" height="10" fill="{COLOURS[state]}"/>'
                     f'<text x="{x + 14}" y="{height + 17}" font-size="11" fill="#1d2330">'
                     f"{esc(state)}</text>")  # fmt: skip
        x += 14 + 8 * len(state) + 12
    parts.append("</svg>")
    return "".join(parts)
