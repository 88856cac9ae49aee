"""The controller's cache: CommerceJobs, the batch Jobs of their attempts, and what their pods reported, fed by the
watch streams. No API calls; the controller decides from it.

Every entry is tied to an object that exists: it is removed at that object's DELETED event at the latest. Late
events of objects that go away with a deleted CommerceJob (its Jobs and pods, which the garbage collector deletes
after it, in other streams) may come after its own DELETED event; they never leave an entry behind, because each
such object's own DELETED event comes after them in its stream.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from commerce_jobs import lifecycle
from commerce_jobs.api_names import (
    ATTEMPT_LABEL,
    COMMERCECRONJOB,
    COMMERCEJOB,
    CRON_LABEL,
    JOB_NAME_LABEL,
    PREFIX,
)
from commerce_jobs.fields import spec_of, state_of, status_of
from commerce_jobs.kubeapi import pod_outcome
from commerce_jobs.lifecycle import JobView, PodOutcome, PodProblem

Key = tuple[str, str]  # (namespace, name)


def trim_commercejob(body: dict[str, Any]) -> dict[str, Any]:
    """What the cache keeps of a CommerceJob: everything but the output, which can be 64 KiB a job."""
    meta = body.get("metadata") or {}
    status = {k: v for k, v in status_of(body).items() if k != "output"}
    kept = ("name", "namespace", "uid", "generation", "resourceVersion", "creationTimestamp", "ownerReferences")
    trimmed_meta = {k: meta[k] for k in kept if k in meta}
    ours = {k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith(PREFIX)}
    if ours:
        trimmed_meta["annotations"] = ours
    return {
        "metadata": trimmed_meta,
        "spec": dict(spec_of(body)),
        "status": status,
    }


def job_view(body: dict[str, Any]) -> JobView | None:
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    try:
        attempt = int(labels.get(ATTEMPT_LABEL, ""))
    except ValueError:
        return None
    complete = failed = False
    reason = ""
    finished_at = None
    for cond in status_of(body).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            complete = True
            finished_at = lifecycle.parse_time(status_of(body).get("completionTime")) or (
                lifecycle.parse_time(cond.get("lastTransitionTime"))
            )
        elif cond.get("type") == "Failed":
            failed = True
            reason = cond.get("reason") or ""
            finished_at = lifecycle.parse_time(cond.get("lastTransitionTime"))
    return JobView(
        name=meta.get("name", ""),
        attempt=attempt,
        complete=complete,
        failed=failed,
        failure_reason=reason,
        finished_at=finished_at,
        deleting=bool(meta.get("deletionTimestamp")),
    )


def owner_name(meta: dict[str, Any], kind: str) -> str | None:
    return next((r.get("name") for r in meta.get("ownerReferences") or [] if r.get("kind") == kind), None)


def owner_uid(meta: dict[str, Any], kind: str) -> str | None:
    return next((r.get("uid") for r in meta.get("ownerReferences") or [] if r.get("kind") == kind), None)


def rv(obj: dict[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("resourceVersion", ""))


@dataclass
class JobCache:
    # The CommerceJobs, trimmed (trim_commercejob), by (namespace, name).
    cjobs: dict[Key, dict[str, Any]] = field(default_factory=dict)
    # The batch Jobs of each CommerceJob by attempt, keyed by the CommerceJob's uid: a CommerceJob deleted and
    # created again under the same name never takes the old one's Jobs for its own.
    attempts: dict[str, dict[int, JobView]] = field(default_factory=dict)
    # Which CommerceJob a batch Job belongs to, by (namespace, Job name): a pod's label holds only 63 characters of it.
    job_owners: dict[Key, Key] = field(default_factory=dict)
    # How the newest ended pod of each Job ended, by (namespace, Job name): read when the attempt is collected.
    pod_outcomes: dict[Key, PodOutcome] = field(default_factory=dict)
    # Why the container of a Job's pod cannot start, by (namespace, Job name).
    pod_problems: dict[Key, PodProblem] = field(default_factory=dict)
    # Jobs that a CronJob started and that no CommerceJob records yet, by (namespace, Job name).
    adoptions: dict[Key, dict[str, Any]] = field(default_factory=dict)

    # -- CommerceJobs ---------------------------------------------------------------------------------------------
    def get(self, key: Key) -> dict[str, Any] | None:
        return self.cjobs.get(key)

    def values(self) -> Iterator[dict[str, Any]]:
        return iter(self.cjobs.values())

    def put(self, key: Key, cjob: dict[str, Any]) -> dict[str, Any] | None:
        """Stores a CommerceJob; returns the version it replaces."""
        old = self.cjobs.get(key)
        self.cjobs[key] = cjob
        if old is not None and old["metadata"].get("uid") != cjob["metadata"].get("uid"):
            self._forget_attempts(key[0], old["metadata"].get("uid", ""))  # a DELETED event that was missed
        return old

    def drop(self, key: Key, uid: str) -> None:
        """A CommerceJob is gone: it and everything known of its Jobs and pods."""
        cached = self.cjobs.get(key)
        if cached is not None and cached["metadata"].get("uid") in (uid, None):
            del self.cjobs[key]
        self._forget_attempts(key[0], uid)

    def state_of(self, namespace: str) -> Callable[[str], str | None]:
        """The state of a job of the namespace, by name (Pending until it has one); None when it is not cached."""

        def state(name: str) -> str | None:
            cjob = self.cjobs.get((namespace, name))
            return None if cjob is None else state_of(cjob)

        return state

    def attempts_of(self, cjob: dict[str, Any]) -> dict[int, JobView]:
        return self.attempts.get(cjob["metadata"].get("uid", ""), {})

    def _forget_attempts(self, namespace: str, uid: str) -> None:
        for view in self.attempts.pop(uid, {}).values():
            job_key = (namespace, view.name)
            self.job_owners.pop(job_key, None)
            self.pod_outcomes.pop(job_key, None)
            self.pod_problems.pop(job_key, None)

    # -- batch Jobs -----------------------------------------------------------------------------------------------
    def observe_job(self, event_type: str | None, body: dict[str, Any]) -> Key | None:
        """Records a Job's event; returns the key to reconcile: its CommerceJob's, or (a scheduled run that no
        CommerceJob records yet) the Job's own, for adoption."""
        meta = body.get("metadata") or {}
        view = job_view(body)
        if view is None:
            return None
        job_key = (meta["namespace"], meta["name"])
        owner, uid = owner_name(meta, COMMERCEJOB), owner_uid(meta, COMMERCEJOB)
        if not owner or not uid:
            if event_type != "DELETED" and CRON_LABEL in (meta.get("labels") or {}):
                self.adoptions[job_key] = body  # a scheduled run: to record as a CommerceJob of the same name
                return job_key
            self.adoptions.pop(job_key, None)
            return None
        self.adoptions.pop(job_key, None)
        key = (meta["namespace"], owner)
        if event_type == "DELETED":
            views = self.attempts.get(uid)
            if views is not None and views.get(view.attempt, view).name == view.name:
                views.pop(view.attempt, None)
                if not views:
                    del self.attempts[uid]
            self.job_owners.pop(job_key, None)
            self.pod_outcomes.pop(job_key, None)
            self.pod_problems.pop(job_key, None)
        else:
            self.attempts.setdefault(uid, {})[view.attempt] = view
            self.job_owners[job_key] = key
        return key if key in self.cjobs else None

    def record_created(self, cjob: dict[str, Any], view: JobView) -> JobView:
        """A Job that the operator created (or adopted): known before the watch reports it, so that the next
        decision does not ask the apiserver again. A view that the watch reported already is kept (a Job that a
        killed operator created may have ended already) and returned."""
        return self.attempts.setdefault(cjob["metadata"]["uid"], {}).setdefault(view.attempt, view)

    # -- pods -----------------------------------------------------------------------------------------------------
    def observe_pod(self, event_type: str | None, body: dict[str, Any], problem: PodProblem | None) -> Key | None:
        """Records what a Job's pod says (``problem``: why its container cannot start, if it cannot); returns the
        CommerceJob to reconcile when that changed a decision's input."""
        meta = body.get("metadata") or {}
        labels = meta.get("labels") or {}
        job_name = labels.get(JOB_NAME_LABEL)
        if not job_name or not labels.get(ATTEMPT_LABEL, "").isdigit():
            return None
        job_key = (meta["namespace"], job_name)
        owner = self.job_owners.get(job_key)
        if event_type == "DELETED":
            if owner is None:  # its Job is gone too: nothing of it is needed any more
                self.pod_outcomes.pop(job_key, None)
            known = self.pod_problems.pop(job_key, None)
            return owner if known is not None else None
        outcome = pod_outcome(body)
        known_outcome = self.pod_outcomes.get(job_key)
        if outcome.exit_code is not None and (known_outcome is None or known_outcome.created <= outcome.created):
            self.pod_outcomes[job_key] = outcome
        known = self.pod_problems.get(job_key)
        if problem is None:
            if known is None:
                return None
            del self.pod_problems[job_key]
            return owner
        if known is not None:
            if known.reason == problem.reason:
                return None  # the same trouble as before
            # Another reason for the same trouble (a kubelet alternates ErrImagePull and ImagePullBackOff): the
            # start timeout runs from the time it began.
            problem = dataclasses.replace(problem, since=known.since)
        self.pod_problems[job_key] = problem
        return owner

    def pod_problem(self, namespace: str, job_name: str) -> PodProblem | None:
        return self.pod_problems.get((namespace, job_name))

    def sizes(self) -> dict[str, int]:
        return {
            "commercejobs": len(self.cjobs),
            "attempts": sum(len(v) for v in self.attempts.values()),
            "attempt owners": len(self.attempts),
            "job owners": len(self.job_owners),
            "pod outcomes": len(self.pod_outcomes),
            "pod problems": len(self.pod_problems),
            "adoptions": len(self.adoptions),
        }


