"""CPU memory: a fixed glibc mmap threshold so freed activation buffers go back to the OS.

glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), after which the few-MiB
activation and gradient buffers of a training step are carved from the heap; freed ones then sit as holes the
heap cannot return, and the resident set grows step after step (measured: ~0.4 GB on the dim-512 micro model,
see benchmarks/step_time.py). A fixed threshold keeps every buffer at or above it in its own mapping, returned on
free — at the price of a page fault per fresh buffer (measured: ~20 % slower steps on this 2-core CPU).
Off by default; `train.cpu_mmap_threshold_mb` turns it on for CPU runs. A no-op where glibc is absent (macOS).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

_M_MMAP_THRESHOLD = -3  # glibc <malloc.h>


def set_mmap_threshold(megabytes: float) -> bool:
    """mallopt(M_MMAP_THRESHOLD, megabytes MiB) in this process; True when applied (Linux with glibc)."""
    if megabytes <= 0:
        raise ValueError(f"mmap threshold must be > 0 MiB, got {megabytes}")
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, int(megabytes * 1024 * 1024)))
