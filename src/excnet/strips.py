"""Row strips: a per-pixel pass over a large image, a cache-sized band of rows at a time, by
one thread or a few at once.

Every full-resolution pass of the restoration (luminance, base layer, gain look-up, applying
the gain) works on bands small enough to stay in the CPU cache, so a 12 MP photo's arrays are
streamed through once instead of being written and read back whole. `each` runs a pass over
the bands in the calling thread or, with threads > 1, in a pool of that many threads that lives
for the call (the loops are NumPy's and OpenCV's, which release the GIL). Bands never overlap,
so the result does not depend on the number of threads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

#: Pixels per band: a few float32 rows of a band fit a core's share of the cache.
PIXELS = 1 << 18


def bands(shape: Sequence[int], pixels: int | None = None, multiple: int = 1) -> list[slice]:
    """Row ranges of about `pixels` (default `PIXELS`) pixels covering an image of this
    (H, W, ...) shape; each band but the last holds a multiple of `multiple` rows."""
    step = max(1, (pixels or PIXELS) // max(1, shape[1]))
    step = max(multiple, step // multiple * multiple)
    return [slice(r, min(r + step, shape[0])) for r in range(0, shape[0], step)]


def each(fn: Callable[[T], object], parts: Sequence[T], threads: int = 1) -> None:
    """fn(part) for every part, in this thread or spread over `threads` threads; the first
    exception is raised once every part has finished."""
    if threads <= 1 or len(parts) < 2:
        for part in parts:
            fn(part)
        return
    with ThreadPoolExecutor(max_workers=min(threads, len(parts))) as pool:
        for done in [pool.submit(fn, part) for part in parts]:
            done.result()
