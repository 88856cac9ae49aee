"""The label values of the operator's metrics, bounded whatever users create (pure functions).

A job's name never becomes a label. A queue is its name only if the operator's configuration lists it (or it is
``default``), else ``other``. A command is its name only if it is the command of a CommerceJobTemplate or of a
CommerceCronJob (learned as they are used, at most ``MAX_LEARNED_COMMANDS``), else the allowlist pattern that it
matched, else ``other``. API requests are named by verb and resource, never by object or namespace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import parse_qs, urlsplit

from commerce_jobs import lifecycle

OTHER = "other"
DEFAULT_QUEUE = "default"
MAX_LEARNED_COMMANDS = 100


class LabelVocabulary:
    """The values that the ``queue`` and ``command`` labels may take (see the module's docstring)."""

    def __init__(self, queues: Iterable[str], patterns: Iterable[str], cap: int = MAX_LEARNED_COMMANDS) -> None:
        self.queues = frozenset(queues) | {DEFAULT_QUEUE}
        self.patterns = tuple(patterns)
        self.cap = cap
        self.learned: set[str] = set()

    def queue(self, name: Any) -> str:
        return name if isinstance(name, str) and name in self.queues else OTHER

    def command(self, command: Any) -> str:
        if not isinstance(command, str):
            return OTHER
        if command in self.learned:
            return command
        return next((p for p in self.patterns if fnmatchcase(command, p)), OTHER)

    def learn(self, command: Any) -> None:
        """A command that a template or a crontab task names: it may be a label of its own, up to ``cap`` of them."""
        if isinstance(command, str) and command and len(self.learned) < self.cap:
            self.learned.add(command)

    def learn_tree(self, spec: Mapping[str, Any]) -> None:
        """The command of a template's fields and of its dependingJobs, at any depth."""
        self.learn(spec.get("command"))
        for item in spec.get("dependingJobs") or []:
            if isinstance(item, Mapping):
                self.learn_tree(item)


def api_route(method: str, url: str) -> tuple[str, str]:
    """(verb, resource) of a request to the apiserver, as Kubernetes' audit log names them: names of objects and
    namespaces are dropped, so the labels are bounded by the resources that the code calls."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    if segments[:1] == ["api"]:
        segments = segments[2:]
    elif segments[:1] == ["apis"]:
        segments = segments[3:]
    else:
        return method.lower(), OTHER
    if len(segments) >= 2 and segments[0] == "namespaces" and len(segments) > 2:
        segments = segments[2:]  # the namespace's objects, not the namespace itself
    resource = segments[0] if segments else OTHER
    named = len(segments) >= 2
    if len(segments) >= 3:
        resource = f"{resource}/{segments[2]}"
    method = method.upper()
    if method == "GET":
        verb = "get" if named else ("watch" if parse_qs(parts.query).get("watch") == ["true"] else "list")
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete" if named else
                "deletecollection"}.get(method, method.lower())  # fmt: skip
    return verb, resource


def error_reason(error: BaseException) -> str:
    """A failed reconcile's reason label: the exception's class, and the HTTP status of an API error."""
    status = getattr(error, "status", None)
    return f"{type(error).__name__}:{status}" if isinstance(status, int) else type(error).__name__


def timestamp(value: Any) -> float | None:
    try:
        parsed = lifecycle.parse_time(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return parsed.timestamp() if parsed else None


def owner(meta: Mapping[str, Any], kind: str) -> str | None:
    return next((str(r.get("name")) for r in meta.get("ownerReferences") or [] if r.get("kind") == kind), None)
