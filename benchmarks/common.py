"""Old import path of the benchmark harness (now `benchmarks/harness/`, one concern per module).

Kept only for serving.py, inference_speed.py and text.py, which other work is editing right now;
new code imports from `harness.<module>`. Remove once those three import from the harness.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `harness` beside this file, however we were imported
from harness.cli import add_common_args, run_main, size_of  # noqa: E402,F401
from harness.env import BENCH, PROFILES, RESULTS, ROOT, THREADS, TMP, setup  # noqa: E402,F401
from harness.machine import loaded, machine  # noqa: E402,F401
from harness.profiles import load_profile, quiet_training, with_overrides  # noqa: E402,F401
from harness.results import finish, write_result  # noqa: E402,F401
from harness.stages import pipeline  # noqa: E402,F401
from harness.tables import table, verdict  # noqa: E402,F401
