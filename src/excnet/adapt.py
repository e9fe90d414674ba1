"""The adaptive default: how far, and in what shape, to lift a given image.

ExCNet's loss pulls every 4 x 4 block toward mid-grey, so on its own it lifts a well-exposed or
low-key photo as readily as a back-lit one, and its S-curve cannot lift a very dark frame far
without folding over. The adaptive rule reads the 128 x 128 network input x (the base layer, in
[0, 1]) and, for the exposure, the same input with the base layer's smoothing scaled to the
frame's brightness (`base.normalised_input`: its statistics do not drift with exposure); a few
milliseconds of NumPy. It decides two numbers:

* exposure (EV, >= 0): a linear-light gain in front of the curve (`curve.expose`) for frames
  that are dark as a whole. It is the smaller of two deficits, each in stops: the headroom
  (the bright end, the 99.5th percentile, to HIGH_TARGET) and the key (the median to
  KEY_TARGET), so a frame is lifted only when both its highlights and its mid-tones are low
  (a dark but well-exposed scene with bright highlights keeps them). A dead zone (DEAD_ZONE EV,
  entered smoothly) leaves slightly dark photos alone and holds back a little of the rest,
  in case the photo is meant to be dark: DEAD_ZONE EV at 2 * DEAD_ZONE of deficit, falling
  to DEEP_HEDGE EV at DEEP_FROM and beyond (a frame that many stops down was not meant so).
  A low-key photo (near-black surroundings, a lit subject: its median sits far more stops
  below its bright end than in an ordinary photo) is not brightened: the exposure fades out
  as that spread goes from LOWKEY_SPREAD to LOWKEY_SPREAD + 1 stops.
* amount (0..1): the fraction of ExCNet's own curve phi (estimated on the exposed input, so
  still the paper's fixed point) that is applied. A back-lit photo has both a bright
  background and a large dim region; the amount follows the geometric mean of the bright
  and the dim fractions of the photo as shot (before the exposure step, which would make any
  lifted frame's own highlights look like a bright background), from BACKLIT_LOW (nothing)
  to BACKLIT_HIGH (all of it). The bright fraction counts at least PULL times the highlight
  pull phi_h that ExCNet's loss asks for (clipped to 0..1): a loss that pulls the brightest
  blocks down toward mid-grey has found a bright background, however small its area (a
  strip of sky), while a dark-by-nature photo (nothing above mid-grey) asks for phi_h <= 0;
  the pull counts for no more than the share above mid-grey. A dusk or sunset sky is not bright
  in absolute terms; what makes it the background is that it is the frame's bright part and
  reaches the frame's edge: the bright fraction also counts the regions brighter than
  BACKGROUND times the frame's bright end (its 99.5th percentile) that touch the border (a
  sunset band, a sky, a window wall), not those enclosed in darker surroundings (the lit
  subject of a low-key photo). Like the pull, this counts only for frames given no exposure
  (a dark frame's own relatively bright parts are not a background), and only behind a dim
  region of LARGE_DIM or more (in an ordinary photo half the frame is brighter than half its
  bright end). It still takes a large dim region to make a photo back-lit.
* highlights held: the more back-lit the photo (the amount), the less of the curve's
  highlight pull is applied (`hold`, down to 1 - HOLD of the tone's highlight scale), so a
  sky or window comes out where it was, with its colour; a back-lit frame gets no exposure
  from its bright background (the exposure reads the bright end, which is already high).

The constants were chosen on our synthetic tuning halves (benchmarks/quality_sets.py), never on
LOL; benchmarks/RESULTS.md records the trials.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .colour import srgb_to_linear
from .curve import expose

HIGH_TARGET = 0.85  # sRGB level the bright end (99.5th percentile) may be lifted to
KEY_TARGET = 0.5  # sRGB level the median may be lifted to
DEAD_ZONE = 0.35  # EV of deficit left alone (entered quadratically)
DEEP_HEDGE, DEEP_FROM = 0.15, 2.0  # EV held back from a deficit of DEEP_FROM EV or more
LOWKEY_SPREAD = 2.0  # EV between median and bright end where the low-key fade starts
LOWKEY_HEADROOM = 2.0  # EV of headroom up to which a low-key photo counts as exposed on purpose
BACKLIT_LOW, BACKLIT_HIGH = 0.12, 0.30  # sqrt(bright * dim fractions): no S-curve .. all of it
BRIGHT, DIM = 0.7, (0.04, 0.3)  # sRGB levels that count as bright background / dim subject
PULL = 0.25  # bright fraction that the loss's full highlight pull (phi_h = 1) stands for
PULL_EXPOSURE = 0.25  # EV of exposure from which phi_h and the background are ignored
BACKGROUND = 0.5  # share of the bright end above which a region touching the border is background
LARGE_DIM = (0.2, 0.4)  # dim share from which the relative background counts (none .. all)
#: Guided-filter eps (0..255 scale) of the input the exposure is read from
#: (`base.normalised_input`); the exposure rule was chosen with it.
LEVELS_EPS = 3200.0
HOLD = 0.6  # share of the highlight pull withheld from a fully back-lit photo
MAX_EXPOSURE = 6.0
#: The decision counts as "needs correction" above these (report field).
NEEDS_EXPOSURE, NEEDS_AMOUNT = 0.1, 0.1


@dataclass(frozen=True)
class Decision:
    """What the adaptive rule decided for one image."""

    exposure: float  # EV of linear-light gain before the curve
    amount: float  # fraction of ExCNet's phi applied

    @property
    def needs_correction(self) -> bool:
        return self.exposure >= NEEDS_EXPOSURE or self.amount >= NEEDS_AMOUNT


def _stops(target: float, level: float) -> float:
    """EV that take sRGB level to target in linear light."""
    return math.log2(float(srgb_to_linear(target)) / float(srgb_to_linear(max(level, 1e-3))))


def soft_dead_zone(e: float) -> float:
    """Exposure for a deficit of e EV: 0 below 0, e^2 / (4 DEAD_ZONE) up to 2 DEAD_ZONE, then
    e minus a hedge that falls linearly from DEAD_ZONE there to DEEP_HEDGE at DEEP_FROM EV
    and stays there. Continuous and increasing (the slope is 1 to 1.25)."""
    dz = DEAD_ZONE
    if e <= 0:
        return 0.0
    if e < 2 * dz:
        return e * e / (4 * dz)
    t = min((e - 2 * dz) / max(DEEP_FROM - 2 * dz, 1e-9), 1.0)
    return e - (dz + (DEEP_HEDGE - dz) * t)


def _percentiles(x: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """np.percentile(x, qs) (its default "linear" method, the same float64 values) through
    np.partition: np.percentile imports numpy.ma on first use, 18 ms of every start."""
    a = np.asarray(x).ravel()
    n = a.size
    at = [q / 100.0 * (n - 1) for q in qs]
    lows = [int(math.floor(p)) for p in at]
    part = np.partition(a, sorted({*lows, *(min(lo + 1, n - 1) for lo in lows)}))
    out = []
    for p, lo in zip(at, lows, strict=True):
        t = p - lo
        va, vb = np.float64(part[lo]), np.float64(part[min(lo + 1, n - 1)])
        out.append(float(vb - (vb - va) * (1 - t) if t >= 0.5 else va + (vb - va) * t))
    return out


def decide_exposure(x: np.ndarray) -> float:
    """Exposure (EV >= 0) for x (H, W) in [0, 1]: the normalised input (`decide`'s levels)."""
    high, median = _percentiles(x, (99.5, 50.0))
    headroom, key = _stops(HIGH_TARGET, high), _stops(KEY_TARGET, median)
    fade = min(max(LOWKEY_SPREAD + 1.0 - (key - headroom), 0.0), 1.0)
    under = min(max(headroom - LOWKEY_HEADROOM, 0.0), 1.0)  # its bright end is dim too
    fade = fade + (1.0 - fade) * under
    return min(soft_dead_zone(min(headroom, key)) * fade, MAX_EXPOSURE)


def background(x: np.ndarray) -> float:
    """Share of x (H, W) in [0, 1] in regions brighter than BACKGROUND times its bright end
    (99.5th percentile) that touch the border (4-connected)."""
    top = _percentiles(x, (99.5,))[0]
    if top <= 0:
        return 0.0
    _, labels = cv2.connectedComponents((x > BACKGROUND * top).astype(np.uint8), connectivity=4)
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    touching = np.unique(edge[edge > 0])
    return float(np.isin(labels, touching).mean()) if touching.size else 0.0


def decide_amount(x: np.ndarray, phi_h: float = 0.0, unexposed: float = 0.0) -> float:
    """Fraction (0..1) of ExCNet's phi to apply, for the network input x as shot, the
    highlight pull phi_h that the loss asks for (0 when not known yet) and how far the frame
    is from being given exposure (1: none; 0: the background is not read)."""
    # the pull vouches for a bright background no larger than what is above mid-grey (a flat
    # or wholly dark frame leaves phi_h to the ridge: it has nothing to pull)
    pull = min(PULL * min(max(phi_h, 0.0), 1.0), float(np.mean(x > 0.5)))
    bright = max(float(np.mean(x > BRIGHT)), pull)
    dim = float(np.mean((x > DIM[0]) & (x < DIM[1])))
    if unexposed > 0:  # a relative background only behind a large dim subject
        large = min(max((dim - LARGE_DIM[0]) / (LARGE_DIM[1] - LARGE_DIM[0]), 0.0), 1.0)
        if large > 0:
            bright = max(bright, unexposed * large * background(x))
    t = (math.sqrt(bright * dim) - BACKLIT_LOW) / (BACKLIT_HIGH - BACKLIT_LOW)
    return min(max(t, 0.0), 1.0)


def with_curve(decision: Decision, x: np.ndarray, phi_h: float) -> Decision:
    """The decision once ExCNet's phi_h is known (estimated on x exposed as decided): the
    amount re-read with its pull and the background. The pull of an exposed frame is its own
    lifted highlights' (see `decide`), and a dark frame's relatively bright parts are no
    background, so both count less as the exposure grows and not at all from PULL_EXPOSURE
    EV on."""
    unexposed = max(0.0, 1.0 - decision.exposure / PULL_EXPOSURE)
    return Decision(decision.exposure, decide_amount(x, phi_h * unexposed, unexposed))


def hold(amount: float) -> float:
    """Factor (1 - HOLD .. 1) on the highlight scale for a photo this back-lit (amount 0..1)."""
    return 1.0 - HOLD * min(max(amount, 0.0), 1.0)


def decide(x: np.ndarray, levels: np.ndarray | None = None) -> tuple[Decision, np.ndarray]:
    """The decision for network input x, and x exposed by it (what the solver should see).

    levels: `base.normalised_input` of the same image, which the exposure is read from (x
    itself when None, e.g. for a bare network input). The amount is read without phi;
    `with_curve` completes it once phi is known."""
    exposure = decide_exposure(x if levels is None else levels)
    exposed = np.asarray(expose(x, exposure), dtype=np.float32)
    return Decision(exposure, decide_amount(x)), exposed
