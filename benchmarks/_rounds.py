"""Shared by the benchmarks: median and range of repeated rounds, and whether the machine was loaded.

A figure taken while other processes compete for the CPU is an upper bound on time (a lower bound on speed), so
every benchmark records the 1-minute load average before and after its measurements and flags the run "loaded"
when either exceeds half the number of cores.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence


def spread(values: Sequence[float], digits: int = 3) -> dict:
    """{"median", "min", "max", "rounds"} of one measured quantity over rounds."""
    if not values:
        raise ValueError("spread() of no rounds")
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "rounds": len(values)}


def load_now() -> float:
    return os.getloadavg()[0]


def load_report(before: float, after: float, cores: int | None = None) -> dict:
    """{"loadavg_before", "loadavg_after", "cores", "loaded"}: loaded when either 1-min load > cores / 2."""
    cores = cores or os.cpu_count() or 1
    return {"loadavg_before": round(before, 2), "loadavg_after": round(after, 2), "cores": cores,
            "loaded": max(before, after) > cores * 0.5}
