"""Typed reads of the fields that the code reads most: an object's spec and status (a missing or null one reads as
empty), and a CommerceJob's state (Pending until it has one). Instead of ``(obj.get("status") or {})`` chains."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from commerce_jobs.api_names import PENDING


def spec_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An object's spec; empty when it has none."""
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def status_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An object's status; empty when it has none (a CommerceJob before the operator's first write)."""
    status = obj.get("status")
    return status if isinstance(status, dict) else {}


def state_of(cjob: Mapping[str, Any]) -> str:
    """A CommerceJob's state: Pending until the operator has written one."""
    return str(status_of(cjob).get("state") or PENDING)
