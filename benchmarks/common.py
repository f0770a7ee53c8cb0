# ruff: noqa: I001  (two lines from harness.env keep every line under 120 characters)
"""Old import path of the benchmark harness (now `benchmarks/harness/`, one concern per module).

Kept, with every name it had, only for serving.py, inference_speed.py, text.py and text_embed.py, which
other work is editing right now; new code imports from `harness.<module>`. Remove once those import from
the harness.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `harness` beside this file, however we were imported
from harness.cli import add_common_args, run_main, size_of  # noqa: E402,F401
from harness.clocks import CpuClock, latest_run_epochs, latest_run_history  # noqa: E402,F401
from harness.env import BENCH, PROFILES, RESULTS, ROOT, TELEMETRY_OFF, THREADS, TMP  # noqa: E402,F401
from harness.env import child_env, cleanup, fresh_dir, setup  # noqa: E402,F401
from harness.fixtures import digits28, image_npz, speed_fixture  # noqa: E402,F401
from harness.machine import loaded, machine  # noqa: E402,F401
from harness.profiles import ROLES_TRAIN, load_profile, quiet_training, scale_epochs, with_overrides  # noqa: E402,F401
from harness.results import finish, write_result  # noqa: E402,F401
from harness.stages import pipeline, stage  # noqa: E402,F401
from harness.stats import mean_std, pm  # noqa: E402,F401
from harness.tables import table, verdict  # noqa: E402,F401
