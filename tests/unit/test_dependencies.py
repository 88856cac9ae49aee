"""The pure dependency model (spec.dependsOn): the decision for a job that has not started, and the index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commerce_jobs import dependencies
from commerce_jobs.dependencies import (
    CANCEL,
    CYCLE,
    DEPENDENCY_FAILED,
    FAIL,
    NOT_FOUND,
    READY,
    WAIT,
    WAITING,
    DependencyIndex,
    decide,
    waited_for,
    waits,
)

NOW = datetime(2026, 12, 3, 9, 0, 0, tzinfo=UTC)
CREATED = "2026-12-03T08:59:00Z"  # a minute before NOW
GRACE = timedelta(minutes=5)


def job(name: str, *deps: str, namespace: str = "shop", created: str = CREATED, **status: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"command": "silver:index"}
    if deps:
        spec["dependsOn"] = list(deps)
    return {
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
        "spec": spec,
        "status": dict(status),
    }


def finished(name: str) -> dict[str, Any]:
    return job(name, state="Finished", reason="Completed", attempts=1, startTime=CREATED)


def running(name: str, **status: Any) -> dict[str, Any]:
    return job(name, **{"state": "Running", "reason": "Running", "attempts": 1, "startTime": CREATED, **status})


# -- decide ---------------------------------------------------------------------------------------------------------
def test_a_job_waits_while_a_dependency_is_not_finished_and_names_those_not_finished() -> None:
    d = job("index", "import-a", "import-b", "import-c")
    verdict = decide(d, {"import-a": finished("import-a"), "import-b": running("import-b"),
                         "import-c": job("import-c", state="Pending", reason="Queued")}, NOW)  # fmt: skip
    assert verdict.outcome == WAIT
    assert verdict.reason == WAITING == "WaitingForDependencies"
    assert verdict.waiting_on == ("import-b", "import-c")
    assert verdict.message == "waits for import-b (Running), import-c (Pending)"
    assert verdict.recheck_at is None  # woken by the dependencies' changes, not by a timer
    assert verdict.status_fields() == {
        "dependencies": [
            {"name": "import-a", "state": "Finished"},
            {"name": "import-b", "state": "Running"},
            {"name": "import-c", "state": "Pending"},
        ],
        "waitingOn": "import-b, import-c",
    }


def test_a_job_is_ready_once_every_dependency_finished() -> None:
    verdict = decide(job("index", "a", "b"), {"a": finished("a"), "b": finished("b")}, NOW)
    assert verdict.outcome == READY
    assert verdict.waiting_on == ()
    # The list stays, all Finished; WAITING ON is removed (None in a merge patch).
    assert verdict.status_fields() == {
        "dependencies": [{"name": "a", "state": "Finished"}, {"name": "b", "state": "Finished"}],
        "waitingOn": None,
    }


def test_a_dependency_whose_retry_waits_for_its_backoff_is_not_final_yet() -> None:
    """As in JMS: the original stays running while it is retried, so its dependents wait and are not canceled."""
    retrying = running("import", reason="RetryBackoff", attempts=2, exitCode=1, nextAttemptTime="2026-12-03T09:01:00Z")
    verdict = decide(job("index", "import"), {"import": retrying}, NOW)
    assert verdict.outcome == WAIT
    assert verdict.waiting_on == ("import",)
    # ... and a retry that then succeeds makes the job ready.
    assert decide(job("index", "import"), {"import": finished("import")}, NOW).outcome == READY


@pytest.mark.parametrize("final", ["Failed", "Terminated", "Incomplete", "Canceled"])
def test_a_dependency_that_ends_otherwise_than_finished_cancels_the_job_naming_it(final: str) -> None:
    ended = job("import", state=final, reason="SomeReason", attempts=3)
    verdict = decide(job("index", "other", "import"), {"other": running("other"), "import": ended}, NOW)
    assert verdict.outcome == CANCEL
    assert verdict.reason == DEPENDENCY_FAILED == "DependencyFailed"
    assert verdict.message == f"dependency import ended {final} (SomeReason)"
    assert ("import", final) in verdict.entries
    assert verdict.status_fields()["waitingOn"] is None  # a final job waits for nothing: no WAITING ON


def test_a_canceled_dependency_cancels_down_the_graph_naming_the_direct_one() -> None:
    """C was canceled because B failed: D, which waits for C, is canceled naming C (and C's reason)."""
    c = job("c", "b", state="Canceled", reason="DependencyFailed", message="dependency b ended Failed (Failed)")
    verdict = decide(job("d", "c"), {"c": c}, NOW)
    assert (verdict.outcome, verdict.message) == (CANCEL, "dependency c ended Canceled (DependencyFailed)")


def test_every_failed_dependency_is_named() -> None:
    verdict = decide(job("d", "b", "c"), {"b": job("b", state="Failed"), "c": job("c", state="Terminated")}, NOW)
    assert verdict.message == "dependency b ended Failed; dependency c ended Terminated"


def test_a_missing_dependency_is_waited_for_during_the_grace_then_fails_the_job() -> None:
    d = job("index", "import", "seed")  # created at 08:59, grace 5 min: until 09:04
    verdict = decide(d, {"import": finished("import"), "seed": None}, NOW, GRACE)
    assert verdict.outcome == WAIT
    assert verdict.reason == WAITING
    assert verdict.waiting_on == ("seed",)
    assert verdict.recheck_at == datetime(2026, 12, 3, 9, 4, tzinfo=UTC)
    assert verdict.message == "waits for seed (NotFound); seed not found yet: the job fails at 2026-12-03T09:04:00Z " \
                              "unless it is created"  # fmt: skip
    assert ("seed", "NotFound") in verdict.entries

    late = decide(d, {"import": finished("import"), "seed": None}, NOW + timedelta(minutes=4), GRACE)
    assert late.outcome == FAIL
    assert late.reason == NOT_FOUND == "DependencyNotFound"
    assert late.message == "dependency seed not found: no CommerceJob of that name in its namespace 5 min after " \
                           "its creation"  # fmt: skip

    # Created within the grace (GitOps applied it after the job): the job simply waits for it.
    appeared = decide(d, {"import": finished("import"), "seed": job("seed")}, NOW + timedelta(minutes=4), GRACE)
    assert appeared.outcome == WAIT


def test_a_failed_dependency_decides_before_a_missing_one() -> None:
    verdict = decide(job("d", "gone", "broken"), {"gone": None, "broken": job("broken", state="Failed")}, NOW)
    assert verdict.outcome == CANCEL


def test_a_cycle_fails_the_job_naming_the_cycle_before_anything_else() -> None:
    verdict = decide(job("a", "b"), {"b": job("b", state="Failed")}, NOW, cycle=("a", "b", "c"))
    assert verdict.outcome == FAIL
    assert verdict.reason == CYCLE == "DependencyCycle"
    assert verdict.message == "its dependsOn closes a cycle (a -> b -> c -> a): none of these jobs could ever start"


def test_a_grace_in_seconds_reads_as_seconds() -> None:
    late = decide(job("d", "x"), {"x": None}, NOW + timedelta(minutes=1), timedelta(seconds=45))
    assert late.message.endswith("45s after its creation")


def test_a_job_is_blocked_until_every_dependency_exists_and_finished() -> None:
    cache = {"a": finished("a"), "b": running("b")}
    assert dependencies.blocked(job("d", "a", "b"), cache.get)
    assert dependencies.blocked(job("d", "a", "missing"), cache.get)
    assert not dependencies.blocked(job("d", "a"), cache.get)
    assert not dependencies.blocked(job("free"), cache.get)


def test_waits_is_true_only_for_jobs_that_never_started_and_are_not_final() -> None:
    assert waits(job("new"))
    assert waits(job("queued", state="Pending", reason="Queued"))
    assert not waits(running("running"))
    assert not waits(finished("done"))
    assert not waits(job("canceled", state="Canceled"))


# -- the index ------------------------------------------------------------------------------------------------------
class Cache(dict[tuple[str, str], dict[str, Any]]):
    """The controller's cache, as far as the index asks about it."""

    def add(self, index: DependencyIndex, obj: dict[str, Any]) -> tuple[tuple[str, str], ...]:
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        self[key] = obj
        return index.put(key, dependencies.depends_on(obj), self.waiting)

    def waiting(self, key: tuple[str, str]) -> bool:
        return key in self and waits(self[key])


def test_the_index_knows_both_directions_many_to_many() -> None:
    index, cache = DependencyIndex(), Cache()
    for obj in (job("a"), job("b"), job("c", "a", "b"), job("d", "a", "b"), job("e", "a", namespace="other")):
        assert cache.add(index, obj) == ()
    assert index.names(("shop", "c")) == ("a", "b")
    assert index.waiting_for(("shop", "a")) == {("shop", "c"), ("shop", "d")}
    assert index.waiting_for(("shop", "b")) == {("shop", "c"), ("shop", "d")}
    assert index.waiting_for(("other", "a")) == {("other", "e")}  # names are per namespace
    assert index.waiting_for(("shop", "c")) == frozenset()


def test_a_name_that_does_not_exist_yet_has_waiters_already() -> None:
    index, cache = DependencyIndex(), Cache()
    cache.add(index, job("index", "import"))
    assert index.waiting_for(("shop", "import")) == {("shop", "index")}


def test_discard_leaves_nothing_behind() -> None:
    """Every job that leaves the cache leaves the index: after 1,000 jobs come and go, it is empty."""
    index, cache = DependencyIndex(), Cache()
    for i in range(1000):
        cache.add(index, job(f"j{i}", *(f"j{k}" for k in range(max(0, i - 3), i)), f"missing-{i % 7}"))
    cache.add(index, job("x", "y"))
    cache.add(index, job("y", "x"))  # a cycle: recorded for both
    assert index.cycles
    for key in list(cache):
        index.discard(key)
    assert (index.dependencies, index.waiters, index.cycles) == ({}, {}, {})
    assert set(index.sizes().values()) == {0}


def test_putting_the_same_job_again_changes_nothing_and_checks_nothing() -> None:
    index, cache = DependencyIndex(), Cache()
    cache.add(index, job("a", "b"))
    cache.add(index, job("b", "a"))
    assert cache.add(index, job("b", "a")) == ()  # an update of b (its status): not an arrival


@pytest.mark.parametrize("order", [("a", "b"), ("b", "a")])
def test_a_cycle_of_two_is_found_whichever_job_comes_last(order: tuple[str, str]) -> None:
    index, cache = DependencyIndex(), Cache()
    objs = {"a": job("a", "b"), "b": job("b", "a")}
    assert cache.add(index, objs[order[0]]) == ()  # its dependency does not exist yet: it waits
    found = cache.add(index, objs[order[1]])
    assert set(found) == {("shop", "a"), ("shop", "b")}
    assert index.cycle(("shop", "a")) == ("a", "b")  # each member's cycle starts with itself
    assert index.cycle(("shop", "b")) == ("b", "a")


def test_a_longer_cycle_is_found_and_jobs_off_the_cycle_are_not_marked() -> None:
    index, cache = DependencyIndex(), Cache()
    for obj in (job("a", "c"), job("b", "a"), job("tail", "a"), job("root")):
        cache.add(index, obj)
    found = cache.add(index, job("c", "b", "root"))
    assert [k[1] for k in found] == ["c", "b", "a"]
    assert index.cycle(("shop", "c")) == ("c", "b", "a")
    assert index.cycle(("shop", "tail")) is None  # it waits for a, which fails: tail is canceled, not in the cycle
    assert index.cycle(("shop", "root")) is None


def test_the_old_graph_is_no_cycle_when_a_member_already_started_or_ended() -> None:
    """a ran long ago after b; b was deleted and a new b names a: b waits for a finished job, no cycle."""
    index, cache = DependencyIndex(), Cache()
    cache.add(index, {**finished("a"), "spec": {"command": "x", "dependsOn": ["b"]}})
    assert cache.add(index, job("b", "a")) == ()
    assert index.cycle(("shop", "b")) is None


def test_a_job_that_arrives_final_is_never_checked() -> None:
    """A restart lists thousands of final jobs: none of them can be on a cycle that waits."""
    index, cache = DependencyIndex(), Cache()
    cache.add(index, job("a", "b"))
    assert cache.add(index, {**job("b", "a"), "status": {"state": "Failed", "reason": "DependencyCycle"}}) == ()


def test_the_arrival_of_a_job_nobody_waits_for_walks_nothing() -> None:
    """The common case (dependencies created first) costs no walk at all: a chain of 10,000 is put in order, and
    the walk is never asked whether a job waits."""
    index = DependencyIndex()
    asked = 0

    def waiting(key: tuple[str, str]) -> bool:
        nonlocal asked
        asked += 1
        return True

    for i in range(10_000):
        index.put(("shop", f"j{i}"), (f"j{i - 1}",) if i else (), waiting)
    assert asked == 0


def test_a_dependency_list_that_changes_moves_the_waiters() -> None:
    index, cache = DependencyIndex(), Cache()
    cache.add(index, job("d", "a", "b"))
    index.put(("shop", "d"), ("b", "c"), cache.waiting)
    assert index.waiting_for(("shop", "a")) == frozenset()
    assert index.waiting_for(("shop", "c")) == {("shop", "d")}
    index.put(("shop", "d"), (), cache.waiting)
    assert index.waiters == {}
    assert index.dependencies == {}


def test_duplicate_names_count_once() -> None:
    index, cache = DependencyIndex(), Cache()
    cache.add(index, job("d", "a", "a"))
    assert index.names(("shop", "d")) == ("a",)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_whatever_the_order_of_arrival_no_job_waits_for_ever_and_only_cycle_members_fail(data: st.DataObject) -> None:
    """Any graph (self-loops aside: the CRD refuses them), any arrival order (a watch, or a restart's LIST), the jobs
    of a found cycle failing at any moment in between: each job marked is on a cycle, and once the marked jobs
    failed and their failure cascaded, the jobs left form no cycle, so none of them waits for ever."""
    n = data.draw(st.integers(min_value=1, max_value=8))
    edges = [data.draw(st.sets(st.integers(0, n - 1), max_size=3)) - {i} for i in range(n)]
    order = data.draw(st.permutations(list(range(n))))
    index, cache = DependencyIndex(), Cache()
    for i in order:
        cache.add(index, job(f"j{i}", *(f"j{d}" for d in sorted(edges[i]))))
        if data.draw(st.booleans()):  # the operator got round to failing the cycle's jobs before the next arrival
            for key in index.cycles:
                cache[key] = {**cache[key], "status": {"state": "Failed", "reason": "DependencyCycle"}}
    marked = {int(k[1][1:]) for k in index.cycles}

    def reaches(start: int, goal: int, allowed: set[int]) -> bool:
        stack, seen = [start], {start}
        while stack:
            for nxt in edges[stack.pop()]:
                if nxt == goal:
                    return True
                if nxt in allowed and nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return False

    everyone = set(range(n))
    assert all(reaches(m, m, everyone) for m in marked)
    for member in marked:  # each member's recorded cycle is a real cycle through it
        cycle = [int(name[1:]) for name in index.cycles[("shop", f"j{member}")]]
        assert cycle[0] == member
        assert all(cycle[(i + 1) % len(cycle)] in edges[c] for i, c in enumerate(cycle))
    ended = set(marked)  # they fail; whoever waits for an ended job is canceled, and so on
    while grown := {j for j in everyone - ended if edges[j] & ended}:
        ended |= grown
    left = everyone - ended
    assert not any(reaches(j, j, left) for j in left)


# -- retention ------------------------------------------------------------------------------------------------------
def test_retention_keeps_what_a_job_that_is_not_final_names() -> None:
    kept = waited_for([
        job("waiting", "import", "seed"), {**running("running"), "spec": {"dependsOn": ["base"]}}, finished("import"),
        {**finished("done"), "spec": {"dependsOn": ["old"]}}, job("other-ns", "import", namespace="other"),
    ])  # fmt: skip
    # A running job's dependencies too: its page still shows them; the old ones of a final job go.
    assert kept == {("shop", "import"), ("shop", "seed"), ("shop", "base"), ("other", "import")}


# -- the status that records a verdict ------------------------------------------------------------------------------
def test_a_waiting_job_writes_its_status_once_and_again_only_when_what_it_waits_for_changes() -> None:
    d = job("index", "a", "b")
    verdict = decide(d, {"a": running("a"), "b": job("b")}, NOW)
    patch = dependencies.waiting_patch(d, verdict, NOW)
    assert patch is not None
    assert (patch["state"], patch["reason"], patch["waitingOn"]) == ("Pending", WAITING, "a, b")
    assert patch["conditions"][0]["status"] == "Unknown"
    written = {**d, "status": patch}
    assert dependencies.waiting_patch(written, decide(written, {"a": running("a"), "b": job("b")}, NOW), NOW) is None
    moved_on = decide(written, {"a": finished("a"), "b": job("b")}, NOW)
    again = dependencies.waiting_patch(written, moved_on, NOW)
    assert again is not None
    assert (again["waitingOn"], again["message"]) == ("b", "waits for b (Pending)")


def test_an_end_for_dependencies_is_final_with_its_reason_and_no_waiting_on() -> None:
    d = job("index", "a")
    canceled = dependencies.end_patch(d, decide(d, {"a": job("a", state="Failed")}, NOW), NOW)
    assert (canceled["state"], canceled["reason"], canceled["waitingOn"]) == ("Canceled", DEPENDENCY_FAILED, None)
    assert canceled["conditions"][0]["status"] == "False"
    assert canceled["completionTime"] == "2026-12-03T09:00:00Z"
    failed = dependencies.end_patch(d, decide(d, {"a": None}, NOW + GRACE), NOW + GRACE)
    assert (failed["state"], failed["reason"]) == ("Failed", NOT_FOUND)


def test_a_ready_job_records_its_finished_dependencies_once() -> None:
    d = {**job("index", "a"), "status": {"state": "Pending", "reason": WAITING, "waitingOn": "a",
                                          "dependencies": [{"name": "a", "state": "Running"}]}}  # fmt: skip
    verdict = decide(d, {"a": finished("a")}, NOW)
    assert dependencies.ready_fields(d, verdict) == {"dependencies": [{"name": "a", "state": "Finished"}],
                                                     "waitingOn": None}  # fmt: skip
    done = [{"name": "a", "state": "Finished"}]
    recorded = {**d, "status": {"state": "Pending", "reason": "Queued", "dependencies": done}}
    assert dependencies.ready_fields(recorded, verdict) == {}
