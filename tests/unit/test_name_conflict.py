from commerce_jobs.kubeapi import conflict_resolves


def job(owners: list[dict] | None = None, deleting: bool = False) -> dict:
    meta: dict = {"name": "import-1", "ownerReferences": owners or []}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-22T12:00:00Z"
    return {"metadata": meta}


def test_a_job_of_someone_elses_will_not_go_by_itself() -> None:
    assert not conflict_resolves(job(), "import")
    assert not conflict_resolves(job([{"kind": "CronJob", "name": "import", "uid": "c"}]), "import")
    assert not conflict_resolves(job([{"kind": "CommerceJob", "name": "other", "uid": "o"}]), "import")


def test_a_job_being_deleted_or_left_by_an_earlier_commercejob_of_the_same_name_goes_by_itself() -> None:
    assert conflict_resolves(job(deleting=True), "import")
    # The CommerceJob was deleted and created again: the garbage collector deletes its old Jobs.
    assert conflict_resolves(job([{"kind": "CommerceJob", "name": "import", "uid": "old"}]), "import")
