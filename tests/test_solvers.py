"""The two solvers: the exact convex minimiser and the test-time-trained CNN that should find it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_backlit

from excnet import Restorer
from excnet.base import base_layer, network_input
from excnet.colour import luminance
from excnet.curve import s_curve
from excnet.loss import convex_loss
from excnet.solvers import BlockStats, NetworkSolver, _min_1d, solve_direct

#: Different back-lit scenes: seed (texture, tint), subject position, darkness, size.
SCENES = [
    dict(seed=0),
    dict(seed=1, subject=(0.5, 0.3)),
    dict(seed=2, subject=(0.4, 0.7), stops=2.0),
    dict(seed=3, h=128, w=128, stops=4.0),
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def net_input(image: np.ndarray) -> np.ndarray:
    """Image -> the 128 x 128 network input in [0, 1]."""
    return network_input(base_layer(luminance(image)))


@pytest.fixture(scope="module")
def inputs() -> list[np.ndarray]:
    return [net_input(make_backlit(**kw)) for kw in SCENES]


def solve_recording(solver: NetworkSolver, x: np.ndarray):
    """Solve x and return (estimate, phi at every training iteration) via a forward hook."""
    seen: list[np.ndarray] = []
    handle = solver.net.register_forward_hook(
        lambda _m, _i, out: seen.append(out[0].detach().numpy().copy()))
    try:
        est = solver.solve(x)
    finally:
        handle.remove()
    # one forward per iteration, then one more for the final prediction
    assert len(seen) == est.iterations + 1
    return est, np.array(seen[:-1])


@pytest.fixture(scope="module")
def cold_runs(inputs):
    """The small CNN, identity init, trained from scratch on each scene."""
    return [solve_recording(NetworkSolver("small"), x) for x in inputs]


# --------------------------------------------------------------------------- direct solver


def test_block_stats_loss_equals_the_convex_loss(inputs):
    x = inputs[0]
    st = BlockStats.of(x)
    xt = torch.from_numpy(x.astype(np.float64))[None, None]
    for phi in [(0.0, 0.0), (0.7, 0.9), (-0.4, 1.3)]:
        g = float(convex_loss(xt, s_curve(xt, *phi))[0])
        assert st.convex_loss(*phi, ridge=0.0) == pytest.approx(g, rel=1e-9)


@pytest.mark.parametrize("index", range(len(SCENES)))
def test_direct_is_the_minimiser_on_a_grid(inputs, index):
    x = inputs[index]
    est = solve_direct(x)
    st = BlockStats.of(x)
    best = st.convex_loss(est.phi_s, est.phi_h)
    assert est.loss == pytest.approx(best)
    assert est.iterations == 0 and est.converged
    # brute force: a 61 x 61 grid, step 0.002, centred on the answer
    steps = np.linspace(-0.06, 0.06, 61)
    grid = min(st.convex_loss(est.phi_s + a, est.phi_h + b) for a in steps for b in steps)
    assert best <= grid + 1e-9
    # and a coarse grid over a wide area finds nothing lower either
    wide = np.linspace(-2, 3, 51)
    assert best <= min(st.convex_loss(a, b) for a in wide for b in wide) + 1e-9


@pytest.mark.parametrize("index", range(len(SCENES)))
def test_direct_beats_every_perturbation(inputs, index):
    x = inputs[index]
    est = solve_direct(x)
    st = BlockStats.of(x)
    best = st.convex_loss(est.phi_s, est.phi_h)
    for r in (1e-5, 1e-4, 1e-3, 1e-2):
        for angle in np.linspace(0, 2 * np.pi, 16, endpoint=False):
            g = st.convex_loss(est.phi_s + r * np.cos(angle), est.phi_h + r * np.sin(angle))
            assert best <= g + 1e-10


def test_direct_on_back_lit_scenes_lifts_shadows(inputs):
    for x in inputs:
        est = solve_direct(x)
        assert 0.3 < est.phi_s < 2.0  # dark subject: the shadows are lifted


@pytest.mark.parametrize("value", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_direct_on_flat_images_is_finite(value):
    est = solve_direct(np.full((128, 128), value, np.float32))
    assert np.isfinite(est.phi_s) and np.isfinite(est.phi_h) and np.isfinite(est.loss)
    if value == 0.5:  # already at the target: the ridge picks the identity
        assert abs(est.phi_s) < 1e-6 and abs(est.phi_h) < 1e-6


def _objective(c, w, q, lin, t):
    t = np.asarray(t, dtype=np.float64)[..., None]
    return np.abs(c + w * t).sum(-1) + q * t[..., 0] ** 2 + lin * t[..., 0]


@pytest.mark.parametrize("seed", range(12))
def test_min_1d_is_exact(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    c = rng.standard_normal(n)
    w = rng.random(n) * 2
    w[rng.random(n) < 0.2] = 0.0  # some terms do not depend on t
    q = float(rng.uniform(1e-3, 5))
    lin = float(rng.standard_normal() * 3)
    t = _min_1d(c, w, q, lin)
    # optimality: 0 lies in the subdifferential at t
    z = c + w * t
    at_kink = (np.abs(z) < 1e-9) & (w > 0)
    smooth = (w * np.sign(z))[~at_kink].sum() + 2 * q * t + lin
    slack = w[at_kink].sum()
    assert smooth - slack <= 1e-8 and smooth + slack >= -1e-8
    # and no point of a dense grid around it does better
    ts = t + np.linspace(-1, 1, 20_001)
    assert _objective(c, w, q, lin, t) <= _objective(c, w, q, lin, ts).min() + 1e-12
    assert abs(ts[np.argmin(_objective(c, w, q, lin, ts))] - t) <= 1e-4 + 1e-9


def test_min_1d_without_kinks_is_the_parabola_vertex():
    # w = 0: minimise q t^2 + lin t  ->  t = -lin / (2 q)
    assert _min_1d(np.array([1.0, -2.0]), np.zeros(2), 2.0, 3.0) == pytest.approx(-0.75)


def test_min_1d_can_stop_on_a_kink():
    # |t - 1| * 10 + 0.01 t^2: the kink at t = 1 dominates
    assert _min_1d(np.array([-10.0]), np.array([10.0]), 0.01, 0.0) == pytest.approx(1.0)


# --------------------------------------------------------------------------- the CNN


def test_cnn_matches_direct_on_several_images(inputs, cold_runs):
    for x, (est, _) in zip(inputs, cold_runs, strict=True):
        ref = solve_direct(x)
        assert abs(est.phi_s - ref.phi_s) < 0.02
        assert abs(est.phi_h - ref.phi_h) < 0.02
        assert est.loss == pytest.approx(ref.loss, rel=1e-3)


def test_convergence_means_phi_settled(cold_runs):
    for est, history in cold_runs:
        assert est.converged
        assert 20 <= est.iterations < 1000
        last = history[-20:]
        assert np.all(last.max(0) - last.min(0) < 1e-3)
        # and it had not settled 20 iterations earlier (the test is not trivially true)
        early = history[:20]
        assert np.any(early.max(0) - early.min(0) >= 1e-3)


def test_iteration_cap_is_reported_as_not_converged(inputs):
    est = NetworkSolver("small", max_iters=5).solve(inputs[0])
    assert est.iterations == 5
    assert not est.converged


def test_max_iters_must_be_positive():
    with pytest.raises(ValueError, match="max_iters"):
        NetworkSolver("small", max_iters=0)


def test_reference_init_reaches_the_same_phi(inputs, cold_runs):
    x = inputs[1]
    est = NetworkSolver("small", init="reference").solve(x)
    start = NetworkSolver("small", init="reference").predict(x)
    assert max(abs(start[0]), abs(start[1])) > 0.1  # it did start somewhere else
    assert est.converged
    identity = cold_runs[1][0]
    assert abs(est.phi_s - identity.phi_s) < 0.02
    assert abs(est.phi_h - identity.phi_h) < 0.02


@pytest.mark.slow
def test_reference_architecture_reaches_direct():
    # 8.3 M parameters: about 130 iterations here, 0.1-0.3 s each on 2 cores
    x = net_input(make_backlit(128, 128, seed=1))
    est = NetworkSolver("reference", max_iters=400).solve(x)
    ref = solve_direct(x)
    assert est.converged and est.iterations < 400
    assert abs(est.phi_s - ref.phi_s) < 0.02
    assert abs(est.phi_h - ref.phi_h) < 0.02


# --------------------------------------------------------------------------- warm start


def pan_frames(n: int = 8, step: int = 2, seed: int = 5) -> list[np.ndarray]:
    """n frames of a slow horizontal pan (step px per frame) over one back-lit scene, with noise."""
    scene = make_backlit(144, 144 + step * n, seed=seed, subject=(0.55, 0.45))
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        crop = scene[:, k * step: k * step + 144].astype(np.float64)
        crop += rng.normal(0, 2.0, crop.shape)
        frames.append(np.clip(np.rint(crop), 0, 255).astype(np.uint8))
    return frames


@pytest.fixture(scope="module")
def pan():
    frames = [net_input(f) for f in pan_frames()]
    cold = [NetworkSolver("small").solve(x) for x in frames]
    warm_solver = NetworkSolver("small")
    warm = [warm_solver.solve(x) for x in frames]
    back_solver = NetworkSolver("small")
    backward = [back_solver.solve(x) for x in reversed(frames)][::-1]
    return frames, cold, warm, backward


def test_warm_start_needs_fewer_iterations(pan):
    _, cold, warm, _ = pan
    assert all(e.converged for e in cold + warm)
    cold_mean = np.mean([e.iterations for e in cold])
    warm_mean = np.mean([e.iterations for e in warm])  # the first frame included
    assert warm[0].iterations == cold[0].iterations  # the first frame is a cold start
    # measured: about 0.47 (0.38 without the first frame)
    assert warm_mean <= 0.6 * cold_mean, (warm_mean, cold_mean)


def test_warm_start_finds_the_same_phi(pan):
    frames, cold, warm, _ = pan
    for x, c, w in zip(frames, cold, warm, strict=True):
        ref = solve_direct(x)
        assert abs(w.phi_s - ref.phi_s) < 0.02 and abs(w.phi_h - ref.phi_h) < 0.02
        assert abs(w.phi_s - c.phi_s) < 0.02 and abs(w.phi_h - c.phi_h) < 0.02


def test_warm_start_does_not_depend_on_order(pan):
    _, _, warm, backward = pan
    for f, b in zip(warm, backward, strict=True):
        assert abs(f.phi_s - b.phi_s) < 0.01
        assert abs(f.phi_h - b.phi_h) < 0.01


# --------------------------------------------------------------------------- determinism


def test_two_fresh_restorers_are_bit_identical():
    image = make_backlit(96, 128, seed=4)
    a = Restorer("excnet", seed=3).restore(image)
    b = Restorer("excnet", seed=3).restore(image)
    assert a.iterations == b.iterations > 0
    assert (a.phi_s, a.phi_h) == (b.phi_s, b.phi_h)
    assert np.array_equal(a.image, b.image)
