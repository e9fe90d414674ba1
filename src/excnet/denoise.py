"""Clean lifting: apply the curve's gain without amplifying noise, JPEG blocks and 8-bit steps.

Lifting a shadow by a gain g multiplies whatever it holds: sensor noise (luminance and chroma),
JPEG blocking, and the 1-level steps of 8-bit shadows all grow g times and become visible.
`lift` applies the gain to a cleaned image where g is large and to the image itself where g is
near 1, so well-exposed parts come out exactly as `colour.apply_gain` gives:

* luminance: a self-guided filter (He et al.) on a grid of s x s cells, as in He & Sun's fast
  guided filter, with a sharper knee: a = var^2 / (var^2 + eps^2) keeps texture whose local
  variance is a few times eps (a weave or small text in the shadows) and smooths the rest.
  eps follows the image's own noise level (estimated here), the 8-bit quantisation step, and
  how much the gain lifts that cell.
* chrominance (colour minus luma): where the filter smooths (weight 1 - a), the clean target's
  chroma is blurred further (the eye sees colour at lower resolution than detail).
* the result is kept in floating point until the gain is applied, so smoothed 8-bit shadows
  land on in-between output levels instead of g-level steps.

Arrays: `pixels` uint8/uint16 (H, W), (H, W, 2), (H, W, 3) or (H, W, 4); `y` luminance (H, W)
float32 on 0..255 (as `colour.luminance`); `gain` (H, W) float32. Grids are (H/s, W/s).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import cv2
import numpy as np

from .base import cell_grid, cell_moments, upsample
from .colour import LUMA_WEIGHTS, colour_channels, scale_to_255
from .defaults import DENOISE_MODES
from .gainmap import render

MODES = DENOISE_MODES
DEFAULT_MODE = "auto"


@dataclass(frozen=True)
class Settings:
    """Constants of one denoise mode (chosen on the synthetic tuning set, benchmarks/denoise.py).

    window: guided-filter window radius in pixels. max_grid: most cells in the grid the filter
    runs on (cells of s x s pixels, s >= 1 chosen so the grid fits: the cost stays bounded on
    large photos, whose noise grain is no coarser). luma: eps = luma * noise variance * lift
    weight. chroma_blur: Gaussian sigma (pixels) of the extra blur of the clean target's
    chroma. visible: lifted noise std (output levels, 0..255) at which the lift weight is full.
    min_excess: share of the output noise variance due to the lift (1 - 1/g^2) below which
    nothing is done (0.5: gain 1.41; 0.93: gain 3.8). steps: eps term for the 8-bit
    rounding, steps * 1/12 level^2 times the lifted share (not the visibility: lifted steps
    band in smooth shades).
    """

    window: int = 4
    max_grid: int = 1 << 19
    luma: float = 8.0
    chroma_blur: float = 6.0
    visible: float = 3.0
    min_excess: float = 0.93
    steps: float = 16.0

    def cell(self, shape: tuple[int, ...]) -> int:
        """Cell side s for an image of this shape."""
        return max(1, int(np.ceil(np.sqrt(shape[0] * shape[1] / self.max_grid))))


#: auto cleans where the lift is large (from a gain of 3.8: 1 - 1/g^2 = 0.93), where the
#: lifted noise is many times the input's; a back-lit subject lifted 2-3x keeps its grain as
#: every peer renders it, and all of its texture. strong cleans from a gain of
#: 1.41, as auto did in 0.2.
SETTINGS = {"auto": Settings(),
            "strong": Settings(window=8, luma=16.0, chroma_blur=9.0, min_excess=0.5)}
#: min_excess of a back-lit photo (adaptive amount BACKLIT_AMOUNT or more): cleaned from a
#: gain of 10 only. Its deep shadows, lifted 4-10x by the curve and its second pass, hold JPEG
#: texture (brick, foliage, lettering) that reads as noise; every peer renders it lifted with
#: its grain.
BACKLIT_MIN_EXCESS, BACKLIT_AMOUNT = 0.99, 0.5


def settings_for(mode: str, amount: float) -> Settings | None:
    """The mode's settings for a photo this back-lit (the adaptive amount, 0..1): `auto`'s
    min_excess goes from its own at amount 0 to BACKLIT_MIN_EXCESS at BACKLIT_AMOUNT (dark
    frames get exposure and amount 0: cleaned as before). None: the mode's own settings."""
    if mode != "auto" or amount <= 0:
        return None
    st = SETTINGS[mode]
    a = min(amount / BACKLIT_AMOUNT, 1.0)
    return replace(st, min_excess=st.min_excess + (BACKLIT_MIN_EXCESS - st.min_excess) * a)


