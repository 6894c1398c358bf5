"""The suite leaves the process and the machine as it found them."""

import os
import signal
import stat
import subprocess
import sys

from pagefs.conformance.cli import main


def test_a_run_leaves_the_umask_alone_and_reports_get_the_users_mode(tmp_path):
    saved = os.umask(0o022)
    try:
        status = main(["run", "--target", "local", "--properties", "COH-META",
                       "--examples", "2", "--steps", "6", "--report", str(tmp_path / "r.md")])
        after = os.umask(0o022)
    finally:
        os.umask(saved)
    assert status == 0
    assert after == 0o022
    assert stat.S_IMODE((tmp_path / "r.md").stat().st_mode) == 0o644


def _mounts_under(path) -> list[str]:
    with open("/proc/self/mounts") as f:
        return [line.split()[1] for line in f if line.split()[1].startswith(str(path))]


def test_sigterm_unwinds_a_run_like_ctrl_c_and_leaves_no_mount_or_directory(tmp_path,
                                                                         root_only):
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # everything the run makes is in tmp_path
    # HANDLE is n/a on local: its line says the run is under way, judging RO-EXPORT on
    # the read-only bind mount.
    run = subprocess.Popen([sys.executable, "-m", "pagefs.conformance.cli", "run", "--target",
                            "local", "--properties", "HANDLE,RO-EXPORT", "--examples",
                            "100000"], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    try:
        assert "HANDLE: n/a" in run.stderr.readline()
        assert _mounts_under(tmp_path)
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=60)  # a hang guard, not a timing
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 143
    assert err.strip().splitlines() == [
        "pagefs-conformance: terminated (SIGTERM); targets stopped and cleaned up"]
    assert _mounts_under(tmp_path) == []
    assert os.listdir(tmp_path) == []
