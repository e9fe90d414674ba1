"""Colour handling: luminance in, per-pixel gain out.

Pixels are uint8 or uint16 arrays shaped (H, W) grey, (H, W, 2) grey + alpha, (H, W, 3) RGB or
(H, W, 4) RGBA. Luminance is always on the 0..255 scale, whatever the bit depth, because the
method's constants (eps = 800) are defined there.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Y of YIQ (and of Rec. 601): the luminance the reference trains on.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> linear light (IEC 61966-2-1 transfer function)."""
    v = np.asarray(v, dtype=np.float64)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(v: np.ndarray) -> np.ndarray:
    """Linear light in [0, 1] -> sRGB-encoded values (inverse of `srgb_to_linear`)."""
    v = np.clip(np.asarray(v, dtype=np.float64), 0.0, None)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055)


def check_pixels(pixels: np.ndarray) -> None:
    """Raise ValueError unless `pixels` is a supported image array."""
    if not isinstance(pixels, np.ndarray):
        raise ValueError("image must be a NumPy array")
    if pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"image dtype must be uint8 or uint16, not {pixels.dtype}")
    if pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] in (1, 2, 3, 4)):
        if pixels.shape[0] == 0 or pixels.shape[1] == 0:
            raise ValueError(f"image has no pixels (shape {pixels.shape})")
        return
    raise ValueError(f"image shape must be (H, W) or (H, W, 1|2|3|4), not {pixels.shape}")


def colour_channels(pixels: np.ndarray) -> int:
    """Number of colour (non-alpha) channels: 1 or 3."""
    if pixels.ndim == 2 or pixels.shape[2] in (1, 2):
        return 1
    return 3


def scale_to_255(dtype: np.dtype) -> float:
    """Factor that maps the dtype's full range onto 0..255."""
    return 255.0 / np.iinfo(dtype).max


def luminance(pixels: np.ndarray) -> np.ndarray:
    """Y = 0.299 R + 0.587 G + 0.114 B on the 0..255 scale, float32 (H, W). Alpha is ignored."""
    check_pixels(pixels)
    k = scale_to_255(pixels.dtype)
    if colour_channels(pixels) == 1:
        grey = pixels if pixels.ndim == 2 else pixels[..., 0]
        return grey.astype(np.float32) * np.float32(k)
    weights = np.zeros((1, pixels.shape[2]), np.float32)
    weights[0, :3] = [w * k for w in LUMA_WEIGHTS]
    y = np.empty(pixels.shape[:2], np.float32)
    for rows in _strips(pixels.shape):
        cv2.transform(pixels[rows].astype(np.float32), weights, dst=y[rows])
    return y


def apply_gain(pixels: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """Multiply each colour channel by the per-pixel gain (H, W), clip, keep dtype; alpha untouched.

    Because YIQ is linear in RGB, scaling Y, I and Q by the same ratio (the reference's
    chrominance step) is exactly this. Rounds half to even, like `np.rint`.
    """
    check_pixels(pixels)
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    n = colour_channels(pixels)
    depth = cv2.CV_8U if pixels.dtype == np.uint8 else cv2.CV_16U
    out = np.empty(pixels.shape, pixels.dtype)
    flat_out = out.reshape(pixels.shape[:2] + ((channels,) if channels > 1 else ()))
    flat_in = pixels.reshape(flat_out.shape)
    for rows in _strips(pixels.shape):
        g = np.ascontiguousarray(gain[rows], dtype=np.float32)
        if channels > 1:  # alpha channels get a gain of exactly 1
            g = cv2.merge([g] * n + [np.ones_like(g)] * (channels - n))
        # OpenCV multiplies in floating point and rounds and saturates (clips) in one pass.
        cv2.multiply(np.ascontiguousarray(flat_in[rows]), g, dst=flat_out[rows], dtype=depth)
    return out


def _strips(shape: tuple[int, ...], pixels_per_strip: int = 1 << 18) -> list[slice]:
    """Row ranges of about `pixels_per_strip` pixels: small enough to stay in cache."""
    step = max(1, pixels_per_strip // max(1, shape[1]))
    return [slice(r, r + step) for r in range(0, shape[0], step)]
