import subprocess
import sys

from commerce_jobs.devcluster.processes import ProcessRecord, spawn


def test_spawned_process_runs_until_stopped(tmp_path) -> None:
    record = spawn("sleeper", [sys.executable, "-c", "import time; time.sleep(600)"], tmp_path / "sleeper.log")
    assert record.alive()
    record.stop(timeout=5)
    assert not record.alive()


def test_a_reused_pid_is_never_signalled() -> None:
    """A record whose start time does not match the live process with that pid belongs to an ended process."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        # The record of a process that had this pid before: it started long before the live one (tick 1).
        stale = ProcessRecord(name="stale", pid=proc.pid, start_ticks=1, log="")
        assert not stale.alive()
        stale.stop(timeout=1)
        assert proc.poll() is None  # still running: stop() left it alone
    finally:
        proc.kill()
        proc.wait()
