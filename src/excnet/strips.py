"""Row strips: a per-pixel pass over a large image, a cache-sized band of rows at a time.

Every full-resolution pass of the restoration (luminance, base layer, gain look-up, applying
the gain) works on bands small enough to stay in the CPU cache, so a 12 MP photo's arrays are
streamed through once instead of being written and read back whole. On a 2-core machine,
whole-image passes run 1.5x slower than 64K-pixel bands. The restoration's passes (many small
OpenCV and NumPy calls per band) gain 1.1-1.2x from two threads per photo (`for_each`), worth
it only where the photo has the cores to itself: a batch keeps them busy with one photo per
thread instead. A plain table look-up (`look_up`) gains 1.8x with two threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence

import numpy as np

#: Pixels per band: a few float32 rows of a band fit a core's share of the cache.
PIXELS = 1 << 18


def bands(shape: Sequence[int], pixels: int | None = None, multiple: int = 1) -> list[slice]:
    """Row ranges of about `pixels` (default `PIXELS`) pixels covering an image of this
    (H, W, ...) shape; each band but the last holds a multiple of `multiple` rows."""
    step = max(1, (pixels or PIXELS) // max(1, shape[1]))
    step = max(multiple, step // multiple * multiple)
    return [slice(r, min(r + step, shape[0])) for r in range(0, shape[0], step)]


def look_up(table: np.ndarray, pixels: np.ndarray, out: np.ndarray,
            threads: int | None = None) -> np.ndarray:
    """out[...] = table[pixels] (out may be pixels itself), 64K-pixel bands at a time (3x
    faster than one whole-image look-up, and no index array the size of the image), the bands
    shared by `threads` (default up to 4): NumPy's take releases the GIL, 1.8x faster on 2
    cores. A caller already running on a thread of its own passes 1."""
    for_each(lambda rows: np.take(table, pixels[rows], out=out[rows]),
             bands(pixels.shape, pixels=1 << 16), threads_for(threads))
    return out


def threads_for(threads: int | None) -> int:
    """`threads`, or where None this machine's cores, at most 4: the default of one image's
    pass shared among threads (`look_up`, a JPEG's or a 16-bit TIFF's strips)."""
    return min(4, os.cpu_count() or 1) if threads is None else threads


def for_each(work: Callable[[slice], object], parts: Sequence[slice], threads: int = 1) -> None:
    """work(rows) for every band of `parts`, shared out in runs of neighbouring bands to
    `threads` threads (at most one per core; this thread is one of them). For passes whose
    calls release the GIL (OpenCV, NumPy) and whose bands write disjoint rows. An exception
    in any thread is raised here, once every thread has stopped."""
    if not parts:  # no rows
        return
    threads = min(threads, os.cpu_count() or 1, len(parts))
    per = -(-len(parts) // max(1, threads))
    shares = [parts[i:i + per] for i in range(0, len(parts), per)]
    failed: list[BaseException] = []

    def run(share: Sequence[slice]) -> None:
        try:
            for rows in share:
                work(rows)
        except BaseException as exc:  # noqa: BLE001 - raised by the calling thread below
            failed.append(exc)

    helpers = [threading.Thread(target=run, args=(share,)) for share in shares[1:]]
    for helper in helpers:
        helper.start()
    run(shares[0])
    for helper in helpers:
        helper.join()
    if failed:
        raise failed[0]
