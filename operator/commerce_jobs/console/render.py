"""The console's HTML, rendered from the operator's cache (pure functions, no I/O).

Everything that comes from a CommerceJob (names, commands, params, output, messages) is user input: every value goes
through ``esc`` before it reaches the page, and nothing is ever put into a script or a style.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from commerce_jobs import lifecycle
from commerce_jobs.api_names import PARENT_ANNOTATION
from commerce_jobs.dependents import dependent_name
from commerce_jobs.fields import spec_of, status_of
from commerce_jobs.fields import state_of as state_of  # read here by other modules too

PAGE_SIZE = 50
STATES = (lifecycle.PENDING, lifecycle.RUNNING, *sorted(lifecycle.FINAL_STATES))
RETRYABLE = frozenset({lifecycle.FAILED, lifecycle.TERMINATED, lifecycle.INCOMPLETE, lifecycle.CANCELED})


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


@dataclass(frozen=True)
class Rights:
    """What a user may do in one namespace (answered by SubjectAccessReviews)."""

    view: bool = False
    start: bool = False  # create commercejobs: Start and Retry
    cancel: bool = False  # patch commercejobs


@dataclass(frozen=True)
class JobFilter:
    namespace: str = ""
    state: str = ""
    queue: str = ""
    text: str = ""
    page: int = 1

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> JobFilter:
        try:
            page = max(1, int(query.get("page", "1")))
        except ValueError:
            page = 1
        state = query.get("state", "")
        return cls(
            namespace=query.get("namespace", "").strip(),
            state=state if state in STATES else "",
            queue=query.get("queue", "").strip(),
            text=query.get("q", "").strip()[:200],
            page=page,
        )

    def query(self, **changes: Any) -> str:
        values = {"namespace": self.namespace, "state": self.state, "queue": self.queue, "q": self.text,
                  "page": self.page, **changes}  # fmt: skip
        return urlencode({k: v for k, v in values.items() if v and not (k == "page" and v == 1)})


@dataclass
class Page:
    jobs: list[dict[str, Any]]
    total: int
    number: int
    count: int  # how many pages there are


@dataclass(frozen=True)
class Viewer:
    """The signed-in user, as the page needs them."""

    name: str
    csrf: str
    rights: Mapping[str, Rights] = field(default_factory=dict)  # by namespace
    anonymous: bool = False

    def may(self, namespace: str) -> Rights:
        return self.rights.get(namespace, Rights())


def queue_of(job: Mapping[str, Any]) -> str:
    return str(spec_of(job).get("queue") or "default")


def command_line(job: Mapping[str, Any]) -> str:
    spec = spec_of(job)
    command = spec.get("command") or (f"(template {spec['templateRef'].get('name', '')})"
                                      if spec.get("templateRef") else "")  # fmt: skip
    return " ".join([str(command), *(str(p) for p in spec.get("params") or [])])


def _matches(job: Mapping[str, Any], f: JobFilter) -> bool:
    meta = job.get("metadata") or {}
    if f.namespace and meta.get("namespace") != f.namespace:
        return False
    if f.state and state_of(job) != f.state:
        return False
    if f.queue and queue_of(job) != f.queue:
        return False
    if f.text:
        needle = f.text.lower()
        return needle in str(meta.get("name", "")).lower() or needle in command_line(job).lower()
    return True


def newest_first(job: Mapping[str, Any]) -> tuple[str, str]:
    meta = job.get("metadata") or {}
    return (str(meta.get("creationTimestamp", "")), str(meta.get("name", "")))


def select(jobs: Iterable[Mapping[str, Any]], f: JobFilter, visible: Iterable[str] | None = None,
           page_size: int = PAGE_SIZE) -> Page:  # fmt: skip
    """The page of jobs that the filter asks for, newest first; ``visible``: the namespaces the user may see (None:
    all of them)."""
    allowed = None if visible is None else set(visible)
    found = [j for j in jobs if (allowed is None or j["metadata"].get("namespace") in allowed) and _matches(j, f)]
    count = max(1, -(-len(found) // page_size))
    number = min(f.page, count)
    # The cache is mostly in creation order already, which timsort turns into a near-linear pass.
    found.sort(key=newest_first, reverse=True)
    return Page([dict(j) for j in found[(number - 1) * page_size : number * page_size]], len(found), number, count)


# -- fragments ------------------------------------------------------------------------------------------------------
def _action(action: str, namespace: str, name: str, label: str, csrf: str, extra: str = "") -> str:
    return (
        f'<form method="post" action="/{action}" class="action" data-action="{esc(action)}">'
        f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
        f'<input type="hidden" name="namespace" value="{esc(namespace)}">'
        f'<input type="hidden" name="name" value="{esc(name)}">{extra}'
        f'<button type="submit" class="{esc(action)}">{esc(label)}</button></form>'
    )


def actions(job: Mapping[str, Any], viewer: Viewer) -> str:
    meta = job.get("metadata") or {}
    namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    rights, state = viewer.may(namespace), state_of(job)
    spec = spec_of(job)
    parts = []
    if rights.cancel and state not in lifecycle.FINAL_STATES and not spec.get("cancel"):
        parts.append(_action("cancel", namespace, name, "Cancel", viewer.csrf))
    if rights.start and state in RETRYABLE:
        parts.append(_action("retry", namespace, name, "Retry", viewer.csrf))
    return "".join(parts)


def job_row(job: Mapping[str, Any], viewer: Viewer) -> str:
    meta, status = job.get("metadata") or {}, status_of(job)
    namespace, name, state = meta.get("namespace", ""), meta.get("name", ""), state_of(job)
    key = f"{namespace}/{name}"
    exit_code = status.get("exitCode")
    return (
        f'<tr class="job" data-key="{esc(key)}" data-state="{esc(state)}" data-rv="{esc(meta.get("resourceVersion"))}">'
        f'<td><button type="button" class="expand" aria-expanded="false" title="details">&#9656;</button></td>'
        f'<td class="name">{esc(name)}<div class="ns">{esc(namespace)}</div></td>'
        f'<td class="command"><code>{esc(command_line(job))}</code></td>'
        f"<td>{esc(queue_of(job))}</td>"
        f'<td><span class="state state-{esc(state.lower())}">{esc(state)}</span>'
        f'<div class="reason">{esc(status.get("message", ""))}</div></td>'
        f'<td class="time">{esc(meta.get("creationTimestamp", ""))}</td>'
        f'<td class="time">{esc(status.get("duration", ""))}</td>'
        f"<td>{esc('' if exit_code is None else exit_code)}</td>"
        f'<td class="actions">{actions(job, viewer)}</td></tr>'
    )


def rows(page: Page, viewer: Viewer) -> str:
    if not page.jobs:
        return '<tr class="empty"><td colspan="9">No CommerceJobs match.</td></tr>'
    return "".join(job_row(job, viewer) for job in page.jobs)


def pager(page: Page, f: JobFilter) -> str:
    parts = [f'<span class="total">{page.total} job{"" if page.total == 1 else "s"}, page {page.number} of '
             f'{page.count}</span>']  # fmt: skip
    if page.number > 1:
        parts.append(f'<a href="/?{esc(f.query(page=page.number - 1))}" rel="prev">&larr; newer</a>')
    if page.number < page.count:
        parts.append(f'<a href="/?{esc(f.query(page=page.number + 1))}" rel="next">older &rarr;</a>')
    return " ".join(parts)


def dependents_tree(job: Mapping[str, Any], cache: Mapping[tuple[str, str], Mapping[str, Any]]) -> str:
    """The job's dependingJobs as a nested list, each with its state: from the cache once created, else from the
    job's status (Canceled ones are never created), else 'not created yet'."""
    meta = job.get("metadata") or {}
    namespace = str(meta.get("namespace", ""))
    recorded = {d.get("name"): d.get("state") for d in status_of(job).get("dependents") or []}

    def branch(parent: str, items: list[dict[str, Any]]) -> str:
        if not items:
            return ""
        entries = []
        for item in items:
            name = dependent_name(parent, str(item.get("name", "")))
            child = cache.get((namespace, name))
            state = state_of(child) if child else recorded.get(name) or "not created yet"
            label = f' <span class="label">{esc(item["label"])}</span>' if item.get("label") else ""
            entries.append(
                f'<li data-key="{esc(namespace)}/{esc(name)}"><span class="name">{esc(name)}</span>{label} '
                f"<code>{esc(item.get('command', ''))}</code> "
                f'<span class="state state-{esc(str(state).lower().replace(" ", "-"))}">{esc(state)}</span>'
                f"{branch(name, item.get('dependingJobs') or [])}</li>"
            )
        return f'<ul class="tree">{"".join(entries)}</ul>'

    return branch(str(meta.get("name", "")), list(spec_of(job).get("dependingJobs") or []))