#: Lift weights below this leave a region untouched (exactly `apply_gain`).
MIN_WEIGHT = 0.02
#: Rows per band of the regions cleaned (`_active_spans`).
SPAN_ROWS = 64


@dataclass(frozen=True)
class Lifted:
    """`lift`'s result: the image, the input noise std it estimated (0..255 scale; None when
    off) and the share of the image's pixels in the regions it cleaned (0 when none needed it)."""

    image: np.ndarray
    mode: str
    noise: float | None
    cleaned: float

    def report(self) -> dict:
        """What was applied, for JSON records: mode, noise std (0..255), share cleaned."""
        return {"mode": self.mode,
                "noise": None if self.noise is None else round(self.noise, 3),
                "cleaned": round(self.cleaned, 4)}


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown denoise mode {mode!r}; choose from {', '.join(MODES)}")
    return mode


#: Laplacian-difference kernel (Immerkaer): its response to white noise of std sigma has std
#: 6 sigma, to smooth ramps none.
_LAPLACE = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
#: Side of the blocks whose mean |response| is ranked (`noise_level`).
NOISE_BLOCK = 8
#: Which of the ranked blocks is read: the flattest 3 % of the lifted region (the
#: flattest tenth of a frame filled with brick or foliage still read the texture as noise).
NOISE_PERCENTILE = 3
#: That percentile for unit white noise (simulated, 8 x 1 MP: 3.412 +- 0.006).
_UNIT_RESPONSE = 3.412
#: Blocks darker than this many noise stds are left out of the second reading (clipped noise).
CLIP_MARGIN = 2.0


