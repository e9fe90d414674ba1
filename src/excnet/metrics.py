"""Image-quality figures: full-reference (PSNR, SSIM, CIEDE2000, lightness-order error) and
no-reference (shadow level and spread, clipped fraction, entropy).

All functions take uint8 or uint16 images shaped (H, W) or (H, W, 3) (RGB, sRGB-encoded) and
compare arrays of the same shape and dtype. Pure NumPy and OpenCV, so they run without
scikit-image; the tests cross-check them against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .colour import srgb_to_linear

#: sRGB (linear, D65) -> CIE XYZ, IEC 61966-2-1.
SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
#: Reference white D65 (2 degree observer), Y = 1.
WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
#: Short side of the lightness grid on which the lightness-order error counts order flips.
LOE_GRID = 50


def _unit(pixels: np.ndarray) -> np.ndarray:
    """Integer image -> float64 in [0, 1]."""
    if pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"image dtype must be uint8 or uint16, not {pixels.dtype}")
    return pixels.astype(np.float64) / np.iinfo(pixels.dtype).max


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.dtype != b.dtype:
        raise ValueError(f"images differ: {a.shape} {a.dtype} vs {b.shape} {b.dtype}")


def psnr(test: np.ndarray, truth: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB over all samples; the peak is the dtype's maximum.

    Identical images give inf.
    """
    _check_pair(test, truth)
    mse = float(np.mean((_unit(test) - _unit(truth)) ** 2))
    return math.inf if mse == 0 else -10.0 * math.log10(mse)


def ssim(test: np.ndarray, truth: np.ndarray, sigma: float = 1.5) -> float:
    """Structural similarity (Wang et al. 2004), mean over pixels and colour channels.

    Gaussian window (sigma 1.5, 11 taps), population statistics, K1 = 0.01, K2 = 0.03,
    reflected borders and a 5-pixel border left out of the mean: the same as scikit-image's
    `structural_similarity(..., gaussian_weights=True, use_sample_covariance=False,
    data_range=1)` on the [0, 1]-scaled images.
    """
    _check_pair(test, truth)
    x, y = _unit(test), _unit(truth)
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]
    radius = int(3.5 * sigma + 0.5)
    size = 2 * radius + 1

    def blur(v: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(v, (size, size), sigma, borderType=cv2.BORDER_REFLECT)

    c1, c2 = 0.01**2, 0.03**2
    scores = []
    for ch in range(x.shape[2]):
        a, b = np.ascontiguousarray(x[..., ch]), np.ascontiguousarray(y[..., ch])
        mu_a, mu_b = blur(a), blur(b)
        var_a = blur(a * a) - mu_a**2
        var_b = blur(b * b) - mu_b**2
        cov = blur(a * b) - mu_a * mu_b
        s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)
             / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)))
        scores.append(s[radius:-radius, radius:-radius].mean())
    return float(np.mean(scores))


