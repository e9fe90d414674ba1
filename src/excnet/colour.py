"""Colour handling: luminance in, per-pixel gain out.

Pixels are uint8 or uint16 arrays shaped (H, W) grey, (H, W, 2) grey + alpha, (H, W, 3) RGB or
(H, W, 4) RGBA. Luminance is always on the 0..255 scale, whatever the bit depth, because the
method's constants (eps = 800) are defined there.
"""

from __future__ import annotations

import cv2
import numpy as np

from . import strips

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


#: Linear-light level above which a gain > 1 compresses the highlights instead of clipping.
KNEE = 0.75


def roll_off(v: np.ndarray, gain: float, knee: float = KNEE) -> np.ndarray:
    """Linear light v in [0, 1] times gain, the highlights rolled off instead of clipped.

    Up to `knee` the gain is exact; above it, [knee, gain] is compressed onto [knee, 1] by
    1 - (1 - u)^p (slope 1 at the knee, 0 at white, which stays white), so a gain near 1 is
    near the identity everywhere. gain <= 1: v * gain (nothing can clip). float64 out.
    """
    t = np.asarray(v, dtype=np.float64) * gain
    if gain <= 1.0:
        return t
    p = (gain - knee) / (1.0 - knee)
    u = np.clip((t - knee) / (gain - knee), 0.0, 1.0)
    return np.where(t > knee, knee + (1.0 - knee) * (1.0 - (1.0 - u) ** p), t)


def exposure_chroma(b: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """How much of the colour (R, G, B minus luma) to keep, per unit of gain, so that a luma
    gain looks like a change of exposure. b: encoded luma in [0, 1]; gain: its gain (same shape).

    Multiplying the encoded channels by the gain keeps their ratios, which is an exposure
    change only where the sRGB curve is a power law. Near black it is linear, so a very dark
    pixel lifted that way comes out far more saturated than the same scene exposed longer.
    An exposure takes encoded v to enc(F dec(v)) with F = dec(g b) / dec(b); its slope at the
    pixel's luma, over g, is the factor returned (first order in the colour offset), in [0, 1]:
    1 where nothing is lifted, smaller the deeper in the toe the lift starts.
    """
    b = np.clip(np.asarray(b, dtype=np.float64), 0.0, 1.0)
    g = np.maximum(np.asarray(gain, dtype=np.float64), 1e-6)
    lin = srgb_to_linear(b)
    out = srgb_to_linear(np.clip(g * b, 0.0, 1.0))
    slope_in = np.where(b <= 0.04045, 1 / 12.92, 2.4 / 1.055 * ((b + 0.055) / 1.055) ** 1.4)
    slope_out = np.where(out <= 0.0031308, 12.92,
                         1.055 / 2.4 * np.maximum(out, 1e-12) ** (1 / 2.4 - 1))
    factor = np.where(lin > 0, out / np.maximum(lin, 1e-12), g)
    return np.clip(factor * slope_in * slope_out / g, 0.0, 1.0)


def chroma_gain_map(base: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """The colour offsets' gain, `exposure_chroma` times the gain, for a base layer (H, W) on
    0..255 and its luma gain (H, W); float32, as `apply_gains` takes it."""
    b = np.asarray(base, dtype=np.float64) / 255.0
    return (gain * exposure_chroma(b, gain)).astype(np.float32)


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


def luminance(pixels: np.ndarray, threads: int = 1) -> np.ndarray:
    """Y = 0.299 R + 0.587 G + 0.114 B on the 0..255 scale, float32 (H, W). Alpha is ignored.
    threads: how many threads share the bands of a colour image (`strips.for_each`)."""
    check_pixels(pixels)
    k = scale_to_255(pixels.dtype)
    if colour_channels(pixels) == 1:
        grey = pixels if pixels.ndim == 2 else pixels[..., 0]
        return grey.astype(np.float32) * np.float32(k)
    weights = np.zeros((1, pixels.shape[2]), np.float32)
    weights[0, :3] = [w * k for w in LUMA_WEIGHTS]
    y = np.empty(pixels.shape[:2], np.float32)
    strips.for_each(lambda rows: cv2.transform(pixels[rows].astype(np.float32), weights,
                                               dst=y[rows]), strips.bands(pixels.shape), threads)
    return y


def apply_gain(pixels: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """Multiply each colour channel by the per-pixel gain (H, W), clip, keep dtype; alpha untouched.

    Because YIQ is linear in RGB, scaling Y, I and Q by the same ratio (the reference's
    chrominance step) is exactly this. Rounds half to even, like `np.rint`.
    """
    check_pixels(pixels)
    out = np.empty(pixels.shape, pixels.dtype)
    for rows in strips.bands(pixels.shape):
        apply_band(pixels[rows], gain[rows], None, None, out[rows])
    return out


def apply_gains(pixels: np.ndarray, gain: np.ndarray, chroma_gain: np.ndarray,
                y: np.ndarray) -> np.ndarray:
    """Luma times gain, colour offsets (R, G, B minus luma) times chroma_gain; clip, keep dtype.

    Each channel c becomes chroma_gain * c + (gain - chroma_gain) * Y (Y = `luminance`, on
    0..255), the two terms rounded separately (within one level of the exact sum): exactly
    `apply_gain` where the gains differ by less than a level on the largest colour offset.
    gain, chroma_gain (H, W) float32; alpha untouched; grey images take the gain alone.
    """
    check_pixels(pixels)
    out = np.empty(pixels.shape, pixels.dtype)
    for rows in strips.bands(pixels.shape):
        apply_band(pixels[rows], gain[rows], chroma_gain[rows], y[rows], out[rows])
    return out


def apply_band(pixels: np.ndarray, gain: np.ndarray, chroma_gain: np.ndarray | None,
               y: np.ndarray | None, out: np.ndarray) -> None:
    """`apply_gain` (chroma_gain None) or `apply_gains` of a band of rows, written into out."""
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    n = colour_channels(pixels)
    depth = cv2.CV_8U if pixels.dtype == np.uint8 else cv2.CV_16U
    g = np.ascontiguousarray(gain, dtype=np.float32)
    d = None
    if chroma_gain is not None and n == 3:
        a = np.ascontiguousarray(chroma_gain, dtype=np.float32)
        d = cv2.subtract(g, a)
        if cv2.minMaxLoc(d)[1] * np.iinfo(pixels.dtype).max < 0.5:  # < half a level anywhere
            d = None
        else:
            g = a
    flat = pixels.shape[:2] + ((channels,) if channels > 1 else ())
    if channels > 1:  # alpha channels get a gain of exactly 1
        g = _spread(g, n, channels, 1)
    # OpenCV multiplies in floating point and rounds and saturates (clips) in one pass.
    dst = out.reshape(flat)
    cv2.multiply(np.ascontiguousarray(pixels).reshape(flat), g, dst=dst, dtype=depth)
    if d is not None:  # + (gain - chroma_gain) * Y on the colour channels
        d = cv2.multiply(d, y, scale=1.0 / scale_to_255(pixels.dtype), dtype=depth)
        cv2.add(dst, _spread(d, n, channels, 0), dst=dst)


def _spread(plane: np.ndarray, n: int, channels: int, fill: int) -> np.ndarray:
    """One plane repeated over n colour channels, then `fill` for the others (alpha)."""
    if n == channels == 3:  # the common case: OpenCV's grey-to-RGB copy, 1.6x a merge
        return cv2.cvtColor(plane, cv2.COLOR_GRAY2RGB)
    rest = np.ones_like(plane) if fill else np.zeros_like(plane)
    return cv2.merge([plane] * n + [rest] * (channels - n))
