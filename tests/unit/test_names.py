"""The one name shortener (names.py) and the names that the builders make with it."""

from __future__ import annotations

import re

from commerce_jobs.cronbuild import cronjob_name
from commerce_jobs.dependents import dependent_name
from commerce_jobs.jobbuild import job_name
from commerce_jobs.names import shortened
from commerce_jobs.templates import templates_from_config

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_a_name_that_fits_is_kept_as_it_is() -> None:
    assert shortened("import-solr", 63) == "import-solr"
    assert shortened("import-solr", 63, suffix="-2") == "import-solr-2"
    assert shortened("a" * 61, 63, suffix="-2") == "a" * 61 + "-2"


def test_a_long_name_is_cut_to_the_limit_with_a_hash_and_keeps_its_suffix() -> None:
    name = shortened("x" * 100, 63, suffix="-12")
    assert len(name) == 63
    assert name.endswith("-12")
    assert re.fullmatch(r"x+-[0-9a-f]{8}-12", name)
    assert re.fullmatch(r"x{242}-[0-9a-f]{10}", shortened("x" * 300, 253, digest_chars=10))


def test_two_long_names_that_begin_alike_stay_apart() -> None:
    first, second = "shop-" + "a" * 80 + "-one", "shop-" + "a" * 80 + "-two"
    assert shortened(first, 63) != shortened(second, 63)
    assert shortened(first, 63) == shortened(first, 63)  # stable: the same name is found again after a restart


def test_a_cut_that_ends_in_a_dash_or_a_dot_leaves_no_double_separator() -> None:
    for tail in ("-", "."):
        name = shortened("a" * 53 + tail + "b" * 30, 63)
        assert "--" not in name
        assert ".-" not in name
        assert len(name) <= 63


def test_the_builders_names_fit_their_limits() -> None:
    long = "import-" + "products-" * 30
    assert len(job_name(long, 3)) <= 63
    assert job_name(long, 3).endswith("-3")
    assert len(cronjob_name(long)) <= 52
    assert len(dependent_name(long, long)) <= 253
    assert job_name(long, 3) != job_name(long + "x", 3)


def test_long_add_jobs_ids_that_begin_alike_become_two_templates() -> None:
    """templates.py cut long ids without a hash: two ids alike in their first 63 characters became one template."""
    prefix = "import_" + "x" * 60
    config = {"add_jobs": {prefix + "_products": {"command": "a:b"}, prefix + "_prices": {"command": "a:c"}}}
    names = [t["metadata"]["name"] for t in templates_from_config(config)]
    assert len(set(names)) == 2
    assert all(len(n) <= 63 and DNS_LABEL.match(n) for n in names)