def srgb_to_lab(pixels: np.ndarray) -> np.ndarray:
    """RGB image (H, W, 3) uint8/uint16 sRGB -> CIE L*a*b* (D65), float64 (H, W, 3)."""
    xyz = srgb_to_linear(_unit(pixels)[..., :3]) @ SRGB_TO_XYZ.T / WHITE_D65
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference (Sharma, Wu & Dalal 2005) of L*a*b* arrays (..., 3).

    kL = kC = kH = 1. Returns an array of the leading shape.
    """
    lab1, lab2 = np.asarray(lab1, np.float64), np.asarray(lab2, np.float64)
    l1, a1, b1 = np.moveaxis(lab1, -1, 0)
    l2, a2, b2 = np.moveaxis(lab2, -1, 0)
    c_bar = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(c_bar**7 / (c_bar**7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    both = (c1p * c2p) != 0

    dl = l2 - l1
    dc = c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(both, dh, 0.0)
    dhh = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh / 2))

    l_bar = (l1 + l2) / 2
    cp_bar = (c1p + c2p) / 2
    hsum = h1p + h2p
    h_bar = np.where(np.abs(h1p - h2p) <= 180, hsum / 2,
                     np.where(hsum < 360, (hsum + 360) / 2, (hsum - 360) / 2))
    h_bar = np.where(both, h_bar, hsum)
    t = (1 - 0.17 * np.cos(np.radians(h_bar - 30)) + 0.24 * np.cos(np.radians(2 * h_bar))
         + 0.32 * np.cos(np.radians(3 * h_bar + 6)) - 0.20 * np.cos(np.radians(4 * h_bar - 63)))
    d_theta = 30 * np.exp(-(((h_bar - 275) / 25) ** 2))
    r_c = 2 * np.sqrt(cp_bar**7 / (cp_bar**7 + 25.0**7))
    s_l = 1 + 0.015 * (l_bar - 50) ** 2 / np.sqrt(20 + (l_bar - 50) ** 2)
    s_c = 1 + 0.045 * cp_bar
    s_h = 1 + 0.015 * cp_bar * t
    r_t = -np.sin(np.radians(2 * d_theta)) * r_c
    tl, tc, th = dl / s_l, dc / s_c, dhh / s_h
    return np.sqrt(tl**2 + tc**2 + th**2 + r_t * tc * th)


def delta_e(test: np.ndarray, truth: np.ndarray) -> float:
    """Mean CIEDE2000 difference between two sRGB images (H, W, 3)."""
    _check_pair(test, truth)
    return float(ciede2000(srgb_to_lab(test), srgb_to_lab(truth)).mean())


def _lightness_grid(pixels: np.ndarray, grid: int) -> np.ndarray:
    """max(R, G, B) (or grey), area-averaged down to `grid` pixels on the short side, flat."""
    light = _unit(pixels)
    if light.ndim == 3:
        light = light[..., :3].max(axis=2)
    h, w = light.shape
    r = min(1.0, grid / min(h, w))
    size = (max(1, round(w * r)), max(1, round(h * r)))
    return cv2.resize(light, size, interpolation=cv2.INTER_AREA).ravel()


def lightness_order_error(test: np.ndarray, truth: np.ndarray, grid: int = LOE_GRID) -> float:
    """Lightness-order error (Wang et al. 2013, "naturalness preserved enhancement").

    Lightness is max(R, G, B); both images are area-averaged so the short side is `grid`
    pixels (N pixels in all). For every pair (x, y) of grid pixels, an order flip is when
    [L(x) >= L(y)] differs between test and truth. The result is the mean number of flips per
    grid pixel: 0 for any order-preserving change, at most N. Lower is more natural.
    """
    _check_pair(test, truth)
    a, b = _lightness_grid(test, grid), _lightness_grid(truth, grid)
    flips = 0
    for start in range(0, a.size, 512):  # rows of the N x N comparison, a block at a time
        ua = a[start:start + 512, None] >= a[None, :]
        ub = b[start:start + 512, None] >= b[None, :]
        flips += int(np.count_nonzero(ua != ub))
    return flips / a.size


def luma(pixels: np.ndarray) -> np.ndarray:
    """Rec. 601 luma (0.299 R + 0.587 G + 0.114 B) on the 0..255 scale, float64 (H, W)."""
    v = _unit(pixels) * 255.0
    if v.ndim == 2:
        return v
    return v[..., :3] @ np.array([0.299, 0.587, 0.114])


def shadow_mask(pixels: np.ndarray, fraction: float = 0.25) -> np.ndarray:
    """Boolean (H, W) mask of the darkest `fraction` of pixels by luma (the input's shadows)."""
    y = luma(pixels)
    return y <= np.quantile(y, fraction)


@dataclass(frozen=True)
class NoReference:
    """Figures for an image without ground truth.

    shadow_mean / shadow_spread: mean and standard deviation of luma (0..255) over a shadow
    mask (normally the input's darkest quarter, so every method is judged on the same pixels);
    clipped: fraction of pixels with a colour channel at the dtype's maximum; entropy: Shannon
    entropy of the 256-bin luma histogram, in bits (8 at most).
    """

    shadow_mean: float
    shadow_spread: float
    clipped: float
    entropy: float


def no_reference(pixels: np.ndarray, shadows: np.ndarray | None = None) -> NoReference:
    """No-reference figures of an image; `shadows` defaults to its own `shadow_mask`."""
    y = luma(pixels)
    mask = shadow_mask(pixels) if shadows is None else shadows
    top = np.iinfo(pixels.dtype).max
    colour = pixels if pixels.ndim == 2 else pixels[..., :3]
    clipped = colour >= top if colour.ndim == 2 else (colour >= top).any(axis=2)
    hist = np.bincount(np.clip(np.rint(y), 0, 255).astype(np.int64).ravel(), minlength=256)
    p = hist[hist > 0] / hist.sum()
    return NoReference(float(y[mask].mean()), float(y[mask].std()), float(clipped.mean()),
                       float(-(p * np.log2(p)).sum()))
