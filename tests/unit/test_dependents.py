from commerce_jobs.dependents import build_dependent, canceled_tree, dependent_name

PARENT = {
    "metadata": {"name": "import", "namespace": "shop", "uid": "p-uid", "labels": {"argocd.argoproj.io/instance": "x"}},
    "spec": {"command": "silver:import", "image": "shop:1", "queue": "imports", "maxRetries": 3, "params": ["tmp"]},
}


def test_a_dependent_is_owned_by_its_parent_and_runs_in_the_same_shop() -> None:
    child = build_dependent(PARENT, {"name": "index", "command": "ibexa:commerce:index-econtent-job", "params": ["a"]})
    assert child["metadata"]["name"] == "import-index"
    assert child["metadata"]["ownerReferences"][0]["uid"] == "p-uid"
    assert child["spec"] == {
        "command": "ibexa:commerce:index-econtent-job", "params": ["a"], "image": "shop:1", "queue": "imports"
    }  # fmt: skip
    # A GitOps tool's tracking label is not inherited, or it would prune the dependent as its own.
    assert "argocd.argoproj.io/instance" not in child["metadata"]["labels"]


def test_long_dependent_names_stay_valid_and_distinct() -> None:
    a, b = dependent_name("p" * 250, "child-a"), dependent_name("p" * 250, "child-b")
    assert a != b
    assert max(len(a), len(b)) <= 253


def test_canceled_tree_lists_every_descendant() -> None:
    items = [{"name": "a", "dependingJobs": [{"name": "b"}]}, {"name": "c"}]
    assert canceled_tree("p", items) == [{"name": n, "state": "Canceled"} for n in ("p-a", "p-a-b", "p-c")]