def noise_level(y: np.ndarray, gain: np.ndarray, max_pixels: int = 1 << 18) -> float:
    """Noise std of luminance y (H, W) on 0..255 where the gain (H, W) lifts (gain > 1.5).

    Immerkaer's Laplacian-difference response (insensitive to smooth ramps), averaged over
    blocks of `NOISE_BLOCK` pixels, read in the flattest `NOISE_PERCENTILE` % of the lifted
    blocks and scaled so that white noise of std sigma reads sigma. Noise covers every block
    alike while texture and edges fill only some, so texture is not read as noise (a median
    over all pixels read fine texture in clean photos as 1-2 levels). Row bands sampled to
    about `max_pixels`. 0 when nothing is lifted or the image is under 16 pixels a side.
    JPEG and camera noise reduction remove the finest noise, so the estimate is also taken
    on the 2 x 2 mean image (where white noise halves) and the larger of the two kept. Near
    black the noise is clipped at level 0 and reads low, and a very dark frame's flattest
    blocks are mostly there: the estimate is taken again on the blocks whose mean is at
    least `CLIP_MARGIN` times the first estimate.
    """
    h, w = y.shape
    if min(h, w) < 2 * NOISE_BLOCK:  # too few blocks to read (a thumbnail, a 1-pixel strip)
        return 0.0
    band = 16
    step = max(band, band * (h * w // max(1, max_pixels)))
    rows = np.concatenate([np.arange(r, min(r + band, h)) for r in range(0, h, step)])
    ys, gs = y[rows], gain[rows]
    scales = []
    for scale in (1, 2):
        img, g = ys, gs
        if scale == 2:
            hh, ww = (ys.shape[0] // 2) * 2, (w // 2) * 2
            img = cv2.resize(ys[:hh, :ww], (ww // 2, hh // 2), interpolation=cv2.INTER_AREA)
            g = gs[:hh:2, :ww:2]
        resp = np.abs(cv2.filter2D(img, cv2.CV_32F, _LAPLACE, borderType=cv2.BORDER_REFLECT))
        inner = (slice(1, -1), slice(1, -1))
        lifted = g[inner] > 1.5
        blocks = cv2.blur(resp, (NOISE_BLOCK, NOISE_BLOCK), borderType=cv2.BORDER_REFLECT)
        means = cv2.blur(img, (NOISE_BLOCK, NOISE_BLOCK), borderType=cv2.BORDER_REFLECT)
        scales.append((scale, blocks[inner][lifted], means[inner][lifted]))
        if scales[-1][1].size < 64:
            return 0.0
    first = _reading(scales, 0.0)
    return _reading(scales, CLIP_MARGIN * first) or first


def _reading(scales: list[tuple[int, np.ndarray, np.ndarray]], floor: float) -> float | None:
    """`noise_level`'s estimate from the blocks whose mean is at least floor: the larger over
    the scales of (scale, block responses, block means); None when too few blocks are left."""
    estimates = []
    for scale, blocks, means in scales:
        kept = blocks[means >= floor] if floor > 0 else blocks
        if kept.size < 64:
            return None
        estimates.append(scale * float(np.percentile(kept, NOISE_PERCENTILE)) / _UNIT_RESPONSE)
    return max(estimates)


def lift_weight(gain: np.ndarray, sigma: float, settings: Settings) -> np.ndarray:
    """How much to clean, in [0, 1], from the gain (any shape) and the input noise std sigma.

    0 where the gain adds less than `settings.min_excess` of the output noise variance
    (1 - 1/g^2) or the lifted noise g * sigma is invisible; 1 where the gain is large and the
    lifted noise reaches `settings.visible` output levels.
    """
    visible = np.minimum(np.asarray(gain, np.float32) * np.float32(sigma / settings.visible), 1)
    return lifted_share(gain, settings) * visible


def lifted_share(gain: np.ndarray, settings: Settings) -> np.ndarray:
    """0 to 1 as the share of the output noise variance that the lift adds, 1 - 1/g^2, goes
    from `settings.min_excess` to 1 (any shape, float32)."""
    share = np.maximum(gain, 1.0, dtype=np.float32)
    share *= share
    np.reciprocal(share, out=share)  # 1/g^2; share = (1 - 1/g^2 - m) / (1 - m)
    share *= np.float32(-1.0 / (1.0 - settings.min_excess))
    share += 1.0
    return np.maximum(share, 0.0, out=share)


def _box(img: np.ndarray, r: int) -> np.ndarray:
    return cv2.boxFilter(img, -1, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT)


def clean_cells(pixels: np.ndarray, y: np.ndarray, gain_cells: np.ndarray, noise_var: float,
                step_var: float, st: Settings, s: int, chroma_cells: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """The clean target's share of the output, and its weight, on the grid of s x s cells.

    pixels (h, w[, c]) colour channels only, y (h, w) on 0..255, gain_cells the gain at each
    cell's first pixel (gain[::s, ::s]). Returns
    (w * gain * T (h/s, w/s[, c]) float32 in the pixels' units; w (h/s, w/s) float32 in [0, 1]).
    With a = var^2 / (var^2 + eps^2), the self-guided filter is a * y + b = (1 - a) * y + w * T:
    w is 1 - a and w * T is b (box-averaged), the local mean's share, with the chroma of the target
    blurred further. eps = luma * noise variance * lift weight (+ the 8-bit steps' term): 0, so
    w = 0, where not lifted. chroma_cells: the gain of the colour offsets (`colour.apply_gains`)
    sampled likewise; None: the luma gain.
    """
    r = max(1, round(st.window / s))
    k = np.float32(scale_to_255(pixels.dtype))
    mean_y, mean_yy = cell_moments(y, s)
    mean, var = _box(mean_y, r), _box(mean_yy, r)
    var -= mean * mean
    g = gain_cells  # smooth: one sample per cell is enough
    # eps = share * (luma * noise_var * visible + steps * step_var): lifted 8-bit steps band
    # in smooth shades however small they were, so they do not wait to be visible as noise.
    eps = np.minimum(g * np.float32(np.sqrt(noise_var + step_var) / st.visible), 1.0)
    eps *= np.float32(st.luma * noise_var)
    eps += np.float32(st.steps * step_var)
    eps *= lifted_share(g, st)
    np.maximum(var, np.float32(1e-6), out=var)
    # a = var^2 / (var^2 + eps^2): a sharper knee than the guided filter's var / (var + eps),
    # so texture a few times the noise variance is kept almost whole while flat noise (var
    # near the noise's, below eps) goes; exactly 1 where eps is 0
    var *= var
    eps *= eps
    a = var / (var + eps)
    b = 1.0 - a
    b *= mean
    weight = 1.0 - _box(a, r)
    np.clip(weight, 0.0, 1.0, out=weight)
    share = _box(b, r)  # w * T for the luma of T (0..255)
    g = g * np.float32(1.0 / k)  # a new array: for s = 1, g is the caller's gain itself
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        rgb = cell_grid(pixels, s, cv2.INTER_LINEAR).astype(np.float32)  # blurred below
        if k != 1:
            rgb *= k
        chroma = rgb - cv2.transform(rgb, np.float32([LUMA_WEIGHTS]))[..., None]
        blurred = cv2.GaussianBlur(chroma, (0, 0), st.chroma_blur / s,
                                   borderType=cv2.BORDER_REFLECT)
        blurred *= weight[..., None]
        if chroma_cells is not None:  # keep chroma_gain / gain of the colour
            blurred *= (chroma_cells / (g * k))[..., None]
        blurred += share[..., None]
        blurred *= g[..., None]
        return blurred, weight
    share *= g
    return share, weight


def lift(pixels: np.ndarray, y: np.ndarray, gain, mode: str = DEFAULT_MODE,  # noqa: ANN001
         sigma: float | None = None, settings: Settings | None = None,
         chroma_gain=None, out: np.ndarray | None = None,  # noqa: ANN001
         threads: int = 1) -> Lifted:
    """Apply the per-pixel gain (H, W) to pixels, cleaning what the gain would amplify.

    Returns `Lifted`; its image has the same shape and dtype, alpha untouched. mode "off", and
    every region that the gain does not lift visibly, give exactly `colour.apply_gain(pixels,
    gain)`. Elsewhere the result is (1 - w) * gain * pixels + w * gain * T, with T the clean
    target of `clean_cells` and w its weight, both upsampled from the grid: the first term is
    `apply_gain` with a reduced gain, the second an addition, both made band by band as the
    gain is applied (`gainmap.render`), so the cleaning costs little beyond the grid. sigma:
    the input's noise std on 0..255 (estimated from the image when None). settings: the mode's
    constants replaced (for trials). gain / chroma_gain: (H, W) arrays or `gainmap` maps;
    chroma_gain is a separate gain for the colour offsets, as `colour.apply_gains` takes it
    (then that replaces `apply_gain` above); None: the luma gain for both. out: where to
    write the image (pixels itself is allowed); the other inputs are never modified. threads:
    how many threads apply the gain (`gainmap.render`).
    """
    if check_mode(mode) == "off":
        return Lifted(render(pixels, y, gain, chroma_gain, out=out, threads=threads), mode,
                      None, 0.0)
    st = settings or SETTINGS[mode]
    if sigma is None:
        sigma = noise_level(y, gain)
    quant = scale_to_255(pixels.dtype) if pixels.dtype == np.uint8 else 0.0
    step_var = quant * quant / 12.0  # rounding to 8 bits: noise of std 1/sqrt(12) level
    noise_var = sigma * sigma
    h, w = pixels.shape[:2]
    s = st.cell((h, w))
    n = colour_channels(pixels)
    spans = _active_spans(gain, float(np.sqrt(noise_var + step_var)), st)
    if not spans:
        return Lifted(render(pixels, y, gain, chroma_gain, out=out, threads=threads), mode,
                      sigma, 0.0)
    # One grid over the spans' bounding box with a margin, so the filters see the same
    # neighbourhood as on the whole image; cells aligned with the image's.
    margin = (3 * max(1, round(st.window / s)) + 2) * s + int(np.ceil(3 * st.chroma_blur))
    y0 = max(0, min(sp[0] for sp in spans) - margin) // s * s
    x0 = max(0, min(sp[2] for sp in spans) - margin) // s * s
    y1 = min(h, max(sp[1] for sp in spans) + margin)
    x1 = min(w, max(sp[3] for sp in spans) + margin)
    y1, x1 = min(h, y0 + -(-(y1 - y0) // s) * s), min(w, x0 + -(-(x1 - x0) // s) * s)
    colour = pixels[y0:y1, x0:x1] if pixels.ndim == 2 else pixels[y0:y1, x0:x1, :n]
    cells = (slice(y0, y1, s), slice(x0, x1, s))
    target, weight = clean_cells(colour, y[y0:y1, x0:x1], np.asarray(gain[cells], np.float32),
                                 noise_var, step_var, st, s,
                                 None if chroma_gain is None else chroma_gain[cells])
    keep = 1.0 - weight
    np.clip(np.rint(target, out=target), 0, np.iinfo(pixels.dtype).max, out=target)
    added = target.astype(pixels.dtype)
    span_of = {r0: (r0, r1, c0, c1) for r0, r1, c0, c1 in spans}
    # The current span's upsampled maps, made once per thread (render's threads take
    # neighbouring bands, so each meets a span's bands in a row).
    local = threading.local()

    def adjust(rows: slice, g: np.ndarray, c: np.ndarray | None
               ) -> tuple[slice, np.ndarray] | None:
        start = rows.start // SPAN_ROWS * SPAN_ROWS
        span = span_of.get(start)
        if span is None:
            return None
        r0, r1, c0, c1 = span
        upsampled = getattr(local, "spans", None)
        if upsampled is None:
            upsampled = local.spans = {}
        if start not in upsampled:
            upsampled.clear()
            here = slice(r0 - y0, r1 - y0), slice(c0 - x0, c1 - x0)
            upsampled[start] = upsample(keep, s, *here), upsample(added, s, *here)
        kept, more = (a[rows.start - r0:rows.stop - r0] for a in upsampled[start])
        for part in (g, c):
            if part is not None:
                cv2.multiply(part[:, c0:c1], kept, dst=part[:, c0:c1])
        return slice(c0, c1), more

    out = render(pixels, y, gain, chroma_gain, adjust, align=SPAN_ROWS, out=out,
                 threads=threads)
    cleaned = sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in spans) / (h * w)
    return Lifted(out, mode, sigma, cleaned)


def _active_spans(gain, sigma: float, st: Settings, rows: int = SPAN_ROWS  # noqa: ANN001
                  ) -> list[tuple[int, int, int, int]]:
    """(r0, r1, c0, c1) pixel regions, one per band of `rows` rows, that hold every pixel whose
    lift weight may reach MIN_WEIGHT; bands with none are left out. Decided on a 16-pixel
    sample of the gain (the gain is smooth: it follows the base layer)."""
    step = 16
    h, w = gain.shape
    sample = gain[min(step // 2, h - 1)::step, min(step // 2, w - 1)::step]
    lifted = cv2.dilate((lift_weight(sample, sigma, st) >= MIN_WEIGHT).astype(np.uint8),
                        np.ones((3, 3), np.uint8))
    spans = []
    per = max(1, rows // step)
    for i in range(0, lifted.shape[0], per):
        cols = np.flatnonzero(lifted[i:i + per].any(axis=0))
        if cols.size:  # the last sample row / column stands for the image's edge
            r1 = h if i + per >= lifted.shape[0] else (i + per) * step
            c1 = w if cols[-1] == lifted.shape[1] - 1 else (int(cols[-1]) + 1) * step
            spans.append((i * step, r1, int(cols[0]) * step, c1))
    return spans
