"""Dependencies between CommerceJobs that exist (``spec.dependsOn``): JMSJobQueueBundle's ``addDependency`` (pure).

A job that names other CommerceJobs of its namespace in ``spec.dependsOn`` waits, Pending with reason
``WaitingForDependencies``, until every one of them is Finished; then it competes for its queue like any other job.

- A dependency that ends in any other final state (Failed, Terminated, Incomplete, Canceled: after its retries, since
  a job stays Running while a retry waits) cancels the job, reason ``DependencyFailed`` naming it. The job's own
  dependents then see a Canceled dependency, and so on down the whole graph: each job is canceled once, by its own
  final transition.
- A name that does not exist (yet) is waited for ``grace`` after the job's creation (GitOps tools apply objects in
  any order), then the job fails with ``DependencyNotFound``. A dependency that is deleted while the job waits counts
  as not found again.
- A cycle never waits. dependsOn cannot change once the job exists, so a cycle can only form when its last job
  appears; and that job is named by a job that was there before it (the previous one on the cycle). So when a job
  appears whose name somebody already waits for, the index walks its dependencies (only through jobs that wait, i.e.
  never started and not final); if the walk comes back to it, every job of the cycle fails with ``DependencyCycle``,
  naming the cycle. A job that names itself is refused by the CRD already.

The index keeps both directions of the graph, so that a job reaching a final state wakes exactly the jobs that wait
for it (never a scan of the cache), and the console shows a job's incoming dependencies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from commerce_jobs.fields import spec_of, state_of, status_of
from commerce_jobs.lifecycle import (
    CANCELED,
    FAILED,
    FINAL_STATES,
    FINISHED,
    PENDING,
    format_time,
    parse_time,
    state_patch,
)

Key = tuple[str, str]  # (namespace, name) of a CommerceJob

DEFAULT_GRACE = timedelta(minutes=5)  # as long as a job waits for a missing template

WAITING = "WaitingForDependencies"  # Pending
DEPENDENCY_FAILED = "DependencyFailed"  # Canceled
NOT_FOUND = "DependencyNotFound"  # Failed
CYCLE = "DependencyCycle"  # Failed
NOT_FOUND_STATE = "NotFound"  # the state of a missing dependency in status.dependencies

# What a verdict means for the job.
READY, WAIT, CANCEL, FAIL = "ready", "wait", "cancel", "fail"


def depends_on(cjob: Mapping[str, Any]) -> tuple[str, ...]:
    """The names that a job waits for, in the order its spec gives them."""
    return tuple(str(n) for n in spec_of(cjob).get("dependsOn") or [])


def waits(cjob: Mapping[str, Any]) -> bool:
    """Whether a job has not started and is not final: only such a job can still wait for a dependency (a started
    job never looks at its dependencies again)."""
    status = status_of(cjob)
    if status.get("state") in FINAL_STATES or status.get("startTime"):
        return False
    return int(status.get("attempts") or 0) == 0


def blocked(cjob: Mapping[str, Any], lookup: Callable[[str], Mapping[str, Any] | None]) -> bool:
    """Whether a job has a dependency that is not Finished (or does not exist): then it does not compete for its
    queue. ``lookup`` finds a cached CommerceJob of the job's namespace by name."""
    return any((dep := lookup(name)) is None or state_of(dep) != FINISHED for name in depends_on(cjob))


# -- the decision ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """What the dependencies of a job that has not started say about it."""

    outcome: str  # READY, WAIT, CANCEL or FAIL
    reason: str = ""
    message: str = ""
    # status.dependencies: each dependency with its state (NotFound when missing), in dependsOn order.
    entries: tuple[tuple[str, str], ...] = ()
    waiting_on: tuple[str, ...] = ()  # the dependencies not Finished (yet): the WAITING ON column
    recheck_at: datetime | None = None  # a missing dependency fails the job at this time

    def status_fields(self) -> dict[str, Any]:
        """The status fields that show the dependencies (a merge patch: None removes waitingOn, which only a job that
        waits has)."""
        waiting_on = ", ".join(self.waiting_on) if self.outcome == WAIT else ""
        return {
            "dependencies": [{"name": name, "state": state} for name, state in self.entries],
            "waitingOn": waiting_on or None,
        }


