"""The suite leaves the process and the machine as it found them."""

import os
import stat

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
