"""The CPU allocator knob: applied through glibc's mallopt in a fresh process, refused when not positive."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from wmtp_core.train.allocator import set_mmap_threshold

_PROBE = """
import ctypes, sys
from wmtp_core.train.allocator import set_mmap_threshold
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                 "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = Info
applied = set_mmap_threshold(1) if sys.argv[1] == "fixed" else False
libc.free(libc.malloc(16 << 20))  # glibc's default raises its threshold to 16 MiB here
blocks = [libc.malloc(2 << 20) for _ in range(8)]  # 8 x 2 MiB activation-sized buffers
print(applied, libc.mallinfo2().hblkhd)  # bytes in their own mappings (returned to the OS on free)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_fixed_threshold_returns_freed_buffers_to_the_os():
    def probe(mode: str) -> tuple[str, int]:
        out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True,
                             check=True).stdout.split()
        return out[0], int(out[1])

    applied, mapped = probe("fixed")
    assert applied == "True" and mapped >= 16 << 20  # every 2 MiB buffer has its own mapping
    assert probe("default")[1] < 2 << 20  # glibc's default carves them from the heap (kept there on free)


def test_threshold_must_be_positive():
    with pytest.raises(ValueError, match="must be > 0 MiB"):
        set_mmap_threshold(0)