def _job_item(namespace: str, name: str, state: str, command: str = "") -> str:
    code = f" <code>{esc(command)}</code>" if command else ""
    return (
        f'<li data-key="{esc(namespace)}/{esc(name)}"><span class="name">{esc(name)}</span>{code} '
        f'<span class="state state-{esc(state.lower())}">{esc(state)}</span></li>'
    )


def dependencies_list(job: Mapping[str, Any], cache: Mapping[tuple[str, str], Mapping[str, Any]]) -> str:
    """The jobs that this one waits for (spec.dependsOn), each with its state: from the cache, else as the status
    last recorded it, else NotFound."""
    namespace = str((job.get("metadata") or {}).get("namespace", ""))
    recorded = {d.get("name"): d.get("state") for d in status_of(job).get("dependencies") or []}
    items = []
    for name in spec_of(job).get("dependsOn") or []:
        other = cache.get((namespace, name))
        state = state_of(other) if other else str(recorded.get(name) or "NotFound")
        items.append(_job_item(namespace, name, state, command_line(other) if other else ""))
    return f'<ul class="tree">{"".join(items)}</ul>' if items else ""


def incoming_list(keys: Iterable[tuple[str, str]], cache: Mapping[tuple[str, str], Mapping[str, Any]]) -> str:
    """The jobs that name this one in their dependsOn (JMS's "Incoming Dependencies"), oldest first."""
    others = sorted((cache[k] for k in keys if k in cache), key=newest_first)
    items = [_job_item(str(o["metadata"].get("namespace", "")), str(o["metadata"].get("name", "")), state_of(o),
                       command_line(o)) for o in others]  # fmt: skip
    return f'<ul class="tree">{"".join(items)}</ul>' if items else ""


