"""Clean lifting: apply the curve's gain without amplifying noise, JPEG blocks and 8-bit steps.

Lifting a shadow by a gain g multiplies whatever it holds: sensor noise (luminance and chroma),
JPEG blocking, and the 1-level steps of 8-bit shadows all grow g times and become visible.
`lift` applies the gain to a cleaned image where g is large and to the image itself where g is
near 1, so well-exposed parts (and clean photos) come out exactly as `colour.apply_gain` gives:

* luminance: a self-guided filter (He et al.) on a grid of s x s cells, as in He & Sun's fast
  guided filter: a = var / (var + eps) keeps texture whose local variance is well above eps
  and smooths the rest. eps follows the image's own noise level (estimated here), the 8-bit
  quantisation step, and how much the gain lifts that cell.
* chrominance (colour minus luma): replaced by a blurred version at the grid's resolution,
  in proportion to the same lift weight (the eye sees colour at lower resolution than detail).
* the result is kept in floating point until the gain is applied, so smoothed 8-bit shadows
  land on in-between output levels instead of g-level steps.

Arrays: `pixels` uint8/uint16 (H, W), (H, W, 2), (H, W, 3) or (H, W, 4); `y` luminance (H, W)
float32 on 0..255 (as `colour.luminance`); `gain` (H, W) float32. Grids are (H/s, W/s).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .colour import LUMA_WEIGHTS, apply_gain, check_pixels, colour_channels, scale_to_255

MODES = ("off", "auto", "strong")
DEFAULT_MODE = "auto"


@dataclass(frozen=True)
class Settings:
    """Constants of one denoise mode (chosen on the synthetic tuning set, benchmarks/denoise.py).

    cell: grid cell side in pixels. radius: guided-filter window radius in cells.
    luma: eps = luma * noise variance * lift weight. chroma: fraction of the chroma replaced
    by its blur at full lift weight. chroma_blur: Gaussian sigma of that blur, in cells.
    visible: lifted noise std (output levels, 0..255) at which the lift weight is full.
    """

    cell: int = 2
    radius: int = 1
    luma: float = 4.0
    chroma: float = 1.0
    chroma_blur: float = 1.5
    visible: float = 3.0


SETTINGS = {"auto": Settings(), "strong": Settings(radius=2, luma=8.0, chroma_blur=3.0)}
#: Lift weights below this leave a row strip untouched (exactly `apply_gain`).
MIN_WEIGHT = 0.02


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown denoise mode {mode!r}; choose from {', '.join(MODES)}")
    return mode


def noise_level(y: np.ndarray, gain: np.ndarray, max_pixels: int = 1 << 19) -> float:
    """Noise std of luminance y (H, W) on 0..255 where the gain (H, W) lifts (gain > 1.5).

    Immerkaer's Laplacian-difference estimate (insensitive to smooth ramps) made robust with the
    median absolute response, on row bands sampled to about `max_pixels`. 0 when nothing is
    lifted. JPEG and camera noise reduction remove the finest noise, so the estimate is also
    taken on the 2 x 2 mean image (where white noise halves) and the larger of the two kept.
    """
    h, w = y.shape
    band = 16
    step = max(band, band * (h * w // max(1, max_pixels)))
    rows = np.concatenate([np.arange(r, min(r + band, h)) for r in range(0, h, step)])
    ys, gs = y[rows], gain[rows]
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    estimates = []
    for scale in (1, 2):
        img, g = ys, gs
        if scale == 2:
            hh, ww = (ys.shape[0] // 2) * 2, (w // 2) * 2
            img = cv2.resize(ys[:hh, :ww], (ww // 2, hh // 2), interpolation=cv2.INTER_AREA)
            g = gs[:hh:2, :ww:2]
        resp = np.abs(cv2.filter2D(img, cv2.CV_32F, kernel, borderType=cv2.BORDER_REFLECT))
        lifted = resp[1:-1, 1:-1][g[1:-1, 1:-1] > 1.5]
        if lifted.size < 64:
            return 0.0
        # |N(0, 36 sigma^2)| has median 0.6745 * 6 sigma; white noise halves on the 2x2 mean.
        estimates.append(scale * float(np.median(lifted)) / (0.6745 * 6.0))
    return max(estimates)


def lift_weight(gain: np.ndarray, sigma: float, settings: Settings) -> np.ndarray:
    """How much to clean, in [0, 1], from the gain (any shape) and the input noise std sigma.

    0 where the gain is at most 1 or the lifted noise g * sigma is invisible; 1 where the gain
    is large and the lifted noise reaches `settings.visible` output levels.
    """
    g = np.maximum(gain, 1.0)
    excess = 1.0 - 1.0 / (g * g)  # share of the output noise variance added by the lift
    visible = np.clip(g * sigma / settings.visible, 0.0, 1.0)
    return (excess * visible).astype(np.float32)


def _grid(img: np.ndarray, s: int) -> np.ndarray:
    """Area means over s x s cells (edge replicated to a whole number of cells); float32."""
    h, w = img.shape[:2]
    hp, wp = -(-h // s) * s, -(-w // s) * s
    if (hp, wp) != (h, w):
        img = cv2.copyMakeBorder(img, 0, hp - h, 0, wp - w, cv2.BORDER_REPLICATE)
    return cv2.resize(img.astype(np.float32, copy=False), (wp // s, hp // s),
                      interpolation=cv2.INTER_AREA)


def _box(img: np.ndarray, r: int) -> np.ndarray:
    return cv2.boxFilter(img, -1, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT)


def _up_rows(grid: np.ndarray, i0: int, i1: int, s: int, w: int) -> np.ndarray:
    """Bilinear upsampling (by s) of grid rows i0..i1 to their pixel rows, exactly as the whole
    grid upsampled at once would give them (one grid row of margin on each side)."""
    lo, hi = max(0, i0 - 1), min(grid.shape[0], i1 + 1)
    part = grid[lo:hi]
    up = cv2.resize(part, (part.shape[1] * s, part.shape[0] * s), interpolation=cv2.INTER_LINEAR)
    return up[(i0 - lo) * s:(i1 - lo) * s, :w]


def lift(pixels: np.ndarray, y: np.ndarray, gain: np.ndarray, mode: str = DEFAULT_MODE,
         sigma: float | None = None, settings: Settings | None = None) -> np.ndarray:
    """Apply the per-pixel gain (H, W) to pixels, cleaning what the gain would amplify.

    Same shape and dtype out, alpha untouched. mode "off" (and any image or row strip that the
    gain does not lift visibly) gives exactly `colour.apply_gain(pixels, gain)`. sigma: the
    input's noise std on 0..255 (estimated from the image when None). settings: the mode's
    constants replaced (for trials).
    """
    check_pixels(pixels)
    if check_mode(mode) == "off":
        return apply_gain(pixels, gain)
    st = settings or SETTINGS[mode]
    k = scale_to_255(pixels.dtype)
    if sigma is None:
        sigma = noise_level(y, gain)
    quant = k if pixels.dtype == np.uint8 else 0.0  # one input step on the 0..255 scale
    noise_var = sigma * sigma + quant * quant / 12.0
    s, h, w = st.cell, *pixels.shape[:2]
    g_low = _grid(gain, s)
    weight = lift_weight(g_low, float(np.sqrt(noise_var)), st)
    active = _box(weight, st.radius + 1).max(axis=1) >= MIN_WEIGHT
    if not active.any():
        return apply_gain(pixels, gain)

    # Luminance: guided-filter coefficients on the grid, eps per cell.
    mean = _box(_grid(y, s), st.radius)
    var = np.maximum(_box(_grid(cv2.multiply(y, y), s), st.radius) - mean * mean, 0.0)
    eps = st.luma * noise_var * weight
    a = np.where(eps > 0, var / (var + eps + 1e-12), 1.0).astype(np.float32)
    b = (1.0 - a) * mean
    a, b = _box(a, st.radius), _box(b, st.radius)

    n = colour_channels(pixels)
    out = apply_gain(pixels, gain)  # strips the gain leaves alone keep exactly this
    m_low = (st.chroma * weight).astype(np.float32)
    if n == 3:
        rgb_low = _grid(pixels[..., :3], s) * np.float32(k)
        y_low = cv2.transform(rgb_low, np.float32([LUMA_WEIGHTS]))
        chroma = rgb_low - y_low[..., None]
        smooth = cv2.GaussianBlur(chroma, (0, 0), st.chroma_blur)
        mc_low = smooth * m_low[..., None]  # m * blurred chroma
    rows_per = max(1, (1 << 17) // max(1, w * s)) * 1
    inv_k = np.float32(1.0 / k)
    for i0 in range(0, a.shape[0], rows_per):
        i1 = min(a.shape[0], i0 + rows_per)
        if not active[i0:i1].any():
            continue
        r0, r1 = i0 * s, min(h, i1 * s)
        rows = slice(r0, r1)
        nr = r1 - r0
        g = gain[rows]
        ys = y[rows]
        # q = a * y + b: denoised luma; e = q - y is added to every colour channel.
        q = _up_rows(a, i0, i1, s, w)[:nr] * ys + _up_rows(b, i0, i1, s, w)[:nr]
        if n == 1:
            res = cv2.multiply(q, g, scale=float(inv_k))
            res = np.clip(np.rint(res), 0, np.iinfo(pixels.dtype).max).astype(pixels.dtype)
            if pixels.ndim == 2:
                out[rows] = res
            else:
                out[rows, :, 0] = res
            continue
        m = _up_rows(m_low, i0, i1, s, w)[:nr]
        mc = _up_rows(mc_low, i0, i1, s, w)[:nr]
        # P_c = (1 - m) (I_c - y) + m * blurred chroma + q: chroma mixed, luma replaced by q.
        src = pixels[rows, :, :3].astype(np.float32) * np.float32(k)
        chroma_full = src - ys[..., None]
        clean = chroma_full * (1.0 - m)[..., None] + mc + q[..., None]
        res = clean * (g * inv_k)[..., None]
        top = np.iinfo(pixels.dtype).max
        out[rows, :, :3] = np.clip(np.rint(res), 0, top).astype(pixels.dtype)
    return out