class CachedJobs(Mapping[Key, dict[str, Any]]):
    """The read API of the controller's cache, for the console, the cron controller and the metrics: the cached
    CommerceJobs (trimmed: no output) by (namespace, name), read-only, and the look-ups they need. Read it on the
    event loop's thread, as the controller writes it there."""

    def __init__(self, cache: JobCache, waiting_for: Callable[[Key], Iterable[Key]]) -> None:
        self._cache = cache
        self._waiting_for = waiting_for

    def __getitem__(self, key: Key) -> dict[str, Any]:
        return self._cache.cjobs[key]

    def __iter__(self) -> Iterator[Key]:
        return iter(self._cache.cjobs)

    def __len__(self) -> int:
        return len(self._cache.cjobs)

    def waiting_for(self, key: Key) -> list[Key]:
        """The jobs whose spec.dependsOn names this one (through the dependency index: no scan of the cache)."""
        return list(self._waiting_for(key))

    def runs_of(self, namespace: str, cron: str) -> list[dict[str, Any]]:
        """The CommerceJobs that record the runs of a CommerceCronJob."""
        return [
            j for (ns, _), j in self._cache.cjobs.items()
            if ns == namespace and any(r.get("kind") == COMMERCECRONJOB and r.get("name") == cron
                                       for r in j["metadata"].get("ownerReferences") or [])
        ]  # fmt: skip
