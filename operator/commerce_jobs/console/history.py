"""The console's History and Crontab tasks routes (thin handlers; the pages are console/tasks.py, the pictures
console/pictures.py).

Who sees what: History shows the jobs, templates and crontab tasks of the namespaces where the user may list
CommerceJobs; Crontab tasks those where they may list CommerceCronJobs; Suspend/Resume needs `patch
commercecronjobs` in the task's namespace. Each is a SubjectAccessReview, like the console's other views and
actions; the patch is then made with the operator's own rights and logged with the user's name.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from kubernetes.client.exceptions import ApiException

from commerce_jobs.api_names import COMMERCECRONJOBS, GROUP, VERSION
from commerce_jobs.console import tasks

if TYPE_CHECKING:
    from commerce_jobs.console.app import Console

log = logging.getLogger("commerce_jobs.console")


class HistoryViews:
    def __init__(self, console: Console) -> None:
        self.console = console

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/history", self.history),
            web.get("/crontab", self.crontab),
            web.post("/crontab/suspend", self.suspend),
        ]

    async def _crons(self) -> list[dict[str, Any]]:
        """The CommerceCronJobs, read afresh for each page (a few dozen; and right after Suspend, the page shows it)."""
        console = self.console
        try:
            if console.namespaces:
                read = console.custom.list_namespaced_custom_object
                pages = await asyncio.gather(
                    *(console._call(read, GROUP, VERSION, ns, COMMERCECRONJOBS) for ns in console.namespaces)
                )
                return [c for page in pages for c in page["items"]]
            page = await console._call(console.custom.list_cluster_custom_object, GROUP, VERSION, COMMERCECRONJOBS)
        except ApiException as e:
            log.warning("console: cannot list CommerceCronJobs: %s", e.reason)
            return []
        return list(page["items"])

    async def history(self, request: web.Request) -> web.Response:
        viewer = await self.console._viewer(request)
        if viewer is None:
            raise web.HTTPSeeOther("/login")
        visible = {ns for ns, r in viewer.rights.items() if r.view}
        templates = [t for t in await self.console._templates_list() if t["metadata"].get("namespace") in visible]
        crons = [c for c in await self._crons() if c["metadata"].get("namespace") in visible]
        jobs = [j for (ns, _), j in self.console.jobs.items() if ns in visible]
        page = tasks.history_page(viewer, jobs, templates, crons, datetime.now(UTC))
        return web.Response(text=page, content_type="text/html", charset="utf-8")

    async def _cron_rights(self, request: web.Request, namespaces: set[str]) -> tuple[Any, dict[str, tasks.CronRights]]:
        viewer = await self.console._viewer(request)
        if viewer is None:
            raise web.HTTPSeeOther("/login")
        if not self.console.settings.authentication:
            return viewer, dict.fromkeys(namespaces, tasks.CronRights(view=True))
        session = await self.console._session(request)
        if session is None:
            raise web.HTTPSeeOther("/login")
        allowed = self.console.reviewer.allowed

        async def rights(namespace: str) -> tasks.CronRights:
            if not await allowed(session.identity, "list", namespace, COMMERCECRONJOBS):
                return tasks.CronRights()
            return tasks.CronRights(
                view=True, suspend=await allowed(session.identity, "patch", namespace, COMMERCECRONJOBS)
            )

        ordered = sorted(namespaces)
        return viewer, dict(zip(ordered, await asyncio.gather(*(rights(ns) for ns in ordered)), strict=True))

    async def crontab(self, request: web.Request) -> web.Response:
        crons = await self._crons()
        viewer, rights = await self._cron_rights(request, {c["metadata"].get("namespace", "") for c in crons})
        jobs = [j for (ns, _), j in self.console.jobs.items() if rights.get(ns, tasks.CronRights()).view]
        notice = "" if any(r.view for r in rights.values()) or not crons else (
            f"{viewer.name} may not list CommerceCronJobs in any namespace that has some."
        )  # fmt: skip
        page = tasks.crontab_page(viewer, crons, rights, jobs, datetime.now(UTC), notice)
        return web.Response(text=page, content_type="text/html", charset="utf-8")

    async def suspend(self, request: web.Request) -> web.Response:
        """Suspend (suspend=true) or resume (suspend=false) a crontab task: spec.suspend, which its CronJob follows."""
        console = self.console
        session, form = await console.signed_in_form(request)
        namespace, name, wanted = (str(form.get(k) or "") for k in ("namespace", "name", "suspend"))
        if not namespace or not name or wanted not in ("true", "false"):
            raise web.HTTPBadRequest(text="namespace, name and suspend (true or false) are required")
        user = session.identity.username
        if not await console.reviewer.allowed(session.identity, "patch", namespace, COMMERCECRONJOBS):
            log.info("console: %s may not patch commercecronjobs in %s", user, namespace)
            raise web.HTTPForbidden(text=f"{user} may not patch CommerceCronJobs in {namespace}")
        suspend = {"spec": {"suspend": wanted == "true"}}
        await console._api(f"no CommerceCronJob {name} in {namespace}", console.custom.patch_namespaced_custom_object,
                           GROUP, VERSION, namespace, COMMERCECRONJOBS, name, suspend)  # fmt: skip
        log.info("console: %s %s crontab task %s/%s", user, "suspended" if wanted == "true" else "resumed",
                 namespace, name)  # fmt: skip
        raise web.HTTPSeeOther("/crontab")
