"""The bounded tail of a command's output, as kept in a CommerceJob's status."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_MAX_BYTES = 64 * 1024
# C0 controls and DEL, but tab, newline and carriage return (progress bars), are shown as U+FFFD.
_CONTROLS = {c: "\ufffd" for c in [*range(32), 127] if chr(c) not in "\t\n\r"}
TRUNCATION_MARK = "[... output truncated: only the last {kept} of {total} bytes are kept ...]\n"


@dataclass(frozen=True)
class OutputTail:
    text: str
    truncated: bool
    total_bytes: int


class TailBuffer:
    """The last ``max_bytes`` of a stream that arrives in chunks, holding at most about twice that in memory."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._kept = bytearray()
        self._total = 0

    def add(self, chunk: bytes) -> None:
        self._total += len(chunk)
        self._kept += chunk
        if len(self._kept) > 2 * self.max_bytes:
            del self._kept[: len(self._kept) - self.max_bytes]

    def tail(self) -> OutputTail:
        """The tail as text: always valid, see ``tail_of``."""
        max_bytes, total = self.max_bytes, self._total
        kept = self._kept[-max_bytes:] if max_bytes else bytearray()
        truncated = total > max_bytes
        text = bytes(kept).decode("utf-8", errors="replace").translate(_CONTROLS)
        encoded = text.encode()
        if len(encoded) > max_bytes:  # replacement characters made it longer: keep whole characters of the end
            text = encoded[-max_bytes:].decode("utf-8", errors="ignore")
            truncated = True
        if truncated:
            text = TRUNCATION_MARK.format(kept=max_bytes, total=total) + text
        return OutputTail(text=text, truncated=truncated, total_bytes=total)


def tail_of(chunks: Iterable[bytes], max_bytes: int = DEFAULT_MAX_BYTES) -> OutputTail:
    """Keeps the last ``max_bytes`` of a stream of chunks, holding at most about twice that in memory.

    The result is always valid text: bytes that are not UTF-8 (binary output, or a character cut in two at the
    start of the tail) become U+FFFD, and so do control characters other than tab, newline and carriage return
    (NUL, which many viewers choke on, and ESC, whose sequences would drive the terminal of whoever runs
    `kubectl describe`). Its UTF-8 stays within ``max_bytes`` (plus the truncation mark) even though each
    replaced byte takes three.
    """
    buffer = TailBuffer(max_bytes)
    for chunk in chunks:
        buffer.add(chunk)
    return buffer.tail()
