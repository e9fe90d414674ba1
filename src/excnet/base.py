"""Luminance to base layer to network input: the smooth layer the curve is fitted to and applied on.

Base layer: the self-guided filter of He et al. (guide = input = Y) with radius
r = int(0.04 * min(H, W)) and eps = 800 on the 0..255 scale. The network (and the loss) see the
base layer scaled to [0, 1] and resized to 128 x 128.

`guided_filter` is exact (the oracle); `fast_guided_filter` is He & Sun's subsampled "fast
guided filter" (arXiv:1505.00996) with exact second moments, within a fraction of a grey
level of it at a twentieth of the cost on a 12 MP photo.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from . import strips

EPS = 800.0
RADIUS_FRACTION = 0.04
INPUT_SIZE = 128
#: Long side (pixels) of the luminance `normalised_input` works on.
NORMALISED_SIDE = 512
#: Window radius of the reduced grid of `fast_guided_filter` (the full-resolution radius maps here).
LOW_RADIUS = 8


def radius_for(shape: tuple[int, ...], fraction: float = RADIUS_FRACTION) -> int:
    """Guided-filter radius of the method: 4 % of the short side."""
    return int(fraction * min(shape[0], shape[1]))


def _box_mean(img: np.ndarray, r: int) -> np.ndarray:
    """Mean over the (2r+1)^2 window clipped to the image, as in He's reference code."""
    k = (2 * r + 1, 2 * r + 1)
    total = cv2.boxFilter(img, -1, k, normalize=False, borderType=cv2.BORDER_CONSTANT)
    ones = np.ones(img.shape[:2], img.dtype)
    count = cv2.boxFilter(ones, -1, k, normalize=False, borderType=cv2.BORDER_CONSTANT)
    return total / count


def guided_filter(y: np.ndarray, radius: int, eps: float = EPS) -> np.ndarray:
    """Exact self-guided filter of a 2-D float array (float64 internally). Returns float32."""
    if radius < 1:
        return y.astype(np.float32)
    img = y.astype(np.float64)
    mean = _box_mean(img, radius)
    var = _box_mean(img * img, radius) - mean * mean
    a = var / (var + eps)
    b = mean - a * mean
    return (_box_mean(a, radius) * img + _box_mean(b, radius)).astype(np.float32)


