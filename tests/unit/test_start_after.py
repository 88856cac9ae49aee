"""`commerce-jobs start TEMPLATE --after NAME`: a template run that waits for jobs that exist (spec.dependsOn)."""

from commerce_jobs.startbuild import from_template


def test_after_becomes_depends_on_in_the_order_given_each_name_once() -> None:
    job = from_template("index-solr", after=["import-products", "import-prices", "import-products"])
    assert job["spec"] == {"templateRef": {"name": "index-solr"}, "dependsOn": ["import-products", "import-prices"]}
    assert "dependsOn" not in from_template("index-solr")["spec"]
