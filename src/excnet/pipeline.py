"""The restoration pipeline: image array -> luminance/base -> curve parameters -> restored array.

`Restorer` is the one stateful object: it owns the solver (and so the warm-started network)
for a session of many images. `restore()` is the one-shot convenience.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from .adapt import LEVELS_EPS, Decision, decide, hold, with_curve
from .base import base_layer, fast_base_layer, network_input, normalised_input
from .colour import check_pixels, chroma_gain_map, luminance
from .curve import Curve, gain
from .defaults import DEFAULT_SOLVER, SOLVERS
from .denoise import Lifted, check_mode, lift, settings_for
from .gainmap import ChromaMap, GainMap, render
from .solvers import RIDGE, Estimate, NetworkSolver, solve_direct
from .tone import FAITHFUL, IMPROVED, ToneOptions, apply_tone_gain

#: The report of a restoration without clean lifting.
OFF = Lifted(np.empty(0, np.uint8), "off", None, 0.0)


@dataclass
class Result:
    """A restored image and how it was made.

    image: same shape and dtype as the input. curve: the estimated (or given) parameters with
    the strength and highlight scale used (and what the adaptive rule decided). seconds:
    per-stage wall time (base, estimate, apply). needs_correction: whether the adaptive rule
    judges the image to need a correction (also when it was not applied). mean_gain: how
    strong the applied correction was, the mean luminance gain f(b)/b over the image's base
    layer (on its 128 x 128 network input); 1 is no change.
    denoise: what clean lifting did (`denoise.Lifted.report`: mode, noise, cleaned).
    """

    image: np.ndarray
    curve: Curve
    iterations: int
    loss: float
    converged: bool
    seconds: dict[str, float] = field(default_factory=dict)
    needs_correction: bool = True
    mean_gain: float = 1.0
    denoise: dict = field(default_factory=dict)

    @property
    def phi_s(self) -> float:
        return self.curve.phi_s

    @property
    def phi_h(self) -> float:
        return self.curve.phi_h


def gain_map(base: np.ndarray, curve: Curve) -> np.ndarray:
    """Per-pixel `curve.gain` for the base layer (H, W) on 0..255, in float64; float32 out."""
    return gain(curve, base.astype(np.float64) / 255.0).astype(np.float32)


class Restorer:
    """Restores many images in a row, keeping the ExCNet network warm between them.

    solver: "direct" (the default: the exact minimiser of the convex loss that the CNN's
    training settles at, in milliseconds) or "excnet" (the CNN trained at test time, the paper's
    method). arch / init / lr / max_iters / tol / window / seed configure the CNN. strength and
    highlight_scale shape the applied curve f(x; s * phi_s, h * s * phi_h).

    tone chooses the rendering: `tone.IMPROVED` (the default; it won on the held-out half of
    benchmarks/quality.py: monotonic curve, guided-filter eps 1600, highlight scale 0.5) or
    `tone.FAITHFUL` (the paper's: eps 800, highlight scale 0.2); `faithful=True` is short for
    the latter. highlight_scale=None takes the tone's.

    adapt: the adaptive default (`excnet.adapt`): an exposure step before the curve for dark
    frames and a fraction of phi that follows how back-lit the photo is, both decided per image
    and stored in the Curve. None (the default) means on, except with the faithful tone.

    exact=True computes the base layer with the exact guided filter and the gain in float64
    (the reference path); the default fast path (subsampled guided filter, gain table) gives
    the same phi within a few thousandths and the same pixels within about one level.

    denoise: "auto" (the default) cleans what the gain amplifies (noise, JPEG blocks, 8-bit
    steps) where it lifts, by the image's own noise level (`denoise.lift`); "strong" cleans
    more; "off" applies the gain alone. None takes "off" with the faithful tone (the paper's
    rendering, bit for bit) or a tone whose chroma/clip modes are not the plain ones (denoising
    needs plain clipping), and "auto" otherwise.
    """

    def __init__(self, solver: str = DEFAULT_SOLVER, *, arch: str = "small",
                 init: str = "identity", lr: float = 1e-3, max_iters: int = 1000,
                 tol: float = 1e-3, window: int = 20, ridge: float = RIDGE, seed: int = 0,
                 strength: float = 1.0, highlight_scale: float | None = None,
                 tone: ToneOptions | None = None, faithful: bool = False,
                 adapt: bool | None = None, exact: bool = False,
                 denoise: str | None = None) -> None:
        if solver not in SOLVERS:
            raise ValueError(f"unknown solver {solver!r}; choose from {', '.join(SOLVERS)}")
        if tone is None:
            tone = FAITHFUL if faithful else IMPROVED
        if tone.monotonic == "envelope":
            raise ValueError("the 'envelope' monotonic mode is a benchmark trial only")
        # The renderings `gainmap.render` applies band by band (and clean lifting builds on).
        self.plain = tone.chroma in ("faithful", "exposure") and tone.clip == "plain"
        if denoise is None:
            denoise = "auto" if self.plain and tone != FAITHFUL else "off"
        if check_mode(denoise) != "off" and not self.plain:
            raise ValueError("denoise needs the faithful or exposure chroma step and plain "
                             "clipping")
        self.denoise = denoise
        self.solver = solver
        self.adapt = tone != FAITHFUL if adapt is None else adapt
        # the adaptive rule holds a back-lit photo's highlights unless the user set the scale
        self.hold_highlights = highlight_scale is None
        self.ridge = ridge
        self.tone = tone
        self.strength = strength
        self.highlight_scale = tone.highlight_scale if highlight_scale is None else highlight_scale
        self.exact = exact
        self.network = (
            NetworkSolver(arch, init, lr, max_iters, tol, window, ridge, seed)
            if solver == "excnet" else None
        )

    def estimate_input(self, x: np.ndarray) -> Estimate:
        """Curve parameters for a network input x (128 x 128, values in [0, 1])."""
        if self.network is None:
            return solve_direct(x, ridge=self.ridge)
        return self.network.solve(x)

    def decide_input(self, x: np.ndarray,
                     decided: tuple[Decision, np.ndarray] | None = None,
                     levels: np.ndarray | None = None) -> tuple[Estimate, Decision]:
        """phi and the adaptive decision for a network input x (128 x 128, in [0, 1]).

        With adapt on, phi is ExCNet's estimate for x exposed as decided, and the amount is
        re-read with its highlight pull (`adapt.with_curve`); with adapt off, phi is for x
        itself, and the decision is the neutral one (no exposure, all of phi). `decided`:
        `adapt.decide(x, levels)` when the caller has it already; levels: the image's
        `levels` (see `adapt.decide`).
        """
        if not self.adapt:
            return self.estimate_input(x), Decision(0.0, 1.0)
        decision, exposed = decided or decide(x, levels)
        est = self.estimate_input(exposed)
        return est, with_curve(decision, x, est.phi_h)

    def estimate(self, image: np.ndarray) -> tuple[Estimate, np.ndarray]:
        """phi for an image (as `decide_input`); also returns the base layer (0..255) for reuse."""
        curve_est, base = self.estimate_curve(image)
        return curve_est[1], base

    def estimate_curve(self, image: np.ndarray) -> tuple[tuple[Curve, Estimate], np.ndarray]:
        """((the curve restore() would apply, the estimate), base layer (0..255))."""
        y, base, x = self._layers(image)
        est, decision = self.decide_input(x, levels=self.levels(y))
        return (self.curve_for(est.phi_s, est.phi_h, decision), est), base

    def levels(self, y: np.ndarray) -> np.ndarray:
        """What the adaptive rule reads the exposure from, for luminance y (H, W) on 0..255:
        `base.normalised_input` with the rule's own guided-filter eps (`adapt.LEVELS_EPS`)."""
        return normalised_input(y, LEVELS_EPS, self.tone.radius_fraction)

    def _layers(self, image: np.ndarray, threads: int = 1
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(luminance (H, W) and its base layer on 0..255, network input (128, 128))."""
        y = luminance(image, threads)
        if self.exact:
            base = base_layer(y, self.tone.eps, self.tone.radius_fraction)
        else:
            base = fast_base_layer(y, self.tone.eps, self.tone.radius_fraction, threads)
        return y, base, network_input(base, exact=self.exact or self.tone == FAITHFUL)

    def curve_for(self, phi_s: float, phi_h: float, decision: Decision | None = None) -> Curve:
        """The curve with this restorer's strength, highlight scale and monotonic setting, and
        the adaptive decision's exposure and amount (none: the plain curve). Unless the
        highlight scale was given, a back-lit decision also holds the highlights
        (`adapt.hold`: less of the curve's highlight pull, so the sky stays where it was)."""
        scale = self.highlight_scale
        if (decision is not None and self.adapt and self.hold_highlights
                and scale == self.tone.highlight_scale):  # (attributes a caller may reset)
            scale *= hold(decision.amount)
        curve = self.tone.curve(phi_s, phi_h, self.strength, scale)
        if decision is None:
            return curve
        return replace(curve, exposure=decision.exposure, amount=decision.amount)

    def restore(self, image: np.ndarray, curve: Curve | None = None, *,
                in_place: bool = False, threads: int = 1) -> Result:
        """Restore one image. With `curve` given, estimation is skipped and that curve applied.

        in_place: write the result into `image` itself (the caller gives the input up; a
        12 MP photo then needs one full-size array less, which a fresh process pays for in
        page faults). A read-only image, and renderings other than the plain and default
        ones, are still copied. threads: how many threads share the full-resolution passes
        (1.1-1.2x faster on 2 cores; for a photo that has the cores to itself)."""
        check_pixels(image)
        seconds: dict[str, float] = {}
        t0 = time.perf_counter()
        y, base, x = self._layers(image, threads)
        t1 = time.perf_counter()
        seconds["base"] = t1 - t0
        decided = decide(x, self.levels(y))
        judged = decided[0]
        if curve is None:
            est, decision = self.decide_input(x, decided)
            judged = decision if self.adapt else judged
            curve = self.curve_for(est.phi_s, est.phi_h, decision)
            iterations, loss, converged = est.iterations, est.loss, est.converged
        else:
            iterations, loss, converged = 0, float("nan"), True
        mean_gain = float(gain(curve, x[::2, ::2]).mean())  # 64 x 64 samples are plenty
        t2 = time.perf_counter()
        seconds["estimate"] = t2 - t1
        gains, chroma = self._gain_maps(base, curve)
        into = image if in_place and image.flags.writeable else None
        if not self.plain:  # a trial rendering: whole-image float arithmetic
            out, cleaning = apply_tone_gain(image, gains[...], self.tone), OFF.report()
        elif self.denoise != "off":
            lifted = lift(image, y, gains, self.denoise, chroma_gain=chroma, out=into,
                          threads=threads, settings=settings_for(self.denoise, curve.amount))
            out, cleaning = lifted.image, lifted.report()
        else:
            out = render(image, y, gains, chroma, out=into, threads=threads)
            cleaning = OFF.report()
        seconds["apply"] = time.perf_counter() - t2
        return Result(out, curve, iterations, loss, converged, seconds,
                      judged.needs_correction, mean_gain, cleaning)

    def _gain_maps(self, base: np.ndarray, curve: Curve):  # noqa: ANN202
        """(luma gain, colour-offset gain or None) of every pixel of the base layer: arrays on
        the exact path, `gainmap` maps (looked up as they are applied) on the fast one."""
        chroma = self.tone.chroma == "exposure"
        if self.exact:
            gains = gain_map(base, curve)
            return gains, chroma_gain_map(base, gains) if chroma else None
        gains = GainMap.of(base, curve)
        return gains, ChromaMap.of(gains, curve) if chroma else None


def restore(image: np.ndarray, curve: Curve | None = None, **options) -> Result:
    """Restore one back-lit image (uint8/uint16; grey, RGB, with or without alpha).

    Same shape and dtype out; alpha passes through. `options` are those of `Restorer`.
    """
    return Restorer(**options).restore(image, curve)
