"""The machine a result was measured on, and whether other work shared its CPUs."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine since boot; steal (a VM host's other guests) counts as busy."""
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in
                                                               Path("/proc/stat").read_text().split()[1:9])
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def loaded(window: float = 1.0) -> bool:
    """Other work shares the CPUs: while this process sleeps `window` s, more than a quarter of the machine's
    CPU time is busy. Wall times would count that work too, so timing verdicts are judged on this process's
    CPU seconds instead. Measured, not read from the 1-min load average: that lags for a minute after other
    work ends, and counts this benchmark's own threads."""
    try:
        b0, t0 = _cpu_jiffies()
        time.sleep(window)
        b1, t1 = _cpu_jiffies()
    except (OSError, ValueError):  # no /proc (not Linux)
        return os.getloadavg()[0] > (os.cpu_count() or 1)
    return (b1 - b0) / max(t1 - t0, 1) > 0.25


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
