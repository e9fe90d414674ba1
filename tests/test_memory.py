"""Process memory (excnet.memory): freed blocks kept, the heap mapped ahead of large work.

malloc's settings are process-wide, so each case runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

PRELUDE = """
import json, resource, threading, time
import numpy as np
from excnet import memory

def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

def touch_new(nbytes):
    '''How much the resident memory grows when nbytes are allocated and touched (one byte
    per page): nbytes for fresh pages, 0 for pages already mapped.'''
    before = resident()
    block = np.empty(nbytes, np.uint8)
    block[::4096] = 1
    return resident() - before
"""


def run(body: str) -> dict:
    code = PRELUDE + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_memory_mapped_ahead_is_found_ready() -> None:
    """After `mapped_ahead`, a large allocation finds its pages mapped: the process does not
    grow when it touches them (without it, the same allocation maps every page anew)."""
    got = run("""
        assert memory.keep_freed_memory()
        cold = touch_new(48 << 20)  # kept in the heap afterwards
        with memory.mapped_ahead(160 << 20):
            time.sleep(1.0)  # the single-threaded work the helper runs beside
        free = memory.heap_use()[0]
        warm = touch_new(96 << 20)
        print(json.dumps({"cold": cold, "free": free, "warm": warm}))
    """)
    assert got["cold"] > 0.9 * (48 << 20)  # the control: a fresh block maps every page
    assert got["free"] >= 150 << 20  # the heap holds what was asked for
    assert got["warm"] < 0.05 * (96 << 20)  # ... mapped already


def test_nothing_is_mapped_when_the_heap_has_room_already() -> None:
    got = run("""
        memory.keep_freed_memory()
        touch_new(96 << 20)  # freed, and kept
        with memory.mapped_ahead(64 << 20):
            names = [t.name for t in threading.enumerate()]
        print(json.dumps({"names": names}))
    """)
    assert "excnet-map-ahead" not in got["names"]


def test_without_kept_memory_the_helper_gives_up_and_nothing_grows() -> None:
    """glibc's defaults map large blocks outside the heap and unmap them when freed: touching
    them ahead would be wasted, so the helper stops at its first block."""
    got = run("""
        def peak():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10

        before = memory.heap_use(), peak()
        with memory.mapped_ahead(256 << 20):
            time.sleep(0.5)
        after = memory.heap_use(), peak()
        print(json.dumps({"before": before, "after": after}))
    """)
    (heap_before, peak_before), (heap_after, peak_after) = got["before"], got["after"]
    assert heap_after[0] - heap_before[0] < 16 << 20  # the heap did not keep 256 MB
    assert peak_after - peak_before < 32 << 20  # nor were 256 MB touched and unmapped
