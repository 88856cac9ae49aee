"""The jobs console: the Back Office's "e-commerce jobs" page, served by the operator (aiohttp; thin handlers).

The list is rendered from the controller's cache (no LIST per request); the expanded view reads one CommerceJob, and
follows a running pod's log. Actions are checked with a SubjectAccessReview for the signed-in user (to show or hide
the buttons, and to refuse early), and their writes are then sent with the user's own bearer token, never with the
operator's rights: RBAC and admission policies (such as "this group may only start templates") judge them as the
same request from kubectl. Impersonation would do the same but needs the far larger right to act as anyone. Each
created job records who asked for it in an annotation, and the operator logs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from commerce_jobs import lifecycle
from commerce_jobs.api_names import COMMERCEJOBS, COMMERCEJOBTEMPLATES, GROUP, VERSION
from commerce_jobs.console import render
from commerce_jobs.console.auth import (
    SESSION_COOKIE,
    Identity,
    Reviewer,
    Session,
    Sessions,
    csrf_ok,
    same_origin,
    user_configuration,
)
from commerce_jobs.console.history import HistoryViews
from commerce_jobs.console.live import Changes, follow_log
from commerce_jobs.controller import CommerceJobController
from commerce_jobs.fields import status_of
from commerce_jobs.http_site import serve_app
from commerce_jobs.jobpods import started_pod
from commerce_jobs.kubeapi import api_message
from commerce_jobs.startbuild import from_template, retry_of

log = logging.getLogger("commerce_jobs.console")
STATIC = Path(__file__).parent / "static"
KEEPALIVE_SECONDS = 15.0
GONE = "this CommerceJob is gone"
MAX_FOLLOWERS = 32  # open log streams at once; beyond, the expanded view shows the status's output tail
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class ConsoleSettings:
    host: str
    port: int
    authentication: bool = True
    secure_cookie: bool = False

    @classmethod
    def parse(cls, listen: str, authentication: bool = True, secure_cookie: bool = False) -> ConsoleSettings:
        """``HOST:PORT`` or ``PORT``."""
        host, _, port = listen.rpartition(":")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"--console: expected HOST:PORT or PORT, got {listen!r}")
        return cls(host or "0.0.0.0", int(port), authentication, secure_cookie)  # noqa: S104  a pod's port


class Console:
    def __init__(
        self, controller: CommerceJobController, api: client.ApiClient, namespaces: list[str],
        settings: ConsoleSettings,
    ) -> None:  # fmt: skip
        # The controller's cache, through its read API only; the console hears of each change as a listener.
        self.jobs = controller.view
        self.settings = settings
        self.namespaces = namespaces  # the operator's namespaces; empty: all
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        # The console's API calls have threads of their own: they never wait behind the controller's.
        self.executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="console")
        self.reviewer = Reviewer(api, self._call)
        self.sessions = Sessions()
        self.changes = Changes()
        self.followers = asyncio.Semaphore(MAX_FOLLOWERS)
        self._templates: list[dict[str, Any]] = []  # the last list read, kept when a read fails
        self._runner: web.AppRunner | None = None
        self._selected: dict[tuple[render.JobFilter, tuple[str, ...]], render.Page] = {}
        self._selected_version = -1
        controller.listeners.append(self.changes)

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    async def _api(self, missing: str, fn: Callable[..., Any], *args: Any) -> Any:
        """An API call on behalf of a request: a 404 is the page's 404 (with this text), another refusal a 502."""
        try:
            return await self._call(fn, *args)
        except ApiException as e:
            if e.status == 404:
                raise web.HTTPNotFound(text=missing) from e
            log.warning("console: the apiserver answered %s %s", e.status, e.reason)
            raise web.HTTPBadGateway(text=f"the apiserver answered {e.status} {e.reason}") from e

    async def _as_user(self, session: Session, missing: str, call: Callable[[client.CustomObjectsApi], Any]) -> Any:
        """A write on behalf of the signed-in user, sent with the user's own token: the apiserver's refusal (RBAC, an
        admission policy, the CRD's rules) is the page's, with its message."""

        def run() -> Any:
            with client.ApiClient(user_configuration(self.api.configuration, session.token)) as api:
                return call(client.CustomObjectsApi(api))

        try:
            return await self._call(run)
        except ApiException as e:
            message = api_message(e)
            if e.status == 404:
                raise web.HTTPNotFound(text=missing) from e
            if e.status == 401:  # the token expired or was revoked since the last check
                self.sessions.drop(session.id)
                raise web.HTTPUnauthorized(text="sign in again") from e
            log.info("console: the apiserver refused %s: %s %s", session.identity.username, e.status, message)
            refusals: dict[int, type[web.HTTPClientError]] = {
                403: web.HTTPForbidden, 409: web.HTTPConflict, 422: web.HTTPUnprocessableEntity,
            }  # fmt: skip
            if e.status in refusals:
                raise refusals[e.status](text=message) from e
            raise web.HTTPBadGateway(text=f"the apiserver answered {e.status} {e.reason}") from e

    # -- lifecycle --------------------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=64 * 1024)
        app.add_routes([
            web.get("/healthz", self.healthz),
            web.get("/login", self.login_form),
            web.post("/login", self.login),
            web.post("/logout", self.logout),
            web.get("/", self.index),
            web.get("/rows", self.rows),
            web.get("/events", self.events),
            web.get("/jobs/{namespace}/{name}", self.detail),
            web.get("/jobs/{namespace}/{name}/output", self.output),
            web.post("/start", self.start_job),
            web.post("/cancel", self.cancel_job),
            web.post("/retry", self.retry_job),
            web.static("/static", STATIC),
            *HistoryViews(self).routes(),  # the History and Crontab tasks pages (console/history.py)
        ])  # fmt: skip
        return app

    async def start(self) -> None:
        # Open event streams get 1 s at shutdown, not 60.
        self._runner = await serve_app(self.app(), self.settings.host, self.settings.port, shutdown_timeout=1)
        auth = "authenticated by bearer token" if self.settings.authentication else "WITHOUT authentication, read-only"
        log.info("console listening on %s:%d (%s)", self.settings.host, self.settings.port, auth)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self.executor.shutdown(wait=False, cancel_futures=True)

    # -- who is asking ------------------------------------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:  # fmt: skip
        """Every POST comes from this console's own page (Origin/Referer), and carries the session's CSRF token."""
        if request.method == "POST" and not same_origin(request.headers, request.host):
            raise web.HTTPForbidden(text="cross-origin request refused", headers=SECURITY_HEADERS)
        try:
            response = await handler(request)
        except web.HTTPException as e:  # redirects and refusals get the same headers
            e.headers.update(SECURITY_HEADERS)
            raise
        if not response.prepared:
            response.headers.update(SECURITY_HEADERS)
        return response

    async def _session(self, request: web.Request) -> Session | None:
        session = self.sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return None
        if self.sessions.needs_validation(session):
            # The token may have expired or its ServiceAccount been deleted since the sign-in.
            identity = await self.reviewer.authenticate(session.token)
            if identity is None or identity.username != session.identity.username:
                self.sessions.drop(session.id)
                return None
            self.sessions.validated(session)
        return session

    async def _viewer(self, request: web.Request) -> render.Viewer | None:
        namespaces = self._known_namespaces()
        if not self.settings.authentication:
            rights = dict.fromkeys(namespaces, render.Rights(view=True))
            return render.Viewer("anonymous (authentication disabled)", "", rights, anonymous=True)
        session = await self._session(request)
        if session is None:
            return None
        return render.Viewer(session.identity.username, session.csrf, await self._rights(session.identity, namespaces))

    async def _rights(self, identity: Identity, namespaces: list[str]) -> dict[str, render.Rights]:
        allowed = self.reviewer.allowed
        # One review for the whole cluster first: an administrator needs no review per namespace.
        everywhere = await asyncio.gather(*(allowed(identity, verb, "") for verb in ("list", "create", "patch")))

        async def rights(namespace: str) -> render.Rights:
            view = everywhere[0] or await allowed(identity, "list", namespace)
            if not view:
                return render.Rights()
            start = everywhere[1] or await allowed(identity, "create", namespace)
            cancel = everywhere[2] or await allowed(identity, "patch", namespace)
            return render.Rights(view=True, start=start, cancel=cancel)

        found = await asyncio.gather(*(rights(ns) for ns in namespaces))
        return dict(zip(namespaces, found, strict=True))

    def _known_namespaces(self) -> list[str]:
        names = {ns for ns, _ in self.jobs} | set(self.namespaces)
        names.update(t["metadata"].get("namespace", "") for t in self._templates)
        return sorted(n for n in names if n)

    async def _templates_list(self) -> list[dict[str, Any]]:
        """The CommerceJobTemplates, read afresh for every page load: a template applied a moment ago is on the next
        page (they are a few dozen, and page loads happen at a person's pace; live updates do not re-read them)."""
        templates = self._templates
        try:
            if self.namespaces:
                kind = COMMERCEJOBTEMPLATES
                calls = [self._call(self.custom.list_namespaced_custom_object, GROUP, VERSION, ns, kind)
                         for ns in self.namespaces]  # fmt: skip
                pages = await asyncio.gather(*calls)
                templates = [t for page in pages for t in page["items"]]
            else:
                page = await self._call(self.custom.list_cluster_custom_object, GROUP, VERSION, COMMERCEJOBTEMPLATES)
                templates = page["items"]
        except ApiException as e:
            log.warning("console: cannot list CommerceJobTemplates: %s", e.reason)
        self._templates = templates
        return templates

    def _select(self, f: render.JobFilter, visible: list[str]) -> render.Page:
        """A page of the list; the pages that open consoles ask for after one change are computed once (10,000 jobs:
        ~10 ms each, on the event loop)."""
        if self._selected_version != self.changes.version:
            self._selected_version, self._selected = self.changes.version, {}
        key = (f, tuple(visible))
        if key not in self._selected:
            if len(self._selected) > 100:
                self._selected.clear()
            self._selected[key] = render.select(self.jobs.values(), f, visible)
        return self._selected[key]

    # -- pages ------------------------------------------------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def login_form(self, request: web.Request) -> web.Response:
        if not self.settings.authentication:
            raise web.HTTPSeeOther("/")
        return _html(render.login_page())

    async def login(self, request: web.Request) -> web.Response:
        if not self.settings.authentication:
            raise web.HTTPSeeOther("/")
        form = await request.post()
        token = str(form.get("token") or "")
        try:
            identity = await self.reviewer.authenticate(token)
        except ApiException as e:
            log.warning("console: TokenReview failed: %s", e.reason)
            return _html(render.login_page("The token could not be checked; try again."), status=503)
        if identity is None:
            return _html(render.login_page("This token is not valid."), status=401)
        session = self.sessions.create(identity, token)
        log.info("console: %s signed in", identity.username)
        response = web.HTTPSeeOther("/")
        response.set_cookie(SESSION_COOKIE, session.id, httponly=True, samesite="Strict",
                            secure=self.settings.secure_cookie, path="/")  # fmt: skip
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        session = await self._session(request)
        form = await request.post()
        if session is not None and csrf_ok(session, _submitted_csrf(request, form)):
            self.sessions.drop(session.id)
        response = web.HTTPSeeOther("/login")
        response.del_cookie(SESSION_COOKIE, path="/")
        raise response

    async def index(self, request: web.Request) -> web.Response:
        viewer = await self._viewer(request)
        if viewer is None:
            raise web.HTTPSeeOther("/login")
        templates = await self._templates_list()
        viewer = await self._viewer(request) or viewer  # the templates may name namespaces not known before
        visible = [ns for ns, r in viewer.rights.items() if r.view]
        # Not an error page: a namespace that the user may list can get its first job any moment (live updates).
        notice = "" if visible else f"{viewer.name} may not list CommerceJobs in any namespace that has some."
        f = render.JobFilter.from_query(request.query)
        page = self._select(f, visible)
        queues = sorted({render.queue_of(j) for j in self.jobs.values()})
        return _html(render.list_page(page, f, viewer, visible, queues, templates, notice))

    async def rows(self, request: web.Request) -> web.Response:
        viewer = await self._viewer(request)
        if viewer is None:
            raise web.HTTPUnauthorized(text="sign in again")
        f = render.JobFilter.from_query(request.query)
        page = self._select(f, [ns for ns, r in viewer.rights.items() if r.view])
        return web.json_response({"rows": render.rows(page, viewer), "pager": render.pager(page, f)})

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: 'changed' with the keys of the jobs that changed (the page then asks for its rows)."""
        viewer = await self._viewer(request)
        if viewer is None:
            raise web.HTTPUnauthorized(text="sign in again")
        response = _event_stream()
        await response.prepare(request)
        subscriber = self.changes.subscribe()
        try:
            await response.write(b"event: ready\ndata: {}\n\n")
            while True:
                keys = await subscriber.changes(KEEPALIVE_SECONDS)
                if not keys:
                    await response.write(b": keep-alive\n\n")
                    continue
                # Coalesce a burst (a template's start writes the job several times in a row).
                await asyncio.sleep(0.2)
                keys |= await subscriber.changes(0)
                viewer = await self._viewer(request)
                if viewer is None:
                    await response.write(b"event: signed-out\ndata: {}\n\n")
                    break
                shown = sorted(f"{ns}/{name}" for ns, name in keys if viewer.may(ns).view)
                if shown:
                    await response.write(f"event: changed\ndata: {json.dumps(shown)}\n\n".encode())
        except ConnectionResetError:
            pass  # the page was closed
        finally:
            self.changes.unsubscribe(subscriber)
        return response

    async def _readable_job(self, request: web.Request) -> tuple[render.Viewer, dict[str, Any]]:
        viewer = await self._viewer(request)
        if viewer is None:
            raise web.HTTPUnauthorized(text="sign in again")
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        if not viewer.may(namespace).view:
            raise web.HTTPForbidden(text=f"{viewer.name} may not list CommerceJobs in {namespace}")
        job = await self._api(
            GONE, self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, COMMERCEJOBS, name
        )
        return viewer, job

    async def detail(self, request: web.Request) -> web.Response:
        _, job = await self._readable_job(request)
        status = status_of(job)
        following = status.get("state") == lifecycle.RUNNING and bool(status.get("jobName"))
        key = (job["metadata"]["namespace"], job["metadata"]["name"])
        incoming = self.jobs.waiting_for(key)  # the index: no scan of the cache
        return _html(render.detail(job, self.jobs, following, incoming))

    async def output(self, request: web.Request) -> web.StreamResponse:
        """The running attempt's output as server-sent events ('output' with a JSON string), then 'end'."""
        _, job = await self._readable_job(request)
        namespace, job_name = job["metadata"]["namespace"], status_of(job).get("jobName")
        response = _event_stream()
        await response.prepare(request)
        try:
            if job_name and not self.followers.locked():
                async with self.followers:
                    pod = await self._wait_for_pod(namespace, job_name)
                    if pod is not None:
                        # Closed at once when the page goes: that ends the thread that reads the log.
                        async with contextlib.aclosing(follow_log(self.core, namespace, pod, KEEPALIVE_SECONDS)) as log:
                            async for chunk in log:
                                # An empty chunk: nothing new for a while; a comment finds out whether the page is gone.
                                text = f"event: output\ndata: {json.dumps(chunk)}\n\n" if chunk else ": keep-alive\n\n"
                                await response.write(text.encode())
            await response.write(b"event: end\ndata: {}\n\n")
        except ConnectionResetError:
            pass  # the page was closed
        return response

    async def _wait_for_pod(self, namespace: str, job_name: str) -> str | None:
        """The attempt's pod, once its container started (a Job's pod is scheduled a moment after the Job)."""
        for _ in range(30):
            pod: str | None = await self._call(started_pod, self.core, namespace, job_name)
            if pod is not None:
                return pod
            await asyncio.sleep(1)
        return None

    # -- actions ------------------------------------------------------------------------------------------------------
    async def signed_in_form(self, request: web.Request) -> tuple[Session, Any]:
        """The signed-in session of an action's request, and its form, whose CSRF token is checked."""
        if not self.settings.authentication:
            raise web.HTTPForbidden(text="the console is read-only without authentication")
        session = await self._session(request)
        if session is None:
            raise web.HTTPUnauthorized(text="sign in again")
        form = await request.post()
        if not csrf_ok(session, _submitted_csrf(request, form)):
            raise web.HTTPForbidden(text="invalid CSRF token: reload the page")
        return session, form

    async def _authorize(self, request: web.Request, verb: str) -> tuple[Session, str, str]:
        """The signed-in session, its CSRF token checked, and the right to <verb> commercejobs in the namespace."""
        session, form = await self.signed_in_form(request)
        namespace, name = str(form.get("namespace") or ""), str(form.get("name") or "")
        if not namespace or not name:
            raise web.HTTPBadRequest(text="namespace and name are required")
        if not await self.reviewer.allowed(session.identity, verb, namespace):
            log.info("console: %s may not %s commercejobs in %s", session.identity.username, verb, namespace)
            raise web.HTTPForbidden(text=f"{session.identity.username} may not {verb} CommerceJobs in {namespace}")
        return session, namespace, name

    async def start_job(self, request: web.Request) -> web.Response:
        session, namespace, template = await self._authorize(request, "create")
        missing = f"no CommerceJobTemplate {template} in {namespace}"
        read = self.custom.get_namespaced_custom_object
        await self._api(missing, read, GROUP, VERSION, namespace, COMMERCEJOBTEMPLATES, template)
        body = from_template(template, started_by=session.identity.username)
        created = await self._as_user(session, missing, lambda api: api.create_namespaced_custom_object(
            GROUP, VERSION, namespace, COMMERCEJOBS, body))  # fmt: skip
        return self._done(request, session, f"started {created['metadata']['name']} from template {template}")

    async def cancel_job(self, request: web.Request) -> web.Response:
        session, namespace, name = await self._authorize(request, "patch")
        await self._as_user(session, GONE, lambda api: api.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, COMMERCEJOBS, name, {"spec": {"cancel": True}}))  # fmt: skip
        return self._done(request, session, f"asked {name} to cancel")

    async def retry_job(self, request: web.Request) -> web.Response:
        session, namespace, name = await self._authorize(request, "create")
        job = await self._api(
            GONE, self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, COMMERCEJOBS, name
        )
        if render.state_of(job) not in render.RETRYABLE:
            raise web.HTTPConflict(text=f"{name} is {render.state_of(job)}: only failed jobs are retried")
        body = retry_of(job, started_by=session.identity.username)
        template = body["spec"].get("templateRef", {}).get("name")
        if template:  # started from its template again: which must still exist
            missing = f"{name} cannot be retried: no CommerceJobTemplate {template} in {namespace}"
            read = self.custom.get_namespaced_custom_object
            await self._api(missing, read, GROUP, VERSION, namespace, COMMERCEJOBTEMPLATES, template)
        created = await self._as_user(session, GONE, lambda api: api.create_namespaced_custom_object(
            GROUP, VERSION, namespace, COMMERCEJOBS, body))  # fmt: skip
        how = f" from template {template}" if template else ""
        return self._done(request, session, f"retrying {name} as {created['metadata']['name']}{how}")

    def _done(self, request: web.Request, session: Session, message: str) -> web.Response:
        log.info("console: %s %s", session.identity.username, message)
        if request.headers.get("X-Requested-With") == "console":
            return web.json_response({"message": message})
        raise web.HTTPSeeOther("/")  # a plain form post (no JavaScript): back to the list


def _submitted_csrf(request: web.Request, form: Any) -> str | None:
    return request.headers.get("X-CSRF-Token") or (str(form.get("csrf")) if form.get("csrf") else None)


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _event_stream() -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
    response.headers.update(SECURITY_HEADERS)
    return response
