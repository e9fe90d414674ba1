"""The S-curve of Yuan & Sun (ECCV 2012) that ExCNet estimates, and the parameters that select it.

    f(x; phi_s, phi_h) = x + phi_s * f_delta(x) - phi_h * f_delta(1 - x),   x in [0, 1]
    f_delta(x)         = k1 * x * exp(-k2 * x**k3),   k1 = 5, k2 = 14, k3 = 1.6

phi_s lifts the shadows, phi_h pulls the highlights down; (0, 0) is the identity. The functions
accept NumPy arrays or torch tensors of any shape and return the same type.

Our adaptive default (`excnet.adapt`) puts an exposure step in front of the S-curve:
f(expose(x, e); phi), where `expose` multiplies linear light by 2**e and rolls the highlights
off smoothly onto white. Both steps are increasing, so their composition is, and the exposure
can lift a very dark frame as far as it needs without the S-curve folding over.

A monotonic Curve (the default rendering) keeps f increasing by scaling phi down to the
largest curve that does not fold (`monotonic_limit`); the shadow lift this withholds is
applied as a second pass of the shadow term, f(f(x; t phi); (1 - t) phi_s, 0), itself limited:
two increasing steps, so the tones keep their order while a back-lit subject gets the lift
the loss asked for (a folded curve would flatten its mid-tones instead).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from .defaults import FAITHFUL_HIGHLIGHT_SCALE

if TYPE_CHECKING:
    import torch

from .colour import linear_to_srgb, roll_off, srgb_to_linear

K1, K2, K3 = 5.0, 14.0, 1.6

Array = TypeVar("Array", np.ndarray, "torch.Tensor")


def f_delta(x: Array) -> Array:
    """The curve's bump, k1 * x * exp(-k2 * x**k3); peaks near x = 0.143 at about 0.383."""
    torch = sys.modules.get("torch")  # a tensor exists only if torch was imported
    if torch is not None and isinstance(x, torch.Tensor):
        return K1 * x * torch.exp(-K2 * x.clamp_min(0) ** K3)
    x = np.asarray(x)
    return K1 * x * np.exp(-K2 * np.maximum(x, 0) ** K3)


def s_curve(x: Array, phi_s: float | Array, phi_h: float | Array) -> Array:
    """f(x; phi_s, phi_h): the tone curve applied to values x in [0, 1]."""
    return x + phi_s * f_delta(x) - phi_h * f_delta(1 - x)


#: The most EV an exposure may have (a curve's own; strength times it is clamped to this).
MAX_STOPS = 64.0


def expose(x: np.ndarray, stops: float) -> np.ndarray:
    """sRGB values x in [0, 1] exposed by `stops` EV: linear light times 2**stops with the
    highlights above `colour.KNEE` rolled off onto white (`colour.roll_off`: white stays
    white, so a small exposure is a small change everywhere), re-encoded. Increasing in x;
    0 stops returns x itself."""
    if stops == 0:
        return x
    # Past MAX_STOPS every level is black or white already; 2.0**stops would overflow.
    stops = min(max(stops, -MAX_STOPS), MAX_STOPS)
    return linear_to_srgb(roll_off(srgb_to_linear(x), 2.0**stops))


