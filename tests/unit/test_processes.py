import subprocess
import sys

from commerce_jobs.devcluster.processes import ProcessRecord, spawn


def test_spawned_process_runs_until_stopped(tmp_path) -> None:
    record = spawn("sleeper", [sys.executable, "-c", "import time; time.sleep(600)"], tmp_path / "sleeper.log")
    assert record.alive()
    record.stop(timeout=5)
    assert not record.alive()


def test_a_reused_pid_is_never_signalled(tmp_path) -> None:
    """A record whose start time does not match the live process with that pid belongs to an ended process."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        real = spawn("x", [sys.executable, "-c", "pass"], tmp_path / "x.log")  # only to get a well-formed record
        stale = ProcessRecord(name="stale", pid=proc.pid, start_ticks=real.start_ticks - 1, log="")
        assert not stale.alive()
        stale.stop(timeout=1)
        assert proc.poll() is None  # still running: stop() left it alone
    finally:
        proc.kill()
        proc.wait()
