from commerce_jobs.dependents import build_dependent, canceled_tree, dependent_name, tree_states

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


TREE = [{"name": "b", "dependingJobs": [{"name": "c"}]}, {"name": "d"}]


def test_a_parent_lists_its_whole_tree_with_each_dependents_own_state() -> None:
    states = {"a-b": "Running", "a-d": "Finished"}
    assert tree_states("a", "Finished", TREE, states.get) == [
        {"name": "a-b", "state": "Running"},
        {"name": "a-b-c", "state": "Pending"},  # not created yet: its parent runs
        {"name": "a-d", "state": "Finished"},
    ]


def test_a_dependent_that_did_not_succeed_cancels_the_rest_of_its_branch() -> None:
    """A -> B -> C where B fails: C is never created."""
    states = {"a-b": "Failed", "a-d": "Running"}
    assert tree_states("a", "Finished", TREE, states.get) == [
        {"name": "a-b", "state": "Failed"},
        {"name": "a-b-c", "state": "Canceled"},
        {"name": "a-d", "state": "Running"},
    ]
    assert tree_states("a", "Failed", TREE, {}.get) == canceled_tree("a", TREE)


def test_a_dependent_out_of_sight_keeps_its_recorded_state_if_it_is_a_documented_one() -> None:
    """Deleted by hand after it ended, or not listed yet after a restart; "Created" was written by older versions."""
    recorded = [{"name": "a-b", "state": "Finished"}, {"name": "a-d", "state": "Created"}]
    assert tree_states("a", "Finished", TREE, {"a-b-c": "Finished"}.get, recorded) == [
        {"name": "a-b", "state": "Finished"},
        {"name": "a-b-c", "state": "Finished"},
        {"name": "a-d", "state": "Pending"},
    ]
