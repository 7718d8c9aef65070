"""Nothing phones home: importing the pipeline records the telemetry opt-out."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_it_declines_openvino_and_nncf_telemetry_for_a_fresh_user(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("CI", None)  # the library also stays quiet in CI; prove the opt-out without that
    code = (
        "import workers.pipeline\n"
        "from openvino_telemetry.utils.opt_in_checker import OptInChecker, ConsentCheckResult\n"
        "print(OptInChecker().check(enable_opt_in_dialog=False) == ConsentCheckResult.DECLINED)\n"
        "from openvino_telemetry import Telemetry\n"
        "print(Telemetry(app_name='probe', app_version='0', tid='x', enable_opt_in_dialog=False).consent)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]
    assert (tmp_path / "intel" / "openvino_telemetry").read_text().strip() == "0"
