"""Temporal guidance for video: each frame's curve starts from the previous frames' state.

`TemporalGuide` turns a stream of per-frame network inputs (128 x 128 base layers in [0, 1])
into a stream of curve parameters phi = (phi_s, phi_h) that does not flicker yet follows real
changes quickly:

* Estimation runs on every `every`-th frame (and always on the first frame and after a cut);
  the frames in between reuse the last estimate as their target.
* Smoothing: the applied phi follows the target with a first-order (exponential) filter whose
  time constant is `tau` seconds of video time, phi += (1 - exp(-dt / tau)) (target - phi),
  with dt the frame's timestamp step. Because it is defined in seconds, variable frame rate
  clips are smoothed the same way as constant ones, and estimating every k-th frame turns into
  a smooth glide from one estimate to the next instead of a step every k frames.
* Cuts and sudden lighting changes: the change score of a frame is the mean absolute
  difference of its 32 x 32 block means (of the network input) from the previous frame's. A
  score above `cut_threshold` forces an estimate on that frame and resets the filter to it,
  so the new shot is corrected from its first frame instead of being blended with the old one.
  Sensor noise and a slow pan move the score by a few thousandths; a cut or a one-stop
  exposure step moves it by several hundredths.

The estimator is any callable (x, fresh) -> (phi_s, phi_h) or (phi_s, phi_h, exposure, amount)
(the adaptive decision, `excnet.adapt`, smoothed like phi so it cannot flicker either: the
exposure in EV, the amount as a fraction); fresh is True on the first frame
and on cuts, where a warm-started network may need more training than on a frame like the
last. A network estimator carries its own state (weights) from frame to frame as well. A
frame may come with `levels`, a callable that makes what the adaptive rule reads the
exposure from (`Restorer.levels`); it is called, and its result given to the estimator as a
third argument, only on the frames that are estimated.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .defaults import DEFAULT_CUT_THRESHOLD, DEFAULT_EVERY, DEFAULT_TAU
from .loss import BLOCK

Estimator = Callable[[np.ndarray, bool], tuple[float, ...]]


def block_signature(x: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """Non-overlapping block means of the network input x (H, W) -> (H/block, W/block) float32."""
    h, w = x.shape
    return x.reshape(h // block, block, w // block, block).mean(axis=(1, 3), dtype=np.float32)


def change_score(previous: np.ndarray, current: np.ndarray) -> float:
    """Mean absolute difference of two block signatures (0 = identical, on the [0, 1] scale)."""
    return float(np.mean(np.abs(current - previous)))


@dataclass(frozen=True)
class Step:
    """What the guide did for one frame."""

    phi_s: float  # smoothed, to apply
    phi_h: float
    estimated: bool  # the estimator ran on this frame
    cut: bool  # a scene cut or sudden lighting change started here
    score: float  # change score against the previous frame
    exposure: float = 0.0  # smoothed adaptive decision (neutral when the estimator has none)
    amount: float = 1.0


class TemporalGuide:
    """Per-frame phi for a video: estimate every k-th frame, smooth in time, reset on cuts.

    every: estimate on every k-th frame (1 = every frame). tau: smoothing time constant in
    seconds (0 disables smoothing). cut_threshold: change score that counts as a cut
    (math.inf disables cut detection).
    """

    def __init__(self, estimator: Estimator, every: int = DEFAULT_EVERY,
                 tau: float = DEFAULT_TAU, cut_threshold: float = DEFAULT_CUT_THRESHOLD) -> None:
        if every < 1:
            raise ValueError("every must be at least 1")
        if tau < 0 or cut_threshold <= 0:
            raise ValueError("tau must be >= 0 and cut_threshold > 0")
        self.estimator = estimator
        self.every, self.tau, self.cut_threshold = every, tau, cut_threshold
        self.phi: tuple[float, ...] | None = None  # smoothed estimator output (phi first)
        self.target: tuple[float, ...] | None = None
        self._signature: np.ndarray | None = None
        self._time: float | None = None
        self._since_estimate = 0

    def step(self, x: np.ndarray, time: float,
             levels: Callable[[], np.ndarray] | None = None) -> Step:
        """Advance to the frame with network input x (128 x 128 in [0, 1]) shown at `time` s
        (levels: see the module docstring)."""
        signature = block_signature(x)
        score = 0.0 if self._signature is None else change_score(self._signature, signature)
        cut = self._signature is not None and score > self.cut_threshold
        first = self.phi is None
        estimate = first or cut or self._since_estimate + 1 >= self.every
        if estimate:
            extra = () if levels is None else (levels(),)
            self.target = tuple(float(v) for v in self.estimator(x, first or cut, *extra))
            self._since_estimate = 0
        else:
            self._since_estimate += 1
        if first or cut or self.tau == 0:
            self.phi = self.target
        else:
            dt = max(time - self._time, 0.0)
            a = 1.0 - math.exp(-dt / self.tau)
            self.phi = tuple(p + a * (t - p) for p, t in zip(self.phi, self.target, strict=True))
        self._signature, self._time = signature, time
        return Step(self.phi[0], self.phi[1], estimate, cut, score, *self.phi[2:4])
