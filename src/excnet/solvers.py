"""Two ways to find the curve parameters phi = (phi_s, phi_h) for a network input x (128 x 128).

* `solve_direct`: the exact minimiser of the convex loss G (section 7 of the method notes), in a
  few milliseconds.
* `NetworkSolver`: the paper's method. A CNN trained on the image at test time with Adam; it
  keeps its weights and optimiser state from one image to the next (warm start) and stops when
  phi has settled instead of after a fixed count.

Inside the block means the adjusted image is linear in phi: B'_i = B_i + phi_s A_i - phi_h H_i
with A, H the block means of f_delta(x) and f_delta(1 - x). Both solvers work on those block
statistics, which is exact, not an approximation. Both add the same small ridge
`ridge * |phi|^2`, which pins phi_h down when no block is bright (it is otherwise nearly
undetermined) and moves phi of a back-lit photo by a few thousandths.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .curve import f_delta
from .loss import BLOCK, LAMBDA, block_energy

if TYPE_CHECKING:  # torch only for NetworkSolver: the direct solver never loads it
    import torch

#: Weight of the ridge: G is in the hundreds on a back-lit image and its curvature in phi_h in
#: the tens, so 0.1 moves such a phi by a few thousandths; on a frame with no bright block it
#: keeps phi_h near -0.3 instead of drifting to -15 (measured), where the curve would visibly
#: brighten the few light pixels.
RIDGE = 0.1


@dataclass(frozen=True)
class Estimate:
    """A solver's answer for one image."""

    phi_s: float
    phi_h: float
    iterations: int  # training iterations used (0 for the direct solver)
    loss: float  # the convex loss G at phi (plus the ridge)
    converged: bool
    seconds: float


@dataclass(frozen=True)
class BlockStats:
    """Block means of x, f_delta(x) and f_delta(1 - x), each flattened to (n_blocks,) float64,
    plus the 4-neighbour pair differences of the latter two."""

    b: np.ndarray
    a: np.ndarray
    h: np.ndarray
    shape: tuple[int, int]

    @classmethod
    def of(cls, x: np.ndarray, block: int = BLOCK) -> BlockStats:
        x = np.asarray(x, dtype=np.float64)
        h, w = x.shape[0] // block, x.shape[1] // block

        def means(v: np.ndarray) -> np.ndarray:  # as loss.block_means (avg_pool2d), in NumPy
            return v[: h * block, : w * block].reshape(h, block, w, block).mean((1, 3))

        return cls(*(means(v).ravel() for v in (x, f_delta(x), f_delta(1 - x))), shape=(h, w))

    def pair_diffs(self, v: np.ndarray) -> np.ndarray:
        g = v.reshape(self.shape)
        return np.concatenate([(g[1:, :] - g[:-1, :]).ravel(), (g[:, 1:] - g[:, :-1]).ravel()])

    def convex_loss(self, phi_s: float, phi_h: float, lam: float = LAMBDA,
                    ridge: float = RIDGE) -> float:
        """G(phi) + ridge |phi|^2 evaluated exactly."""
        by = self.b + phi_s * self.a - phi_h * self.h
        d = phi_s * self.pair_diffs(self.a) - phi_h * self.pair_diffs(self.h)
        return float(np.abs(by - 0.5).sum() + lam * (d * d).sum()
                     + ridge * (phi_s**2 + phi_h**2))


def _min_1d(c: np.ndarray, w: np.ndarray, q: float, lin: float) -> float:
    """Exact argmin over t of sum_i |c_i + w_i t| + q t^2 + lin t, for w_i >= 0 and q > 0.

    The derivative is piecewise linear and increasing, with jumps of 2 w_i at the breakpoints
    t_i = -c_i / w_i; walking the sorted breakpoints finds its zero exactly.
    """
    keep = w > 0
    t = -c[keep] / w[keep]
    order = np.argsort(t)
    t, ws = t[order], w[keep][order]
    total = ws.sum()
    cum = np.cumsum(ws)
    right = 2 * cum - total + 2 * q * t + lin  # derivative just right of each breakpoint
    k = int(np.searchsorted(right, 0.0))
    if k == len(t):
        return float((-total - lin) / (2 * q))
    if right[k] - 2 * ws[k] <= 0:  # derivative changes sign at the kink itself
        return float(t[k])
    below = cum[k - 1] if k > 0 else 0.0
    return float((total - 2 * below - lin) / (2 * q))


