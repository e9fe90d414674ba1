"""The curve's per-pixel gain over a base layer, looked up where it is needed, never stored whole.

A restored pixel is its input times the gain f(b)/b of its base-layer value b (`curve.gain`),
with the colour offsets scaled by the chroma gain of the default rendering
(`colour.exposure_chroma`). At 12 MP those maps are 48 MB each: writing them out and reading
them back costs more than the arithmetic. `GainMap` reads them from tables at any region of
the base layer (`gains[rows, cols]`, like an array), and `render` applies them a cache-sized
band at a time.

Arrays: base (H, W) float32 on 0..255; gains float32; pixels uint8/uint16 as `colour` takes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from . import strips
from .colour import apply_band, check_pixels, exposure_chroma
from .curve import Curve, gain, gain_lut

#: Entries of the gain table: one per 16-bit step of the base layer.
LUT_SIZE = 65536
_TO_INDEX = (LUT_SIZE - 1) / 255.0
#: Band of rows `render` works on: its float maps stay in a core's cache.
BAND_PIXELS = 1 << 16


@dataclass(frozen=True)
class GainMap:
    """The gain of `curve` at every pixel of `base`, as `gains[index]` (float32, a new array).

    The base layer is quantised to 1/257 of a grey level (nearest entry of a 65536-entry
    table), which moves the gain by far less than one output level.
    """

    base: np.ndarray
    table: np.ndarray

    @classmethod
    def of(cls, base: np.ndarray, curve: Curve) -> GainMap:
        return cls(base, gain_lut(curve, LUT_SIZE))

    @property
    def shape(self) -> tuple[int, ...]:
        return self.base.shape

    def within(self, tolerance: float) -> bool:
        """Whether every gain of the table is within `tolerance` of 1."""
        return float(np.abs(self.table - 1.0).max()) < tolerance

    def __getitem__(self, index) -> np.ndarray:  # noqa: ANN001 - any NumPy index
        part = np.ascontiguousarray(self.base[index], dtype=np.float32)
        # addWeighted takes its factors as plain numbers; cv2.multiply's scalar argument is
        # read as an array when `part` is one column of at most four rows (OpenCV 5).
        return np.take(self.table, cv2.addWeighted(part, _TO_INDEX, part, 0.0, 0.0,
                                                   dtype=cv2.CV_16U))


@dataclass(frozen=True)
class ChromaMap:
    """The chroma gain of the default rendering at every pixel of `base`: the luma gain times
    `colour.exposure_chroma`, the latter from a 256-entry table at the base layer rounded to a
    grey level (it varies slowly with b and only scales colour offsets)."""

    luma: GainMap
    factor: np.ndarray

    @classmethod
    def of(cls, luma: GainMap, curve: Curve) -> ChromaMap:
        levels = np.arange(256) / 255.0
        return cls(luma, exposure_chroma(levels, gain(curve, levels)).astype(np.float32))

    @property
    def shape(self) -> tuple[int, ...]:
        return self.luma.shape

    def __getitem__(self, index) -> np.ndarray:  # noqa: ANN001 - any NumPy index
        return self.with_luma(index, self.luma[index])

    def within(self, tolerance: float) -> bool:
        """Whether the luma gain minus this gain (`colour.apply_gains`' second term) stays
        below `tolerance` everywhere."""
        most = float(self.luma.table.max()) * (1.0 - float(self.factor.min()))
        return most < tolerance

    def with_luma(self, index, luma: np.ndarray) -> np.ndarray:  # noqa: ANN001
        """The chroma gain at index, given the luma gain there (saves a look-up)."""
        levels = cv2.convertScaleAbs(np.ascontiguousarray(self.luma.base[index]))
        return cv2.multiply(cv2.LUT(levels, self.factor), luma)


#: An adjustment of one band before it is applied: (rows, luma gain, chroma gain or None) ->
#: an addend for the band's pixels (uint, `colour` channels) at columns `cols`, or None.
Adjust = Callable[[slice, np.ndarray, "np.ndarray | None"], "tuple[slice, np.ndarray] | None"]


def render(pixels: np.ndarray, y: np.ndarray, gains, chroma=None,  # noqa: ANN001
           adjust: Adjust | None = None, align: int = 1, out: np.ndarray | None = None,
           threads: int = 1) -> np.ndarray:
    """`colour.apply_gain` (chroma None) or `colour.apply_gains` of the maps, band by band.

    gains / chroma: a `GainMap` / `ChromaMap`, or (H, W) arrays. adjust(rows, g, c) may scale
    the band's gains in place and return (cols, addend) to add (saturating) after the gain;
    every band lies within one block of `align` rows (a power of two). Same shape and dtype
    out; the same pixels as the whole-image functions. The maps given are never modified.
    out: where to write (pixels itself is allowed: each band is read before it is written).
    threads: how many threads share the bands (`strips.for_each`); adjust is then called from
    each of them, on neighbouring bands.
    """
    check_pixels(pixels)
    if out is None:
        out = np.empty(pixels.shape, pixels.dtype)
    elif out.shape != pixels.shape or out.dtype != pixels.dtype:
        raise ValueError(f"out must be {pixels.dtype} {pixels.shape}, not {out.dtype} {out.shape}")
    if adjust is None and _leaves_unchanged(pixels, gains, chroma):
        if out is not pixels:
            np.copyto(out, pixels)
        return out

    def band(rows: slice) -> None:
        g = gains[rows]  # a map's look-up is a new array; an array's slice is copied
        g = g if isinstance(gains, GainMap) else np.array(g, dtype=np.float32)
        if chroma is None:
            c = None
        elif isinstance(chroma, ChromaMap) and isinstance(gains, GainMap):
            c = chroma.with_luma(rows, g)
        else:
            c = np.array(chroma[rows], dtype=np.float32)
        extra = adjust(rows, g, c) if adjust is not None else None
        apply_band(pixels[rows], g, c, y[rows], out[rows])
        if extra is not None:
            cols, more = extra
            region = out[rows, cols]
            if region.ndim == 2 or region.shape[2] == (1 if more.ndim == 2 else more.shape[2]):
                cv2.add(region, more, dst=region)
            elif more.ndim == 3:  # colour plus alpha: add to the colour channels
                region[..., :3] = cv2.add(region[..., :3], more)
            else:  # grey plus alpha
                region[..., 0] = cv2.add(region[..., 0], more)

    step = max(1, BAND_PIXELS // max(1, pixels.shape[1]))
    if align > 1:  # within one aligned block: align itself or a power of two below it
        step = align if step >= align else 1 << (step.bit_length() - 1)
    strips.for_each(band, strips.bands(pixels.shape, step * pixels.shape[1]), threads)
    return out


def _leaves_unchanged(pixels: np.ndarray, gains, chroma) -> bool:  # noqa: ANN001
    """Whether applying these maps rounds every pixel back to itself: a gain within half a
    level of 1 at full scale (and colour offsets within half a level of the luma gain, where
    a chroma map is given). A photo that needs no correction then costs a copy at most."""
    if not isinstance(gains, GainMap) or not (chroma is None or isinstance(chroma, ChromaMap)):
        return False
    half = 0.49 / np.iinfo(pixels.dtype).max  # a margin for OpenCV's float32 products
    return gains.within(half) and (chroma is None or chroma.within(half))