def _reduced(y: np.ndarray, radius: int, eps: float, low_radius: int
             ) -> tuple[np.ndarray, np.ndarray, int]:
    """Guided-filter coefficients on a grid of s x s cells: (mean a, mean b) float32, and s.

    The window 2r + 1 becomes 2 * low_radius' + 1 cells of s pixels, with integer s (OpenCV's
    fast exact area averaging) and low_radius' chosen so the extents match within s pixels.
    The last partial cells are filled by replicating the edge.
    """
    s = max(1, (2 * radius + 1) // (2 * low_radius + 1))
    r_low = max(1, round(((2 * radius + 1) / s - 1) / 2))
    mean_y, mean_yy = cell_moments(y, s)
    mean = _box_mean(mean_y.astype(np.float64), r_low)
    var = _box_mean(mean_yy.astype(np.float64), r_low) - mean * mean
    a = var / (var + eps)
    b = mean - a * mean
    return _box_mean(a, r_low).astype(np.float32), _box_mean(b, r_low).astype(np.float32), s


def _cell_bands(img: np.ndarray, s: int) -> Iterator[tuple[slice, np.ndarray]]:
    """(grid rows, pixels) for each band of whole s x s cells of img, the band's pixels padded
    to whole cells by replicating the edge (a band at a time: the padding copies one band)."""
    h, w = img.shape[:2]
    wp = -(-w // s) * s
    for rows in strips.bands(img.shape, multiple=s):
        part = np.ascontiguousarray(img[rows])
        below = -(-part.shape[0] // s) * s - part.shape[0]
        if below or wp != w:
            part = cv2.copyMakeBorder(part, 0, below, 0, wp - w, cv2.BORDER_REPLICATE)
        yield slice(rows.start // s, rows.start // s + part.shape[0] // s), part


def _grid_shape(img: np.ndarray, s: int) -> tuple[int, ...]:
    return (-(-img.shape[0] // s), -(-img.shape[1] // s)) + img.shape[2:]


def cell_grid(img: np.ndarray, s: int, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """One value per s x s cell (edge replicated to a whole number of cells), same dtype: the
    area mean, or with INTER_LINEAR the mean of the 2 x 2 pixels at the cell's centre (cheaper:
    it reads a quarter of a 4 x 4 cell). Each cell depends on its own pixels only."""
    if s == 1:
        return img
    out = np.empty(_grid_shape(img, s), img.dtype)
    for cells, part in _cell_bands(img, s):
        cv2.resize(part, (out.shape[1], part.shape[0] // s), dst=out[cells],
                   interpolation=interpolation)
    return out


def cell_moments(y: np.ndarray, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Area means of y and of y * y (H, W) over s x s cells, edge replicated; float32, in one
    pass over y (the grid statistics of the guided filters here and in `denoise`)."""
    y = np.asarray(y, dtype=np.float32)
    if s == 1:
        return y, cv2.multiply(y, y)
    mean, mean_sq = np.empty(_grid_shape(y, s), np.float32), np.empty(_grid_shape(y, s), np.float32)
    for cells, part in _cell_bands(y, s):
        size = (mean.shape[1], part.shape[0] // s)
        cv2.resize(part, size, dst=mean[cells], interpolation=cv2.INTER_AREA)
        cv2.resize(cv2.multiply(part, part), size, dst=mean_sq[cells],
                   interpolation=cv2.INTER_AREA)
    return mean, mean_sq


def upsample(grid: np.ndarray, s: int, rows: slice, cols: slice) -> np.ndarray:
    """Pixels rows x cols of `grid` upsampled bilinearly by the integer s (OpenCV's resize),
    exactly as upsampling the whole grid would give them: only the cells they need (and one
    of margin on each side) are upsampled."""
    if s == 1:
        return grid[rows, cols]
    i0, i1 = max(0, rows.start // s - 1), min(grid.shape[0], -(-rows.stop // s) + 1)
    j0, j1 = max(0, cols.start // s - 1), min(grid.shape[1], -(-cols.stop // s) + 1)
    part = grid[i0:i1, j0:j1]
    up = cv2.resize(part, ((j1 - j0) * s, (i1 - i0) * s), interpolation=cv2.INTER_LINEAR)
    return up[rows.start - i0 * s:rows.stop - i0 * s, cols.start - j0 * s:cols.stop - j0 * s]


def fast_guided_filter(y: np.ndarray, radius: int, eps: float = EPS,
                       low_radius: int = LOW_RADIUS, threads: int = 1) -> np.ndarray:
    """Self-guided filter computed on a reduced grid; float32 (H, W) like `guided_filter`.

    He & Sun's "fast guided filter" (arXiv:1505.00996), except that the grid holds the exact
    area means of y and y^2, so the variance keeps the texture finer than a cell (subsampling
    y itself loses it). The coefficients a, b are computed and box-averaged there, upsampled
    bilinearly, and q = a * y + b is formed at full resolution, a band of rows at a time
    (`strips`), the bands shared by `threads`. Radii up to `low_radius` run the exact filter.
    """
    if radius <= low_radius:
        return guided_filter(y, radius, eps)
    a, b, s = _reduced(y, radius, eps, low_radius)
    q = np.empty(y.shape, np.float32)
    cols = slice(0, y.shape[1])

    def band(rows: slice) -> None:
        out = q[rows]
        cv2.multiply(upsample(a, s, rows, cols), y[rows], dst=out)
        cv2.add(out, upsample(b, s, rows, cols), dst=out)

    # Whole cells, and bands twice the usual: each upsamples a cell of margin on both sides.
    strips.for_each(band, strips.bands(y.shape, 2 * strips.PIXELS, multiple=s), threads)
    return q


def base_layer(y: np.ndarray, eps: float = EPS,
               radius_fraction: float = RADIUS_FRACTION) -> np.ndarray:
    """The method's base layer of luminance y (H, W) on 0..255 -> float32 (H, W) on 0..255."""
    return guided_filter(y, radius_for(y.shape, radius_fraction), eps)


def fast_base_layer(y: np.ndarray, eps: float = EPS,
                    radius_fraction: float = RADIUS_FRACTION, threads: int = 1) -> np.ndarray:
    """`base_layer` through `fast_guided_filter` (on `threads`): the default restoration path."""
    return fast_guided_filter(y, radius_for(y.shape, radius_fraction), eps, threads=threads)


def network_input(base: np.ndarray, size: int = INPUT_SIZE, exact: bool = False) -> np.ndarray:
    """Base layer (H, W) on 0..255 -> float32 (size, size) in [0, 1].

    Area averaging when shrinking (plain bilinear would alias a 12 MP image down to a few
    sampled pixels), bilinear when enlarging. An image of 1024 pixels or more on its short
    side is first averaged over square cells (`pre_shrink`; OpenCV's integer area shrink, far
    cheaper than the fractional one), so that each input pixel is then the mean of at least
    4 x 4 cells; it differs from the one-step area mean only near strong edges, and little.
    exact: the one-step mean (the faithful rendering's, bit for bit as published).
    """
    h, w = base.shape
    interp = cv2.INTER_AREA if h >= size and w >= size else cv2.INTER_LINEAR
    src = base.astype(np.float32, copy=False)
    cell = 1 if exact or interp != cv2.INTER_AREA else pre_shrink(base.shape, size)
    if cell > 1:
        src = cell_grid(src, cell)
    x = cv2.resize(src, (size, size), interpolation=interp)
    return np.clip(x / 255.0, 0.0, 1.0)


def pre_shrink(shape: tuple[int, ...], size: int = INPUT_SIZE) -> int:
    """The largest cell of 2, 4 or 8 pixels that leaves at least 4 cells per input pixel
    across the short side (1: none; images under 1024 pixels keep the one-step mean)."""
    cell = 1
    while cell < 8 and min(shape[0], shape[1]) // (2 * cell) >= 4 * size:
        cell *= 2
    return cell


def normalised_input(y: np.ndarray, eps: float = EPS,
                     radius_fraction: float = RADIUS_FRACTION) -> np.ndarray:
    """The network input (128 x 128 float32 in [0, 1]) of the base layer that luminance y
    (H, W) on 0..255 would have with its bright end (99.5th percentile) at white, brought back
    to y's own level.

    The guided filter's eps is absolute, so the base layer of a frame a few stops down sees
    no edge above it: small highlights are averaged away and the frame's percentiles drift
    with its exposure (a photo 5 stops down read 0.8 EV more headroom than itself). Here eps
    is scaled with the frame's level (the filter of k * y with eps is k times that of y with
    eps / k^2), so statistics read from this input follow the exposure and nothing else.
    Works on y shrunk to `NORMALISED_SIDE` pixels (area mean): about 8 ms at 12 MP.
    """
    small = np.asarray(y, np.float32)
    cell = max(small.shape) // NORMALISED_SIDE
    if cell > 1:  # whole cells first: OpenCV's integer area shrink is far cheaper
        small = cell_grid(small, cell)
    h, w = small.shape
    scale = NORMALISED_SIDE / max(h, w)
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = cv2.resize(small, size, interpolation=cv2.INTER_AREA)
    flat = small.ravel()
    rank = int(0.995 * (flat.size - 1))
    bright = float(np.partition(flat, rank)[rank])
    k = min(255.0 / max(bright, 1.0), 64.0)
    return network_input(fast_base_layer(small, eps / (k * k), radius_fraction))