def solve_direct(x: np.ndarray, lam: float = LAMBDA, ridge: float = RIDGE,
                 tol: float = 1e-10) -> Estimate:
    """Exact minimiser of G(phi) + ridge |phi|^2 for the network input x (H, W) in [0, 1].

    phi_s is minimised exactly for each phi_h (`_min_1d`); the result is convex in phi_h and
    is minimised by golden-section search to `tol`.
    """
    start = time.perf_counter()
    st = BlockStats.of(x)
    da, dh = st.pair_diffs(st.a), st.pair_diffs(st.h)
    qss = lam * float(da @ da) + ridge
    qsh = -lam * float(da @ dh)  # coefficient of phi_s * phi_h is 2 * qsh
    qhh = lam * float(dh @ dh) + ridge
    c0 = st.b - 0.5

    def inner(phi_h: float) -> tuple[float, float]:
        phi_s = _min_1d(c0 - phi_h * st.h, st.a, qss, 2 * qsh * phi_h)
        return phi_s, st.convex_loss(phi_s, phi_h, lam, ridge)

    # |phi|^2 <= G(0) / ridge bounds the search interval.
    bound = math.sqrt(st.convex_loss(0.0, 0.0, lam, ridge) / min(ridge, qhh)) + 1.0
    lo, hi = -bound, bound
    g = (math.sqrt(5) - 1) / 2
    m1, m2 = hi - g * (hi - lo), lo + g * (hi - lo)
    f1, f2 = inner(m1)[1], inner(m2)[1]
    while hi - lo > tol:
        if f1 <= f2:
            hi, m2, f2 = m2, m1, f1
            m1 = hi - g * (hi - lo)
            f1 = inner(m1)[1]
        else:
            lo, m1, f1 = m1, m2, f2
            m2 = lo + g * (hi - lo)
            f2 = inner(m2)[1]
    phi_h = (lo + hi) / 2
    phi_s, loss = inner(phi_h)
    return Estimate(phi_s, phi_h, 0, loss, True, time.perf_counter() - start)


class NetworkSolver:
    """The ExCNet CNN and its Adam state, trained at test time and carried across images.

    `solve(x)` trains on x and returns the network's prediction. Each image starts at the
    reference learning rate (Adam, 1e-3). Because G has kinks where a block crosses 0.5,
    Adam at a fixed rate circles the minimiser by a few hundredths; so the rate is halved
    whenever the gradient with respect to phi turns back (the dot product of two successive
    phi-gradients is negative) and grows by 5 % again, up to 1e-3, while it keeps its
    direction. Training stops when each of phi_s and phi_h moved less than `tol` over the last
    `window` iterations, or at `max_iters`.

    A fresh solver with the same seed, inputs and torch thread count is bit-for-bit
    deterministic.
    """

    def __init__(self, arch: str = "small", init: str = "identity", lr: float = 1e-3,
                 max_iters: int = 1000, tol: float = 1e-3, window: int = 20,
                 ridge: float = RIDGE, seed: int = 0) -> None:
        import torch

        from .network import ExCNet

        if max_iters < 1:
            raise ValueError("max_iters must be at least 1")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = ExCNet(arch, init)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.lr, self.max_iters, self.tol, self.window = lr, max_iters, tol, window
        self.ridge = ridge
        self.images_seen = 0

    def predict(self, x: np.ndarray) -> tuple[float, float]:
        """The network's current phi for x, without training."""
        import torch

        with torch.no_grad():
            phi = self.net(_as_batch(x))[0]
        return float(phi[0]), float(phi[1])

    def _set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def solve(self, x: np.ndarray) -> Estimate:
        import torch

        start = time.perf_counter()
        st = BlockStats.of(x)
        xt = _as_batch(x)
        grid = (1, 1, *st.shape)
        b, a, h = (torch.from_numpy(v).float().view(grid) for v in (st.b, st.a, st.h))
        history = np.empty((self.max_iters, 2))
        lr, previous = self.lr, None
        converged = False
        it = 0
        for it in range(1, self.max_iters + 1):
            phi = self.net(xt)[0]
            phi.retain_grad()
            loss = block_energy(b, b + phi[0] * a - phi[1] * h)[0]
            loss = loss + self.ridge * phi.pow(2).sum()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad = phi.grad.detach().clone()
            if previous is not None:
                lr = lr * 0.5 if float(grad @ previous) < 0 else min(lr * 1.05, self.lr)
                self._set_lr(lr)
            previous = grad
            self.optimizer.step()
            history[it - 1] = phi.detach().numpy()
            if it >= self.window:
                recent = history[it - self.window: it]
                if np.all(recent.max(0) - recent.min(0) < self.tol):
                    converged = True
                    break
        self._set_lr(self.lr)
        self.images_seen += 1
        phi_s, phi_h = self.predict(x)
        return Estimate(phi_s, phi_h, it, st.convex_loss(phi_s, phi_h, ridge=self.ridge),
                        converged, time.perf_counter() - start)


def _as_batch(x: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, None]