def decide(
    cjob: Mapping[str, Any],
    dependencies: Mapping[str, Mapping[str, Any] | None],
    now: datetime,
    grace: timedelta = DEFAULT_GRACE,
    cycle: Sequence[str] | None = None,
) -> Verdict:
    """What a job that has not started does about its dependencies.

    ``dependencies`` holds the cached CommerceJob of each name in its dependsOn (None for a missing one); ``cycle``
    is the cycle that the job is part of, if the index found one. The order of the checks makes the outcome
    definite first: a cycle, then a dependency that ended otherwise than Finished, then a name missing past the grace;
    only then does it wait, or is it ready.
    """
    names = depends_on(cjob)
    entries = tuple((n, state_of(d) if d is not None else NOT_FOUND_STATE) for n, d in _each(names, dependencies))
    unfinished = tuple(name for name, state in entries if state != FINISHED)
    if cycle:
        path = " -> ".join([*cycle, cycle[0]])
        message = f"its dependsOn closes a cycle ({path}): none of these jobs could ever start"
        return Verdict(FAIL, CYCLE, message, entries, unfinished)
    failed = [(n, d) for n, d in _each(names, dependencies) if d is not None and _failed(d)]
    if failed:
        message = "; ".join(_failure(name, dep) for name, dep in failed)
        return Verdict(CANCEL, DEPENDENCY_FAILED, message, entries, unfinished)
    missing = [name for name, state in entries if state == NOT_FOUND_STATE]
    if missing:
        created = parse_time(str((cjob.get("metadata") or {}).get("creationTimestamp") or "")) or now
        deadline = created + grace
        listed = ", ".join(missing)
        if now >= deadline:
            message = f"dependency {listed} not found: no CommerceJob of that name in its namespace {_ago(grace)}"
            return Verdict(FAIL, NOT_FOUND, message, entries, unfinished)
        message = (f"waits for {_states(entries, unfinished)}; {listed} not found yet: the job fails at "
                   f"{format_time(deadline)} unless it is created")  # fmt: skip
        return Verdict(WAIT, WAITING, message, entries, unfinished, recheck_at=deadline)
    if unfinished:
        return Verdict(WAIT, WAITING, f"waits for {_states(entries, unfinished)}", entries, unfinished)
    return Verdict(READY, entries=entries)


def waiting_patch(cjob: Mapping[str, Any], verdict: Verdict, now: datetime) -> dict[str, Any] | None:
    """The status of a job that waits for its dependencies: Pending, naming those not Finished; None when its status
    says so already (no write for nothing)."""
    fields = verdict.status_fields()
    status = status_of(cjob)
    recorded = {k: status.get(k) for k in ("reason", "message", *fields)}
    if state_of(cjob) == PENDING and recorded == {"reason": WAITING, "message": verdict.message, **fields}:
        return None
    patch = state_patch(dict(cjob), PENDING, "Unknown", WAITING, verdict.message, now)
    patch.update(fields)
    return patch


def end_patch(cjob: Mapping[str, Any], verdict: Verdict, now: datetime) -> dict[str, Any]:
    """The status of a job that its dependencies end before it started: Canceled (CANCEL) or Failed (FAIL)."""
    final = CANCELED if verdict.outcome == CANCEL else FAILED
    patch = state_patch(dict(cjob), final, "False", verdict.reason, verdict.message, now)
    patch["completionTime"] = format_time(now)
    patch.update(verdict.status_fields())
    return patch


def ready_fields(cjob: Mapping[str, Any], verdict: Verdict) -> dict[str, Any]:
    """What a job that may start now still has to record of its dependencies (all Finished, no WAITING ON); {} when
    its status says so already."""
    status = status_of(cjob)
    fields = verdict.status_fields()
    return {} if all(status.get(k) == v for k, v in fields.items()) else fields


def _each(
    names: Iterable[str], dependencies: Mapping[str, Mapping[str, Any] | None]
) -> list[tuple[str, Mapping[str, Any] | None]]:
    return [(name, dependencies.get(name)) for name in names]


def _failed(dependency: Mapping[str, Any]) -> bool:
    state = state_of(dependency)
    return state in FINAL_STATES and state != FINISHED


def _failure(name: str, dependency: Mapping[str, Any]) -> str:
    status = status_of(dependency)
    reason = status.get("reason")
    why = f" ({reason})" if reason and reason != status.get("state") else ""
    return f"dependency {name} ended {state_of(dependency)}{why}"


def _states(entries: Iterable[tuple[str, str]], names: Iterable[str]) -> str:
    wanted = set(names)
    return ", ".join(f"{name} ({state})" for name, state in entries if name in wanted)


