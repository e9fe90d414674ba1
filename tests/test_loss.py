"""The block loss E and its convex twin G: hand-computed values, pair counting, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from excnet.curve import s_curve
from excnet.loss import LAMBDA, block_energy, block_loss, block_means, convex_loss


def blocky(means: list[list[float]], wiggle: float = 0.0) -> torch.Tensor:
    """(1, 1, 4h, 4w) float64 image whose 4x4 block means are `means`.

    `wiggle` adds a +/- pattern that sums to zero in each block, so only the means matter.
    """
    m = torch.tensor(means, dtype=torch.float64)
    img = m.repeat_interleave(4, 0).repeat_interleave(4, 1)
    pattern = torch.tensor([[1.0, -1.0] * 2, [-1.0, 1.0] * 2] * 2, dtype=torch.float64)
    img = img + wiggle * pattern.repeat(m.shape[0], m.shape[1])
    return img[None, None]


def test_lambda_is_the_papers():
    assert LAMBDA == 12.0


def test_block_means_of_8x8_are_2x2():
    x = blocky([[0.2, 0.4], [0.6, 0.8]], wiggle=0.05)
    assert x.shape == (1, 1, 8, 8)
    torch.testing.assert_close(block_means(x),
                               torch.tensor([[[[0.2, 0.4], [0.6, 0.8]]]], dtype=torch.float64))


def test_block_loss_hand_computed_8x8():
    # B  = [[0.2, 0.4 ], [0.6, 0.8]]          (input block means)
    # B' = [[0.3, 0.45], [0.7, 0.9]]          (output block means)
    # unary sign(B' - 0.5)(B' - B): -0.1, -0.05, +0.1, +0.1            -> sum 0.05
    # d = B' - B = [[0.1, 0.05], [0.1, 0.1]]
    # vertical pairs:   (0.1 - 0.1)^2 = 0, (0.1 - 0.05)^2 = 0.0025
    # horizontal pairs: (0.05 - 0.1)^2 = 0.0025, (0.1 - 0.1)^2 = 0        -> sum 0.005
    # E = 0.05 + 12 * 0.005 = 0.11
    # G = |B' - 0.5| summed (0.2 + 0.05 + 0.2 + 0.4 = 0.85) + 0.06 = 0.91
    x = blocky([[0.2, 0.4], [0.6, 0.8]], wiggle=0.03)
    y = blocky([[0.3, 0.45], [0.7, 0.9]], wiggle=0.01)
    e = block_loss(x, y)
    g = convex_loss(x, y)
    assert e.shape == (1,)
    assert float(e[0]) == pytest.approx(0.11, abs=1e-12)
    assert float(g[0]) == pytest.approx(0.91, abs=1e-12)


def test_block_loss_sign_is_zero_at_half():
    # B' = 0.5 exactly contributes nothing to the unary term (sign(0) = 0).
    x = blocky([[0.2, 0.2], [0.2, 0.2]])
    y = blocky([[0.5, 0.2], [0.2, 0.2]])
    # unary: 0; pairs: d = [[0.3, 0], [0, 0]] -> two pairs of 0.09 -> E = 12 * 0.18 = 2.16
    assert float(block_loss(x, y)[0]) == pytest.approx(2.16, abs=1e-12)


def test_pairs_are_counted_once():
    # One interior block of a 4 x 4 grid changes by delta: it has 4 neighbours, so the pair
    # term is 4 delta^2 (8 delta^2 if pairs were counted both ways, 2 if only right/down).
    means = [[0.1] * 4 for _ in range(4)]
    x = blocky(means)
    means[1][2] = 0.1 + 0.25
    y = blocky(means)
    pair = block_loss(x, y, lam=1.0) - block_loss(x, y, lam=0.0)
    assert float(pair[0]) == pytest.approx(4 * 0.25**2, abs=1e-12)
    # a corner block has 2 neighbours
    means = [[0.1] * 4 for _ in range(4)]
    means[3][3] = 0.1 + 0.25
    pair = block_loss(x, blocky(means), lam=1.0) - block_loss(x, blocky(means), lam=0.0)
    assert float(pair[0]) == pytest.approx(2 * 0.25**2, abs=1e-12)


def test_block_energy_batch_is_per_image():
    bx = torch.rand(3, 1, 5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    by = torch.rand(3, 1, 5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    batch = block_energy(bx, by)
    assert batch.shape == (3,)
    for i in range(3):
        assert float(batch[i]) == pytest.approx(float(block_energy(bx[i:i + 1], by[i:i + 1])[0]))


def test_identity_output_costs_only_the_distance_to_half():
    x = torch.rand(1, 1, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    # y = x: no pair term, E = sum sign(B - 0.5) * 0 = 0, G = sum |B - 0.5|
    assert float(block_loss(x, x)[0]) == 0.0
    assert float(convex_loss(x, x)[0]) == pytest.approx(
        float((block_means(x) - 0.5).abs().sum()), abs=1e-12)


@pytest.mark.parametrize("phi", [(0.3, 0.1), (0.9, 0.8), (-0.2, 0.5), (1.5, -0.3)])
def test_block_and_convex_loss_gradients_agree(phi):
    rng = np.random.default_rng(7)
    # a smooth-ish dark/bright image like a base layer, 128 x 128
    x = np.clip(rng.random((32, 32)).repeat(4, 0).repeat(4, 1) * 0.9 + 0.05
                + 0.02 * rng.standard_normal((128, 128)), 0, 1)
    xt = torch.from_numpy(x)[None, None]
    grads = []
    for loss_fn in (block_loss, convex_loss):
        p = torch.tensor(phi, dtype=torch.float64, requires_grad=True)
        loss_fn(xt, s_curve(xt, p[0], p[1]))[0].backward()
        grads.append(p.grad)
    assert grads[0].abs().max() > 1e-3  # a real, non-zero gradient
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-10)


def test_convex_loss_is_convex_along_a_line():
    x = torch.rand(1, 1, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    a, b = torch.tensor([-0.5, 1.2]), torch.tensor([1.5, -0.4])

    def g(t: float) -> float:
        p = (1 - t) * a + t * b
        return float(convex_loss(x, s_curve(x, p[0], p[1]))[0])

    ts = np.linspace(0, 1, 41)
    vals = np.array([g(t) for t in ts])
    second = vals[:-2] - 2 * vals[1:-1] + vals[2:]
    assert np.all(second >= -1e-9)