def _field(label: str, value: Any) -> str:
    return f"<dt>{esc(label)}</dt><dd>{esc('' if value is None else value)}</dd>"


def detail(
    job: Mapping[str, Any],
    cache: Mapping[tuple[str, str], Mapping[str, Any]],
    following: bool,
    incoming: Iterable[tuple[str, str]] = (),
) -> str:
    """The expanded view of one job; ``job`` is the full object (with status.output). ``following``: the page
    will stream the running pod's log into the output box instead of showing the status's tail. ``incoming``: the
    jobs that wait for this one (the controller's dependency index)."""
    meta, spec, status = job.get("metadata") or {}, spec_of(job), status_of(job)
    parent = (meta.get("annotations") or {}).get(PARENT_ANNOTATION)
    params = "".join(f"<li><code>{esc(p)}</code></li>" for p in spec.get("params") or []) or "<li>(none)</li>"
    tree = dependents_tree(job, cache) or "<p>(none)</p>"
    output = "" if following else str(status.get("output") or "")
    attempts = f"{status.get('attempts', 0)} of {int(spec.get('maxRetries', 0)) + 1}"
    truncated = '<p class="note">only the tail of the output was kept</p>' if status.get("outputTruncated") else ""
    return (
        f'<div class="detail" data-state="{esc(state_of(job))}">'
        '<dl class="fields">'
        f"{_field('Command', spec.get('command', ''))}"
        f'<dt>Params</dt><dd><ul class="params">{params}</ul></dd>'
        f"{_field('State', state_of(job))}{_field('Message', status.get('message', ''))}"
        f"{_field('Queue', queue_of(job))}{_field('Priority', spec.get('priority', 0))}"
        f"{_field('Template', (spec.get('templateRef') or {}).get('name', ''))}"
        f"{_field('Parent', parent or '')}"
        f"{_field('Created', meta.get('creationTimestamp', ''))}{_field('Started', status.get('startTime', ''))}"
        f"{_field('Completed', status.get('completionTime', ''))}{_field('Duration', status.get('duration', ''))}"
        f"{_field('Exit code', status.get('exitCode'))}"
        f"{_field('Attempts', attempts)}"
        f"{_field('Next attempt', status.get('nextAttemptTime', ''))}"
        '</dl><div class="side">'
        f'<h4>Dependents</h4><div class="dependents">{tree}</div>'
        f'<h4>Dependencies</h4><div class="dependencies">{dependencies_list(job, cache) or "<p>(none)</p>"}</div>'
        f'<h4>Incoming dependencies</h4><div class="incoming">{incoming_list(incoming, cache) or "<p>(none)</p>"}'
        "</div>"
        f"<h4>Output{' (following)' if following else ''}</h4>{truncated}"
        f'<pre class="output" data-following="{"true" if following else "false"}">{esc(output)}</pre>'
        "</div></div>"
    )


