"""An operator started by a test as its own process (`commerce-jobs run`): what the fault and readiness tests share."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar


class OperatorProcess:
    """A started operator; subclasses start ``proc`` (logging to ``log_path``) and add their probes."""

    name: str
    log_path: Path
    proc: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


P = TypeVar("P", bound=OperatorProcess)


def stopped_after(started: list[P]) -> Iterator[list[P]]:
    """A fixture's body: every operator a test started, stopped after it, whatever happened (a clean stop gives
    the Lease up for the next test)."""
    yield started
    for op in started:
        op.stop()
