"""The bounded tail of a command's output, as kept in a CommerceJob's status."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_MAX_BYTES = 64 * 1024
TRUNCATION_MARK = "[... output truncated: only the last {kept} of {total} bytes are kept ...]\n"


@dataclass(frozen=True)
class OutputTail:
    text: str
    truncated: bool
    total_bytes: int


def tail_of(chunks: Iterable[bytes], max_bytes: int = DEFAULT_MAX_BYTES) -> OutputTail:
    """Keeps the last ``max_bytes`` of a stream of chunks, holding at most about twice that in memory.

    The result is always valid text: bytes that are not UTF-8 (binary output, or a character cut in two at the
    start of the tail) become U+FFFD, and NUL bytes, which the apiserver's JSON would carry but many viewers choke
    on, become U+FFFD too.
    """
    kept = bytearray()
    total = 0
    for chunk in chunks:
        total += len(chunk)
        kept += chunk
        if len(kept) > 2 * max_bytes:
            del kept[: len(kept) - max_bytes]
    truncated = total > max_bytes
    if truncated:
        del kept[: len(kept) - max_bytes]
    text = bytes(kept).decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    if truncated:
        text = TRUNCATION_MARK.format(kept=max_bytes, total=total) + text
    return OutputTail(text=text, truncated=truncated, total_bytes=total)
