from datetime import UTC, datetime, timedelta

import pytest

from commerce_jobs.retention import DurationError, RetentionPolicy, expires_at, parse_duration, plan

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def job(name: str, state: str | None, closed_ago: timedelta | None = None, owner: str | None = None, **spec) -> dict:
    status = {"state": state} if state else {}
    if closed_ago is not None:
        status["completionTime"] = (NOW - closed_ago).strftime("%Y-%m-%dT%H:%M:%SZ")
    meta = {"name": name, "namespace": "shop", "uid": f"uid-{name}", "creationTimestamp": "2026-11-01T00:00:00Z"}
    if owner:
        meta["ownerReferences"] = [{"kind": "CommerceJob", "name": owner, "uid": f"uid-{owner}"}]
    return {"metadata": meta, "spec": spec, "status": status}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1 min", 60), ("1m", 60), ("30s", 30), ("2 hours", 7200), ("7 days", 604800), ("1 week", 604800), ("90 sec", 90)],
)
def test_durations_in_the_forms_jms_users_write(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "soon", "1 fortnight", "-1 min", "1.5h"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(text)


def test_finished_jobs_go_after_max_retention_succeeded_others_after_max_retention() -> None:
    policy = RetentionPolicy(timedelta(days=7), timedelta(hours=1), per_call=10)
    assert expires_at(job("a", "Finished", timedelta(0)), policy) == NOW + timedelta(hours=1)
    assert expires_at(job("b", "Failed", timedelta(0)), policy) == NOW + timedelta(days=7)
    assert expires_at(job("c", "Running"), policy) is None
    assert expires_at(job("d", None), policy) is None
    # The platform's call, --max-retention="1 min": every closed job goes a minute later, finished ones too.
    platform = RetentionPolicy(timedelta(minutes=1), timedelta(hours=1))
    assert expires_at(job("e", "Finished", timedelta(0)), platform) == NOW + timedelta(minutes=1)


def test_a_job_may_keep_itself_longer() -> None:
    policy = RetentionPolicy(timedelta(minutes=1), timedelta(minutes=1))
    kept = job(
        "audit", "Finished", timedelta(0), retention={"maxRetention": "30 days", "maxRetentionSucceeded": "30 days"}
    )
    assert expires_at(kept, policy) == NOW + timedelta(days=30)


def test_plan_takes_expired_trees_oldest_first_and_says_when_the_next_expires() -> None:
    policy = RetentionPolicy(timedelta(minutes=1), timedelta(minutes=1), per_call=2)
    jobs = [
        job("old", "Failed", timedelta(minutes=10)),
        job("older", "Finished", timedelta(minutes=20)),
        job("fresh", "Finished", timedelta(seconds=30)),
        job("running", "Running"),
    ]
    due, upcoming = plan(jobs, policy, NOW)
    assert [e.root["metadata"]["name"] for e in due] == ["older", "old"]
    assert upcoming == NOW + timedelta(seconds=30)


def test_a_parent_waits_while_a_dependent_runs_and_then_goes_with_its_tree() -> None:
    policy = RetentionPolicy(timedelta(minutes=1), timedelta(minutes=1))
    parent = job("import", "Finished", timedelta(minutes=10))
    child = job("import-index", "Running", owner="import")
    assert plan([parent, child], policy, NOW)[0] == []
    child = job("import-index", "Finished", timedelta(minutes=5), owner="import")
    grandchild = job("import-index-swap", "Canceled", timedelta(minutes=5), owner="import-index")
    (tree,) = plan([parent, child, grandchild], policy, NOW)[0]
    assert (tree.root["metadata"]["name"], tree.tree_size) == ("import", 3)


def test_a_job_that_a_live_job_waits_for_is_kept_with_its_tree_until_that_job_is_final() -> None:
    """JMS's clean-up kept jobs with incoming dependencies (#58); here: while a job that names it is not final."""
    policy = RetentionPolicy(timedelta(minutes=1), timedelta(minutes=1))
    import_job = job("import", "Finished", timedelta(minutes=10))
    child = job("import-index", "Finished", timedelta(minutes=10), owner="import")
    other = job("old", "Finished", timedelta(minutes=10))
    for waiting_state in (None, "Pending", "Running"):
        waiting = job("report", waiting_state, dependsOn=["import-index", "missing"])
        due, _ = plan([import_job, child, other, waiting], policy, NOW)
        assert [e.root["metadata"]["name"] for e in due] == ["old"]  # the tree of import-index stays whole
    done = job("report", "Canceled", timedelta(seconds=10), dependsOn=["import-index"])
    due, _ = plan([import_job, child, other, done], policy, NOW)
    assert sorted(e.root["metadata"]["name"] for e in due) == ["import", "old"]
    # A job of the same name in another namespace is not kept.
    elsewhere = {**job("report", "Pending", dependsOn=["import"]), "metadata": {"name": "report", "namespace": "x",
                                                                                  "uid": "uid-x"}}  # fmt: skip
    assert "import" in [e.root["metadata"]["name"] for e in plan([import_job, child, elsewhere], policy, NOW)[0]]