def _ago(grace: timedelta) -> str:
    seconds = int(grace.total_seconds())
    return f"{seconds // 60} min after its creation" if seconds % 60 == 0 else f"{seconds}s after its creation"


# -- the index ------------------------------------------------------------------------------------------------------
@dataclass
class DependencyIndex:
    """The dependency graph of the cached CommerceJobs, both ways, per namespace.

    ``dependencies``: job -> the names it waits for (only jobs that have dependsOn); ``waiters``: (namespace, name)
    -> the jobs that name it, whether or not a job of that name exists (yet); ``cycles``: job -> the cycle that it
    closes or is part of. Every entry goes when its job leaves the cache (``discard``), so the index never outgrows
    the cache.
    """

    dependencies: dict[Key, tuple[str, ...]] = field(default_factory=dict)
    waiters: dict[Key, set[Key]] = field(default_factory=dict)
    cycles: dict[Key, tuple[str, ...]] = field(default_factory=dict)

    def put(self, key: Key, names: Sequence[str], waiting: Callable[[Key], bool]) -> tuple[Key, ...]:
        """Records a cached job's dependsOn. ``waiting(key)`` says whether a cached job waits (see ``waits``; False
        for a job that is not in the cache). When the job arrives (it was not in the index) and somebody already
        waits for its name, its arrival may close a cycle: then returns the jobs of that cycle (each recorded in
        ``cycles``), else ()."""
        names = tuple(dict.fromkeys(names))  # the CRD keeps them unique; a hand-made object may not
        arrived = key not in self.dependencies
        old = self.dependencies.get(key, ())
        if old == names and not arrived:
            return ()
        self._unlink(key, old)
        if not names:
            self.dependencies.pop(key, None)
            return ()
        self.dependencies[key] = names
        namespace = key[0]
        for name in names:
            self.waiters.setdefault((namespace, name), set()).add(key)
        if not arrived or not self.waiters.get(key) or not waiting(key):
            return ()
        cycle = self._cycle_through(key, waiting)
        if not cycle:
            return ()
        path = tuple(name for _, name in cycle)
        for member in cycle:
            start = path.index(member[1])
            self.cycles[member] = path[start:] + path[:start]  # each member's message starts with itself
        return tuple(cycle)

    def discard(self, key: Key) -> None:
        """The job left the cache (it was deleted)."""
        self._unlink(key, self.dependencies.pop(key, ()))
        self.cycles.pop(key, None)

    def sizes(self) -> dict[str, int]:
        """Entries held, for a test or a gauge: every one belongs to a cached job."""
        return {
            "dependencies jobs": len(self.dependencies),
            "dependencies names waited for": len(self.waiters),
            "dependencies cycles": len(self.cycles),
        }

    def names(self, key: Key) -> tuple[str, ...]:
        return self.dependencies.get(key, ())

    def waiting_for(self, key: Key) -> frozenset[Key]:
        """The jobs that name this one in their dependsOn (its incoming dependencies)."""
        return frozenset(self.waiters.get(key, ()))

    def cycle(self, key: Key) -> tuple[str, ...] | None:
        return self.cycles.get(key)

    def _unlink(self, key: Key, names: Iterable[str]) -> None:
        for name in names:
            target = (key[0], name)
            waiters = self.waiters.get(target)
            if waiters is not None:
                waiters.discard(key)
                if not waiters:
                    del self.waiters[target]

    def _cycle_through(self, start: Key, waiting: Callable[[Key], bool]) -> list[Key]:
        """A path of waiting jobs from ``start`` along dependsOn back to ``start`` (depth first, each job visited
        once), or [] when there is none."""
        namespace = start[0]
        parent: dict[Key, Key] = {}
        stack = [start]
        seen = {start}
        while stack:
            current = stack.pop()
            for name in self.dependencies.get(current, ()):
                nxt = (namespace, name)
                if nxt == start:
                    path = [current]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return path[::-1]
                if nxt in seen or not waiting(nxt):
                    continue
                seen.add(nxt)
                parent[nxt] = current
                stack.append(nxt)
        return []


def waited_for(cjobs: Iterable[Mapping[str, Any]]) -> set[Key]:
    """The jobs that a job which is not final names in its dependsOn: retention keeps them (one pass over the jobs
    that retention walks anyway)."""
    kept: set[Key] = set()
    for cjob in cjobs:
        if state_of(cjob) in FINAL_STATES:
            continue
        namespace = str((cjob.get("metadata") or {}).get("namespace", ""))
        kept.update((namespace, name) for name in depends_on(cjob))
    return kept
