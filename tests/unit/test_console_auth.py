"""Sessions, CSRF and origin checks, cached access answers, and the review bodies (pure parts of console.auth)."""

from __future__ import annotations

from kubernetes import client

from commerce_jobs.console.auth import (
    AccessCache,
    Identity,
    Sessions,
    access_review_body,
    csrf_ok,
    same_origin,
    token_review_body,
    user_configuration,
)
from commerce_jobs.startbuild import from_template, retry_of

ALICE = Identity("alice", "u-1", ("devs", "system:authenticated"), (("scopes", ("a",)),))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_is_random_and_ends_when_idle() -> None:
    clock = Clock()
    sessions = Sessions(clock, idle=60)
    one, two = sessions.create(ALICE, "token-1"), sessions.create(ALICE, "token-1")
    assert one.id != two.id
    assert one.csrf != two.csrf
    assert "token-1" not in repr(one)
    clock.now += 59
    assert sessions.get(one.id) is one  # seen: idle time starts again
    clock.now += 59
    assert sessions.get(one.id) is one
    assert sessions.get(two.id) is None  # 118 s without a request
    assert sessions.get("guess") is None
    sessions.drop(one.id)
    assert sessions.get(one.id) is None


def test_a_session_is_validated_again_after_a_while() -> None:
    clock = Clock()
    sessions = Sessions(clock)
    session = sessions.create(ALICE, "t")
    assert not sessions.needs_validation(session)
    clock.now += 301
    assert sessions.needs_validation(session)
    sessions.validated(session)
    assert not sessions.needs_validation(session)


def test_csrf_token_must_match_the_sessions() -> None:
    session = Sessions().create(ALICE, "t")
    assert csrf_ok(session, session.csrf)
    assert not csrf_ok(session, "")
    assert not csrf_ok(session, None)
    assert not csrf_ok(session, session.csrf + "x")


def test_a_post_must_come_from_the_consoles_own_origin() -> None:
    host = "jobs.example.com:8081"
    assert same_origin({"Origin": "http://jobs.example.com:8081"}, host)
    assert same_origin({"Origin": "https://JOBS.example.com:8081"}, host)  # TLS ends at a proxy
    assert not same_origin({"Origin": "http://evil.example"}, host)
    assert not same_origin({"Origin": "null", "Referer": "http://evil.example/x"}, host)
    assert same_origin({"Referer": "http://jobs.example.com:8081/?state=Failed"}, host)
    assert not same_origin({}, host)


def test_access_answers_are_kept_a_few_seconds() -> None:
    clock = Clock()
    cache = AccessCache(clock, ttl=5)
    assert cache.get(ALICE, "list", "shop") is None
    cache.put(ALICE, "list", "shop", True)
    cache.put(ALICE, "create", "shop", False)
    assert cache.get(ALICE, "list", "shop") is True
    assert cache.get(ALICE, "create", "shop") is False
    assert cache.get(Identity("alice"), "list", "shop") is None  # other groups: another user as far as RBAC goes
    clock.now += 5
    assert cache.get(ALICE, "list", "shop") is None


def test_review_bodies() -> None:
    assert token_review_body("t")["spec"] == {"token": "t"}
    spec = access_review_body(ALICE, "patch", "shop")["spec"]
    assert spec == {
        "user": "alice", "uid": "u-1", "groups": ["devs", "system:authenticated"], "extra": {"scopes": ["a"]},
        "resourceAttributes": {"group": "commercejobs.dev", "resource": "commercejobs", "verb": "patch",
                               "namespace": "shop"},
    }  # fmt: skip
    assert Identity.from_user_info({"username": "bob", "groups": ["g"], "extra": {"k": ["v"]}}) == Identity(
        "bob", "", ("g",), (("k", ("v",)),)
    )


def test_start_and_retry_build_new_jobs() -> None:
    started = from_template("import-solr", started_by="alice")
    assert started["spec"] == {"templateRef": {"name": "import-solr"}}
    assert started["metadata"]["annotations"] == {"commercejobs.dev/started-by": "alice"}
    assert "annotations" not in from_template("import-solr")["metadata"]
    failed = {
        "metadata": {"name": "import-solr-x7k2p", "namespace": "shop", "uid": "u",
                     "labels": {"commercejobs.dev/template": "import-solr", "other": "x"}},
        "spec": {"command": "silver:import", "params": ["tmp"], "queue": "imports", "cancel": True,
                 "executeAfter": "2026-01-01T00:00:00Z", "templateRef": {"name": "import-solr"}},
    }  # fmt: skip
    # Started from a template: started from it again, not with the spec that the operator filled in from it.
    retry = retry_of(failed, started_by="alice")
    assert retry["metadata"] == {
        "generateName": "import-solr-x7k2p-retry-",
        "labels": {"commercejobs.dev/template": "import-solr"},
        "annotations": {"commercejobs.dev/retry-of": "import-solr-x7k2p", "commercejobs.dev/started-by": "alice"},
    }
    assert retry["spec"] == {"templateRef": {"name": "import-solr"}}
    # Any other job: the same spec, but for a cancel and a start time that has passed.
    del failed["spec"]["templateRef"], failed["metadata"]["labels"]["commercejobs.dev/template"]
    retry = retry_of(failed)
    assert retry["metadata"] == {
        "generateName": "import-solr-x7k2p-retry-",
        "annotations": {"commercejobs.dev/retry-of": "import-solr-x7k2p"},
    }
    assert retry["spec"] == {"command": "silver:import", "params": ["tmp"], "queue": "imports"}


def test_an_action_is_sent_with_the_users_token_and_no_credential_of_the_operator() -> None:
    operator = client.Configuration()
    operator.host = "https://10.96.0.1:443"
    operator.ssl_ca_cert = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
    operator.api_key = {"authorization": "Bearer operator-token"}
    operator.cert_file, operator.key_file = "/admin.crt", "/admin.key"
    operator.refresh_api_key_hook = lambda config: None

    user = user_configuration(operator, "alice-token")

    assert (user.host, user.ssl_ca_cert, user.verify_ssl) == (operator.host, operator.ssl_ca_cert, True)
    assert user.auth_settings() == {
        "BearerToken": {"in": "header", "key": "authorization", "type": "api_key", "value": "Bearer alice-token"}
    }
    assert (user.cert_file, user.key_file, user.refresh_api_key_hook) == (None, None, None)
