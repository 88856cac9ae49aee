"""Who the console's user is and what they may do: Kubernetes decides both.

A user signs in with a bearer token, which a TokenReview validates; the session keeps it in this process's memory
only (never logged, never sent back) and validates it again every few minutes, so a deleted ServiceAccount or an
expired token ends the session. Each view and action asks a SubjectAccessReview for that user; answers are cached
for a few seconds, so a page with live updates does not ask the apiserver on every event. An action's write is then
sent with the user's own token (``user_configuration``), so RBAC and admission policies judge it as they would the
same request from kubectl.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from kubernetes import client

from commerce_jobs.api_names import COMMERCEJOBS, GROUP

SESSION_COOKIE = "cj_console"
SESSION_IDLE_SECONDS = 8 * 3600
REVALIDATE_SECONDS = 300
ACCESS_TTL_SECONDS = 5.0
MAX_CACHED_ANSWERS = 10_000


@dataclass(frozen=True)
class Identity:
    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def from_user_info(cls, user: Mapping[str, Any]) -> Identity:
        extra = user.get("extra") or {}
        return cls(
            username=str(user.get("username") or ""),
            uid=str(user.get("uid") or ""),
            groups=tuple(user.get("groups") or ()),
            extra=tuple(sorted((k, tuple(v or ())) for k, v in extra.items())),
        )


@dataclass
class Session:
    id: str
    identity: Identity
    token: str = field(repr=False)  # kept to validate it again; never logged, never rendered
    csrf: str
    validated_at: float
    seen_at: float


class Sessions:
    """In-memory sessions keyed by a random id (the cookie). A restart of the operator signs everyone out."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, idle: float = SESSION_IDLE_SECONDS) -> None:
        self.clock = clock
        self.idle = idle
        self._sessions: dict[str, Session] = {}

    def create(self, identity: Identity, token: str) -> Session:
        self._expire()
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), identity, token, secrets.token_urlsafe(32), now, now)
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        session = self._sessions.get(session_id or "")
        if session is None:
            return None
        now = self.clock()
        if now - session.seen_at > self.idle:
            self.drop(session.id)
            return None
        session.seen_at = now
        return session

    def needs_validation(self, session: Session) -> bool:
        return self.clock() - session.validated_at > REVALIDATE_SECONDS

    def validated(self, session: Session) -> None:
        session.validated_at = self.clock()

    def drop(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def _expire(self) -> None:
        now = self.clock()
        for session_id in [s.id for s in self._sessions.values() if now - s.seen_at > self.idle]:
            del self._sessions[session_id]

    def __len__(self) -> int:
        return len(self._sessions)


def csrf_ok(session: Session, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(session.csrf.encode(), str(submitted).encode())


def same_origin(headers: Mapping[str, str], host: str) -> bool:
    """A state-changing request must come from the console's own page: its Origin (or, failing that, its Referer)
    names this host. A request with neither is refused. (The scheme is not compared: behind a TLS-terminating proxy
    the browser's is https and ours http.)"""
    origin = headers.get("Origin")
    if origin and origin != "null":
        return urlsplit(origin).netloc.lower() == host.lower()
    referer = headers.get("Referer")
    if referer:
        return urlsplit(referer).netloc.lower() == host.lower()
    return False


def user_configuration(base: client.Configuration, token: str) -> client.Configuration:
    """The operator's way to the apiserver (address, CA, proxy) with the user's bearer token as the only credential:
    what is sent with it is the user's own request, never the operator's (no client certificate, no other token)."""
    user = client.Configuration()
    user.host = base.host
    for name in ("verify_ssl", "ssl_ca_cert", "ca_cert_data", "assert_hostname", "tls_server_name", "proxy",
                 "proxy_headers", "no_proxy"):  # fmt: skip
        setattr(user, name, getattr(base, name, None))
    user.api_key = {"authorization": f"Bearer {token}"}
    return user


class AccessCache:
    """SubjectAccessReview answers, for a few seconds (a revoked right takes effect within ACCESS_TTL_SECONDS)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, ttl: float = ACCESS_TTL_SECONDS) -> None:
        self.clock = clock
        self.ttl = ttl
        self._answers: dict[tuple[Identity, str, str, str], tuple[bool, float]] = {}

    def get(self, identity: Identity, verb: str, namespace: str, resource: str = COMMERCEJOBS) -> bool | None:
        found = self._answers.get((identity, verb, namespace, resource))
        if found is None or self.clock() >= found[1]:
            return None
        return found[0]

    def put(self, identity: Identity, verb: str, namespace: str, allowed: bool, resource: str = COMMERCEJOBS) -> None:
        if len(self._answers) >= MAX_CACHED_ANSWERS:
            self._answers.clear()  # crude but bounded: the next answers are asked again
        self._answers[(identity, verb, namespace, resource)] = (allowed, self.clock() + self.ttl)


def token_review_body(token: str) -> dict[str, Any]:
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}


def access_review_body(identity: Identity, verb: str, namespace: str, resource: str = COMMERCEJOBS) -> dict[str, Any]:
    """May this user <verb> commercejobs (or another resource of the group) in the namespace ("" = in every one)?"""
    spec: dict[str, Any] = {
        "user": identity.username,
        "groups": list(identity.groups),
        "resourceAttributes": {"group": GROUP, "resource": resource, "verb": verb, "namespace": namespace},
    }
    if identity.uid:
        spec["uid"] = identity.uid
    if identity.extra:
        spec["extra"] = {k: list(v) for k, v in identity.extra}
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


class Reviewer:
    """TokenReviews and SubjectAccessReviews with the operator's own credentials; ``run`` executes a blocking call
    off the event loop."""

    def __init__(self, api: client.ApiClient, run: Callable[..., Awaitable[Any]], cache: AccessCache | None = None):
        self.authn = client.AuthenticationV1Api(api)
        self.authz = client.AuthorizationV1Api(api)
        self.run = run
        self.cache = cache or AccessCache()

    async def authenticate(self, token: str) -> Identity | None:
        token = token.strip()
        if not token or any(c.isspace() for c in token):
            return None
        review = await self.run(self.authn.create_token_review, token_review_body(token))
        status = review.status
        if not status or not status.authenticated or not status.user:
            return None
        return Identity.from_user_info(self.authn.api_client.sanitize_for_serialization(status.user))

    async def allowed(self, identity: Identity, verb: str, namespace: str, resource: str = COMMERCEJOBS) -> bool:
        known = self.cache.get(identity, verb, namespace, resource)
        if known is not None:
            return known
        body = access_review_body(identity, verb, namespace, resource)
        review = await self.run(self.authz.create_subject_access_review, body)
        answer = bool(review.status and review.status.allowed)
        self.cache.put(identity, verb, namespace, answer, resource)
        return answer
