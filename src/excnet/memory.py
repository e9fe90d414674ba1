"""Process memory for large photos: freed blocks kept for reuse, and the heap mapped ahead.

A fresh process pays for every page it touches the first time: on the 2-core VMs measured
here, mapping and zeroing 360 MB took 0.24 to 0.71 s, spent inside whatever touched it first.
Two remedies, both for glibc only (elsewhere they do nothing):

* `keep_freed_memory`: a freed large array stays in the heap, so the next photo (or the next
  stage of this one) reuses its pages instead of faulting in new ones.
* `mapped_ahead`: while single-threaded work runs (LibRaw's unpacking of a RAW file), a
  helper thread on an idle core touches the heap memory the work after it will allocate and
  frees it again, so that work finds its pages ready.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

# glibc's mallopt parameters.
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
#: Heap memory `mapped_ahead` touches per allocation: small enough to stop promptly.
CHUNK = 8 << 20
_PAGE = 4096


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


@cache
def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018 - present in glibc, absent in some other C libraries
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Let the process reuse the memory of freed large arrays instead of returning it.

    glibc hands every block over 32 MB back to the kernel when it is freed, so each array of
    a 12 MP photo (36 to 48 MB; a dozen per photo) is mapped, page-faulted and zeroed anew:
    about 0.2 s of system time per photo, measured. Served from the heap and kept there, the
    next photo reuses the same pages; the peak memory is the same. Process-wide and for
    glibc only (elsewhere nothing changes); returns whether it applied.
    """
    libc = _glibc()
    if libc is None:
        return False
    # One arena: the threads share one heap (per-thread arenas would each hold their own
    # freed photos: 1.6 GB instead of 0.45 GB with three threads, measured).
    return all(libc.mallopt(param, value) for param, value in (
        (_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1)))


def heap_use() -> tuple[int, int, int] | None:
    """(bytes free in the heap, bytes in use there, bytes in blocks mapped outside it), from
    glibc's mallinfo2; None where it is not available."""
    libc = _glibc()
    query = getattr(libc, "mallinfo2", None)
    if query is None:
        return None
    query.restype = _MallInfo2
    info = query()
    return int(info.fordblks), int(info.uordblks), int(info.hblkhd)


@contextmanager
def mapped_ahead(nbytes: int) -> Iterator[None]:
    """Touch up to `nbytes` of heap memory on a helper thread while the body runs.

    The helper allocates blocks of `CHUNK` bytes until it holds `nbytes`, writes one byte per
    page of each, and frees them all when the body ends (stopping early then): allocations
    after the body find those pages mapped. The blocks use the heap's free space first, so
    the heap grows only by what it lacked; with `nbytes` free already (a batch after its
    first photo) nothing is done. Nothing is done either unless freed blocks stay in the heap
    (`keep_freed_memory`): a block mapped outside it stops the helper at once.
    """
    use = heap_use()
    if use is None or use[0] >= nbytes:
        yield
        return
    stop = threading.Event()

    def touch() -> None:
        import numpy as np

        blocks = []
        outside = heap_use()[2]
        try:
            while len(blocks) * CHUNK < nbytes and not stop.is_set():  # free space first
                block = np.empty(CHUNK, np.uint8)
                if heap_use()[2] > outside:  # mapped outside the heap: freeing unmaps it
                    return
                block[::_PAGE] = 0
                blocks.append(block)
        except MemoryError:  # a head start only: the work itself reports a lack of memory
            return

    helper = threading.Thread(target=touch, name="excnet-map-ahead", daemon=True)
    helper.start()
    try:
        yield
    finally:
        stop.set()
        helper.join()