# -- pages ----------------------------------------------------------------------------------------------------------
def _layout(title: str, body: str, viewer: Viewer | None = None) -> str:
    user = ""
    if viewer is not None:
        logout = "" if viewer.anonymous else (
            '<form method="post" action="/logout" class="logout">'
            f'<input type="hidden" name="csrf" value="{esc(viewer.csrf)}">'
            '<button type="submit">Sign out</button></form>'
        )  # fmt: skip
        user = f'<div class="user">signed in as <strong>{esc(viewer.name)}</strong>{logout}</div>'
    csrf = f'<meta name="csrf-token" content="{esc(viewer.csrf)}">' if viewer else ""
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'{csrf}<link rel="stylesheet" href="/static/console.css"></head>'
        f"<body><header><h1>{esc(title)}</h1>{user}</header><main>{body}</main>"
        '<script src="/static/console.js" defer></script></body></html>'
    )


def login_page(error: str = "", authentication_hint: str = "") -> str:
    message = f'<p class="error" role="alert">{esc(error)}</p>' if error else ""
    hint = authentication_hint or "kubectl create token &lt;service-account&gt; -n &lt;namespace&gt;"
    body = (
        '<form method="post" action="/login" class="login">'
        f"{message}"
        '<label for="token">Kubernetes bearer token</label>'
        '<textarea id="token" name="token" rows="4" autocomplete="off" spellcheck="false" required></textarea>'
        f'<p class="hint">For example from <code>{hint}</code>. It is checked with a TokenReview and kept only '
        "in this server's memory; what you may see and do is what Kubernetes RBAC allows you.</p>"
        '<button type="submit">Sign in</button></form>'
    )
    return _layout("CommerceJobs console: sign in", body)


def _options(values: Iterable[str], selected: str, everything: str) -> str:
    options = [f'<option value="">{esc(everything)}</option>']
    for value in values:
        chosen = " selected" if value == selected else ""
        options.append(f'<option value="{esc(value)}"{chosen}>{esc(value)}</option>')
    return "".join(options)


def templates_panel(templates: Iterable[Mapping[str, Any]], viewer: Viewer) -> str:
    buttons = []
    for template in sorted(templates, key=lambda t: (t["metadata"].get("namespace", ""), t["metadata"]["name"])):
        meta, spec = template["metadata"], spec_of(template)
        namespace, name = str(meta.get("namespace", "")), str(meta["name"])
        if not viewer.may(namespace).view:
            continue
        description = spec.get("description") or command_line(template)
        start = (_action("start", namespace, name, "Start", viewer.csrf) if viewer.may(namespace).start
                 else '<span class="muted">view only</span>')  # fmt: skip
        buttons.append(
            f'<li class="template" data-key="{esc(namespace)}/{esc(name)}">'
            f"<div><strong>{esc(spec.get('label') or name)}</strong> "
            f'<span class="ns">{esc(namespace)}/{esc(name)}</span><div class="desc">{esc(description)}</div></div>'
            f"{start}</li>"
        )
    if not buttons:
        return ""
    return f'<section class="templates"><h2>Configured jobs</h2><ul>{"".join(buttons)}</ul></section>'


def list_page(page: Page, f: JobFilter, viewer: Viewer, namespaces: Iterable[str], queues: Iterable[str],
              templates: Iterable[Mapping[str, Any]], notice: str = "") -> str:  # fmt: skip
    filters = (
        '<form class="filters" method="get" action="/">'
        f'<label>Namespace <select name="namespace">{_options(namespaces, f.namespace, "all")}</select></label>'
        f'<label>State <select name="state">{_options(STATES, f.state, "any")}</select></label>'
        f'<label>Queue <select name="queue">{_options(queues, f.queue, "any")}</select></label>'
        f'<label>Search <input type="search" name="q" value="{esc(f.text)}" placeholder="name or command"></label>'
        '<button type="submit">Filter</button></form>'
    )
    table = (
        f'<p class="pager" id="pager">{pager(page, f)}</p>'
        '<table class="jobs"><thead><tr><th></th><th>Name</th><th>Command</th><th>Queue</th><th>State</th>'
        "<th>Created</th><th>Duration</th><th>Exit</th><th></th></tr></thead>"
        f'<tbody id="rows" data-query="{esc(f.query())}">{rows(page, viewer)}</tbody></table>'
    )
    flash = '<p id="flash" role="status" aria-live="polite"></p>'
    if notice:
        flash += f'<p class="error refused" role="alert">{esc(notice)}</p>'
    live = '<p class="live" id="live">live updates: connecting</p>'
    views = (
        '<nav class="views"><a href="/" aria-current="page">Jobs</a> <a href="/history">History</a> '
        '<a href="/crontab">Crontab tasks</a></nav>'
    )  # the same links as console/tasks.py's nav
    return _layout("CommerceJobs", views + flash + templates_panel(templates, viewer) + filters + live + table, viewer)
