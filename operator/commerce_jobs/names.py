"""Names that must fit a limit (a label value's 63 characters, a CronJob's 52, an object's 253): one shortener, so
that every cut name is made the same way (pure)."""

from __future__ import annotations

import hashlib


def shortened(name: str, limit: int, suffix: str = "", digest_chars: int = 8) -> str:
    """``name + suffix`` when it fits in ``limit`` characters; else ``name`` cut, ``-``, a stable hash of the whole
    ``name`` and the suffix. The hash keeps two long names that share their beginning apart; the cut drops a
    trailing ``-`` or ``.``, so that the result stays a valid DNS name."""
    if len(name) + len(suffix) <= limit:
        return name + suffix
    digest = hashlib.sha256(name.encode()).hexdigest()[:digest_chars]
    keep = limit - len(suffix) - len(digest) - 1
    return f"{name[:keep].rstrip('-.')}-{digest}{suffix}"