@dataclass(frozen=True)
class Curve:
    """Estimated curve parameters plus the user's controls.

    The applied curve is f(x; s * phi_s, h * s * phi_h) with strength s and highlight scale h,
    everywhere: CLI, API, service and plots. With `monotonic` (our default rendering), a
    negative applied phi_h is taken as 0 (it would lift the highlights of a back-lit photo, and
    it would couple the shadow lift to the poorly determined phi_h of dark frames), then both
    are scaled down together just enough that f never decreases (`monotonic_limit`); a large
    phi_s otherwise makes f dip after its shadow bump and reverses the order of tones.
    `Curve(...).save(path)` writes the JSON that `excnet restore --params` reads back.

    With `monotonic` and `second_pass` (the default rendering's curves since 0.3), the part of
    the shadow lift the limit withholds is applied as a second pass (`second`):
    f(f(x; applied); second, 0). Files saved before it existed load without it and render
    as they did.

    exposure (EV) and amount are what the adaptive rule decided (`excnet.adapt`): the curve is
    f(expose(x, s * exposure); s * amount * phi_s, h * s * amount * phi_h). Their defaults (0, 1)
    are the plain curve, so files saved before they existed load and render as before.
    """

    phi_s: float
    phi_h: float
    strength: float = 1.0
    highlight_scale: float = FAITHFUL_HIGHLIGHT_SCALE
    monotonic: bool = False
    exposure: float = 0.0
    amount: float = 1.0
    second_pass: bool = False

    def __post_init__(self) -> None:
        for name in ("phi_s", "phi_h", "strength", "highlight_scale", "exposure", "amount"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"curve parameter {name} must be a finite number")
        if abs(self.exposure) > MAX_STOPS:
            raise ValueError(f"curve parameter exposure must be within ±{MAX_STOPS:g} EV")

    @property
    def applied(self) -> tuple[float, float]:
        """(phi_s, phi_h) as actually applied to the image."""
        s = self.strength * self.amount
        applied = s * self.phi_s, self.highlight_scale * s * self.phi_h
        if not self.monotonic:
            return applied
        return monotonic_limit(applied[0], max(applied[1], 0.0))

    @property
    def second(self) -> float:
        """phi_s of the second pass: the shadow lift `applied` withholds to stay monotonic,
        itself limited (0 without `monotonic` and `second_pass`, or when nothing was
        withheld)."""
        if not (self.monotonic and self.second_pass):
            return 0.0
        extra = self.strength * self.amount * self.phi_s - self.applied[0]
        return monotonic_limit(extra, 0.0)[0] if extra > 1e-9 else 0.0

    @property
    def applied_exposure(self) -> float:
        """Exposure (EV) as actually applied, before the S-curve."""
        return self.strength * self.exposure

    def __call__(self, x: Array) -> Array:
        a_s, a_h = self.applied
        y = s_curve(expose(x, self.applied_exposure), a_s, a_h)
        second = self.second
        return s_curve(y, second, 0.0) if second else y

    def to_dict(self) -> dict[str, float | bool]:
        return {k: v if isinstance(v, bool) else float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> Curve:
        try:
            curve = cls(
                phi_s=float(data["phi_s"]),
                phi_h=float(data["phi_h"]),
                strength=float(data.get("strength", 1.0)),
                highlight_scale=float(data.get("highlight_scale", FAITHFUL_HIGHLIGHT_SCALE)),
                exposure=float(data.get("exposure", 0.0)),
                amount=float(data.get("amount", 1.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a curve: need numeric phi_s and phi_h ({exc})") from None
        flags = {}
        for name in ("monotonic", "second_pass"):
            flag = data.get(name, False)
            if not isinstance(flag, bool):  # bool("false") would be True
                raise ValueError(f"not a curve: {name} must be true or false, not {flag!r}")
            flags[name] = flag
        return replace(curve, **flags)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Curve:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read curve parameters ({exc})") from None


_SLOPE_GRID = np.linspace(0.0, 1.0, 4097)
_DELTA_SLOPE = np.gradient(f_delta(_SLOPE_GRID), _SLOPE_GRID)  # f_delta' on the grid


def monotonic_limit(phi_s: float, phi_h: float) -> tuple[float, float]:
    """The largest t * (phi_s, phi_h), 0 <= t <= 1, whose curve is non-decreasing on [0, 1].

    f'(x) = 1 + phi_s * fd'(x) + phi_h * fd'(1 - x) is linear in phi, so along the ray the
    first x where f' reaches 0 gives t in closed form (on a 4097-point grid).
    """
    d = _DELTA_SLOPE
    worst = float(-(phi_s * d + phi_h * d[::-1]).min())  # most negative f'(x) - 1
    t = 1.0 if worst <= 1.0 else 1.0 / worst
    return t * phi_s, t * phi_h


def gain(curve: Curve, b: np.ndarray) -> np.ndarray:
    """Per-pixel gain (f(b) + 1e-5) / (b + 1e-5) for base-layer values b in [0, 1]; float64.

    The reference divides f(b) by b + 1e-5; adding the same 1e-5 on top keeps the identity
    curve an exact identity (otherwise 16-bit images lose most of a level at strength 0).
    """
    b = np.asarray(b, dtype=np.float64)
    return (curve(b) + 1e-5) / (b + 1e-5)


def gain_lut(curve: Curve, size: int = 4096) -> np.ndarray:
    """`gain` tabulated on a uniform grid of b in [0, 1] (float32).

    The fast restoration path (`gainmap.GainMap`) looks up the nearest of 65536
    entries, one per 16-bit step of the base layer.
    """
    return gain(curve, np.linspace(0.0, 1.0, size)).astype(np.float32)
