"""Rendering choices for applying an estimated curve: the faithful ExCNet step and alternatives.

The faithful step (method notes, section 6) multiplies the gamma-encoded R, G and B by the
luminance gain f(b)/b and clips each channel. The alternatives, each one named field of
`ToneOptions`, are measured against it by `benchmarks/quality.py`:

* chroma "linear": scale linear-light RGB by the gain that moves the pixel's luminance where
  the curve says. The encoded gain is not chromaticity-preserving in the sRGB toe (values
  below ~10/255 are linear there, the rest follow a power law), so deep shadows lifted by the
  encoded gain gain saturation; the linear-light gain keeps their chromaticity.
* chroma "exposure" (the default rendering's): the same correction to first order, cheap
  enough for the fast path: luma times the gain, colour offsets (RGB minus luma) times the
  slope of that exposure at the luma (`colour.exposure_chroma`, `colour.apply_gains`).
* chroma "damped": lift luma by the gain but chroma (RGB minus luma) only by gain^(1 - k).
* clip "hue": where a channel would leave [0, 1], pull the pixel toward its own luma just
  enough to fit, instead of clipping channels one by one (which shifts hue toward yellow,
  cyan or magenta).
* monotonic "scale" / "envelope": keep f increasing (large phi_s makes it dip after its
  shadow bump, which reverses the order of tones): drop a negative phi_h (it would lift the
  highlights) and shrink phi toward 0 until f increases (`Curve.monotonic`), or use the
  running maximum of f.
* highlight_scale, radius_fraction, eps: the method's constants (0.2, 0.04, 800).

Pure functions on arrays; float colour arrays are (H, W, 3) on the [0, 1] scale.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from .base import EPS, RADIUS_FRACTION, base_layer
from .colour import (
    LUMA_WEIGHTS,
    apply_gain,
    apply_gains,
    check_pixels,
    chroma_gain_map,
    colour_channels,
    exposure_chroma,
    linear_to_srgb,
    luminance,
    srgb_to_linear,
)
from .curve import FAITHFUL_HIGHLIGHT_SCALE, Curve, gain, s_curve
from .defaults import IMPROVED_HIGHLIGHT_SCALE

CHROMA_MODES = ("faithful", "exposure", "linear", "damped")
CLIP_MODES = ("plain", "hue")
MONOTONIC_MODES = ("off", "scale", "envelope")
_GRID = np.linspace(0.0, 1.0, 4097)


@dataclass(frozen=True)
class ToneOptions:
    """How the estimated curve is turned into an image. The defaults are the faithful method."""

    chroma: str = "faithful"
    chroma_damping: float = 0.5  # k of the "damped" mode: chroma scales by gain ** (1 - k)
    clip: str = "plain"
    monotonic: str = "off"
    highlight_scale: float = FAITHFUL_HIGHLIGHT_SCALE
    radius_fraction: float = RADIUS_FRACTION
    eps: float = EPS

    def __post_init__(self) -> None:
        for name, allowed in (("chroma", CHROMA_MODES), ("clip", CLIP_MODES),
                              ("monotonic", MONOTONIC_MODES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}")

    def curve(self, phi_s: float, phi_h: float, strength: float = 1.0,
              highlight_scale: float | None = None) -> Curve:
        """A Curve rendered the way these options say (highlight scale, "scale" monotonic)."""
        scaled = self.monotonic == "scale"
        return Curve(phi_s, phi_h, strength,
                     self.highlight_scale if highlight_scale is None else highlight_scale,
                     monotonic=scaled, second_pass=scaled)


FAITHFUL = ToneOptions()
#: The trial winner on the synthetic set (benchmarks/RESULTS.md): chosen on the tuning half,
#: better on the held-out half in PSNR, SSIM, CIEDE2000 and lightness-order error. Its eps
#: went from 3200 to 1600 in 0.3: the larger back-lit lift of 0.3 made halos at 3200.
IMPROVED = ToneOptions(chroma="exposure", monotonic="scale", eps=1600.0,
                       highlight_scale=IMPROVED_HIGHLIGHT_SCALE)


def given_curve(load_saved: Callable[[], Curve] | None, phi_s: float | None,
                phi_h: float | None, options: ToneOptions,
                exposure: float | None = None, amount: float | None = None) -> Curve | None:
    """The curve a user fixed instead of estimating one, or None to estimate.

    Either a saved curve (`load_saved` reads it) or manual parameters (phi_s / phi_h, and the
    recorded adaptive exposure), never both: `BothGiven`, checked before anything is read.
    Manual parameters are rendered with `options`; `amount` (the recorded adaptive fraction)
    replaces the fixed curve's and means nothing without one (ValueError). The caller lays its
    own controls (strength, highlight scale, ...) over the result. The CLI and the service
    share this rule.
    """
    manual = any(v is not None for v in (phi_s, phi_h, exposure))
    if manual and load_saved is not None:
        raise BothGiven("give either saved curve parameters or phi_s/phi_h, not both")
    if load_saved is not None:
        curve = load_saved()
    elif manual:
        curve = replace(options.curve(phi_s or 0.0, phi_h or 0.0), exposure=exposure or 0.0)
    elif amount is not None:
        raise ValueError("amount goes with phi_s/phi_h or saved curve parameters (it is the "
                         "recorded fraction of their phi)")
    else:
        return None
    return curve if amount is None else replace(curve, amount=amount)


class BothGiven(ValueError):
    """Saved curve parameters and manual ones were both given."""


def base_for(y: np.ndarray, options: ToneOptions = FAITHFUL) -> np.ndarray:
    """Base layer of luminance y (H, W) on 0..255 with the options' guided-filter radius and eps."""
    return base_layer(y, options.eps, options.radius_fraction)


