"""Background processes of the local control plane, tracked by pid and start time.

A pid alone may be reused by another process after ours ended, so each record also keeps the process's start
time from /proc; a process is only signalled when both still match.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime) follows the command name, which is in parentheses and may hold spaces.
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    pid: int
    start_ticks: int
    log: str

    def alive(self) -> bool:
        ticks = _start_ticks(self.pid)
        if ticks != self.start_ticks:
            return False
        # A zombie has ended; it only waits to be reaped by its parent.
        state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after the timeout. Never signals a process that is not ours."""
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.alive():
                os.kill(self.pid, signal.SIGKILL)
        # If we started it, it is now our zombie: reap it so that its pid is free again.
        if _start_ticks(self.pid) == self.start_ticks:
            _reap(self.pid, timeout)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProcessRecord:
        return cls(**data)

    @classmethod
    def current(cls, name: str) -> ProcessRecord:
        """The record of this very process (e.g. the command that is starting a cluster)."""
        pid = os.getpid()
        ticks = _start_ticks(pid)
        if ticks is None:
            raise RuntimeError("/proc has no entry for this process")
        return cls(name=name, pid=pid, start_ticks=ticks, log="")


def _reap(pid: int, timeout: float) -> None:
    # A Go program's main thread can show as a zombie while its other threads still exit; the process can only be
    # waited for once they are gone, so keep trying for a while.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return  # not our child: its own parent (or init) reaps it
        if done:
            return
        time.sleep(0.02)


def spawn(name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> ProcessRecord:
    """Starts argv in its own session, so it outlives the command that started it (dev-cluster up)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    ticks = _start_ticks(proc.pid)
    if ticks is None:
        raise RuntimeError(f"{name} exited at once; see {log}")
    return ProcessRecord(name=name, pid=proc.pid, start_ticks=ticks, log=str(log))
