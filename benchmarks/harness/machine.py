"""The machine a result was measured on, and whether other work shared its CPUs."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def loaded() -> bool:
    """Other work shares the CPUs (1-min load average above the core count): wall times count it too,
    so timing verdicts are judged on this process's CPU seconds instead."""
    return os.getloadavg()[0] > (os.cpu_count() or 1)


def machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_avg_1m": os.getloadavg()[0],  # > cores means other work shared the CPUs: timings are slower
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform()}