def monotone_envelope(b: np.ndarray, phi_s: float, phi_h: float) -> np.ndarray:
    """Running maximum of the curve, max over t <= b of f(t; phi), for b in [0, 1] (any shape)."""
    env = np.maximum.accumulate(s_curve(_GRID, phi_s, phi_h))
    return np.interp(b, _GRID, env)


def limited_curve(curve: Curve, options: ToneOptions = FAITHFUL) -> Curve:
    """The curve as applied under the options' "scale" monotonic mode, as a plain Curve.

    Its `applied` parameters are the limited ones (strength and highlight scale folded in),
    so any code that renders a Curve, a gain table included, renders the limited curve.
    Other modes return the curve unchanged.
    """
    if options.monotonic != "scale":
        return curve
    return replace(curve, monotonic=True)


def gain_for(base: np.ndarray, curve: Curve, options: ToneOptions = FAITHFUL) -> np.ndarray:
    """Per-pixel luminance gain (f(b) + 1e-5)/(b + 1e-5) for the base layer (H, W) on 0..255,
    with the options' monotonic mode; float32."""
    b = base.astype(np.float64) / 255.0
    if options.monotonic != "envelope":
        return gain(limited_curve(curve, options), b).astype(np.float32)
    f = monotone_envelope(b, *curve.applied)
    return ((f + 1e-5) / (b + 1e-5)).astype(np.float32)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.asarray(LUMA_WEIGHTS)


def scale_gamma(rgb: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """The faithful step: encoded R, G, B times the gain (H, W). Unclipped."""
    return rgb * gain[..., None]


def scale_linear(rgb: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """Scale linear-light RGB so the pixel's encoded luma goes from Y to gain * Y. Unclipped.

    The linear factor is lin(gain * Y) / lin(Y) with lin the sRGB decoding, so luma lands
    where the curve puts it (up to the luma-of-encoded-values approximation) while the
    ratios of the linear channels, hence hue and saturation, stay as they were.
    """
    y = _luma(rgb)
    y_lin = srgb_to_linear(y)
    factor = np.where(y_lin > 0, srgb_to_linear(gain * y) / np.maximum(y_lin, 1e-12), gain)
    return linear_to_srgb(srgb_to_linear(rgb) * factor[..., None])


def scale_exposure(rgb: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """Luma times gain, chroma (RGB minus luma) times gain * `colour.exposure_chroma` at the
    pixel's own luma. Unclipped."""
    y = _luma(rgb)
    g = gain * exposure_chroma(y, gain)
    return g[..., None] * rgb + ((gain - g) * y)[..., None]


def scale_damped(rgb: np.ndarray, gain: np.ndarray, k: float) -> np.ndarray:
    """Luma times gain, chroma (RGB minus luma) times gain ** (1 - k). k = 0 is the faithful step.

    Unclipped (may leave [0, 1] on either side).
    """
    y = _luma(rgb)[..., None]
    g = gain[..., None]
    return g * y + np.power(g, 1.0 - k) * (rgb - y)


def preserve_hue_clip(rgb: np.ndarray) -> np.ndarray:
    """Bring (H, W, 3) values into [0, 1] by moving each pixel toward its own luma, just enough.

    Luma and hue are kept where luma itself is in range (saturation drops instead); pixels
    whose luma is out of range become grey at 0 or 1.
    """
    y = np.clip(_luma(rgb), 0.0, 1.0)[..., None]
    hi = rgb.max(axis=-1, keepdims=True)
    lo = rgb.min(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_hi = np.where(hi > 1.0, (1.0 - y) / (hi - y), 1.0)
        t_lo = np.where(lo < 0.0, y / (y - lo), 1.0)
    t = np.clip(np.nan_to_num(np.minimum(t_hi, t_lo)), 0.0, 1.0)
    return np.clip(y + t * (rgb - y), 0.0, 1.0)


def apply_tone_gain(pixels: np.ndarray, gain: np.ndarray,
                    options: ToneOptions = FAITHFUL, base: np.ndarray | None = None
                    ) -> np.ndarray:
    """Apply the luminance gain (H, W) to an image with the options' chroma and clip modes.

    Same shape and dtype out, alpha untouched. Grey images are scaled and clipped (chroma and
    clip modes only matter for colour). The faithful options give exactly `colour.apply_gain`;
    chroma "exposure" with plain clipping gives exactly `colour.apply_gains` with the colour
    gain of the base layer (H, W, 0..255; None: the pixels' luminance), as the pipeline does.
    """
    check_pixels(pixels)
    if colour_channels(pixels) == 1 or (options.chroma == "faithful" and options.clip == "plain"):
        return apply_gain(pixels, gain)
    if options.chroma == "exposure" and options.clip == "plain":
        y = luminance(pixels)
        return apply_gains(pixels, gain, chroma_gain_map(y if base is None else base, gain), y)
    top = np.iinfo(pixels.dtype).max
    rgb = pixels[..., :3].astype(np.float64) / top
    g = gain.astype(np.float64)
    if options.chroma == "linear":
        v = scale_linear(rgb, g)
    elif options.chroma == "exposure":
        v = scale_exposure(rgb, g)
    elif options.chroma == "damped":
        v = scale_damped(rgb, g, options.chroma_damping)
    else:
        v = scale_gamma(rgb, g)
    v = preserve_hue_clip(v) if options.clip == "hue" else np.clip(v, 0.0, 1.0)
    out = pixels.copy()
    out[..., :3] = np.rint(v * top).astype(pixels.dtype)
    return out
