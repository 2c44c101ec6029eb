"""Shared by the benchmarks: median and range of repeated rounds, and whether the machine was loaded.

A figure taken while other processes compete for the CPU is an upper bound on time (a lower bound on speed), so
every benchmark snapshots the machine before and after its measurements (`load_now`) and `load_report` says how
many cores other work kept busy in between: the machine's busy CPU time (/proc/stat: user .. steal, so a VM's
stolen time counts too) minus this process's and its waited-for children's own CPU time, over the wall time. The
run is "loaded" when that exceeds LOADED_SHARE of the cores. The 1-minute load averages are printed beside it, but
they lag and count the benchmark itself (a 1-thread run alone reads ~1.0), so they do not decide. Where
/proc/stat cannot be read, the load-average rule (either above half the cores) decides, and the report says so.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

LOADED_SHARE = 0.2  # other work above this fraction of the cores (0.4 of 2) marks a run loaded


def spread(values: Sequence[float], digits: int = 3) -> dict:
    """{"median", "min", "max", "rounds"} of one measured quantity over rounds."""
    if not values:
        raise ValueError("spread() of no rounds")
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "rounds": len(values)}


def in_turn(round_index: int, sides: Sequence[T]) -> Sequence[T]:
    """The sides of a side-by-side comparison in the order round `round_index` runs them: they alternate which goes
    first, so a drift in the machine's speed within a round favours neither."""
    return sides if round_index % 2 == 0 else sides[::-1]


@dataclass(frozen=True)
class Snapshot:
    loadavg: float  # 1-minute load average (this process included)
    busy_s: float | None  # CPU seconds the whole machine was busy since boot; None where /proc/stat is missing
    own_s: float  # CPU seconds of this process and its waited-for children
    wall_s: float  # time.monotonic()


def machine_busy_seconds(stat: str = "/proc/stat") -> float | None:
    """Busy CPU seconds of all cores since boot: user nice system irq softirq steal (idle and iowait excluded)."""
    try:
        with open(stat, encoding="ascii") as fh:
            ticks = [int(x) for x in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    if len(ticks) < 8:
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def load_now() -> Snapshot:
    t = os.times()
    return Snapshot(os.getloadavg()[0], machine_busy_seconds(),
                    t.user + t.system + t.children_user + t.children_system, time.monotonic())


def load_report(before: Snapshot, after: Snapshot, cores: int | None = None) -> dict:
    """Load averages, the cores other work kept busy between the snapshots, and whether that makes it "loaded"."""
    cores = cores or os.cpu_count() or 1
    report = {"loadavg_before": round(before.loadavg, 2), "loadavg_after": round(after.loadavg, 2), "cores": cores}
    wall = after.wall_s - before.wall_s
    if before.busy_s is None or after.busy_s is None or wall <= 0:
        return report | {"other_cpu_cores": None, "loaded_by": "loadavg",
                         "loaded": max(before.loadavg, after.loadavg) > cores * 0.5}
    others = max(0.0, (after.busy_s - before.busy_s) - (after.own_s - before.own_s)) / wall
    return report | {"other_cpu_cores": round(others, 2), "loaded_by": "other_cpu_cores",
                     "loaded": others > LOADED_SHARE * cores}
