"""Row strips: a per-pixel pass over a large image, a cache-sized band of rows at a time.

Every full-resolution pass of the restoration (luminance, base layer, gain look-up, applying
the gain) works on bands small enough to stay in the CPU cache, so a 12 MP photo's arrays are
streamed through once instead of being written and read back whole. These passes are bound by
memory traffic, not arithmetic: on a 2-core machine, whole-image passes run 1.5x slower than
64K-pixel bands, and two threads per photo gained nothing (measured): a batch keeps the cores
busy with one photo per thread instead.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Pixels per band: a few float32 rows of a band fit a core's share of the cache.
PIXELS = 1 << 18


def bands(shape: Sequence[int], pixels: int | None = None, multiple: int = 1) -> list[slice]:
    """Row ranges of about `pixels` (default `PIXELS`) pixels covering an image of this
    (H, W, ...) shape; each band but the last holds a multiple of `multiple` rows."""
    step = max(1, (pixels or PIXELS) // max(1, shape[1]))
    step = max(multiple, step // multiple * multiple)
    return [slice(r, min(r + step, shape[0])) for r in range(0, shape[0], step)]
