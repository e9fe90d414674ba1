"""The fast paths give the same phi and nearly the same pixels as the exact ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_backlit

import excnet
from excnet.base import (
    base_layer,
    fast_base_layer,
    fast_guided_filter,
    guided_filter,
    network_input,
    pre_shrink,
    radius_for,
)
from excnet.colour import apply_gain, luminance
from excnet.curve import Curve
from excnet.gainmap import GainMap
from excnet.loss import block_means
from excnet.pipeline import DEFAULT_SOLVER, gain_map
from excnet.solvers import BlockStats, NetworkSolver, solve_direct
from excnet.tone import IMPROVED


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    top = np.iinfo(a.dtype).max
    d = (a.astype(np.float64) - b.astype(np.float64)) / top
    return float(10 * np.log10(1 / max(np.mean(d * d), 1e-20)))


@pytest.mark.parametrize("radius", [5, 12, 40])
def test_fast_guided_filter_is_close_to_the_exact_one(radius):
    y = luminance(make_backlit(300, 400, seed=2))
    exact = guided_filter(y, radius)
    fast = fast_guided_filter(y, radius)
    assert fast.shape == y.shape and fast.dtype == np.float32
    err = np.abs(fast - exact)
    assert err.mean() < 0.3  # grey levels on 0..255
    assert err.max() < 4.0
    if radius <= 8:  # small radii run the exact filter
        np.testing.assert_array_equal(fast, exact)


@pytest.mark.parametrize(("shape", "cell"), [((1000, 1500), 1), ((1024, 700), 1),
                                           ((1080, 1920), 2), ((3000, 4000), 4),
                                           ((4000, 6000), 4), ((9000, 9000), 8)])
def test_pre_shrink_leaves_four_cells_per_network_input_pixel(shape, cell):
    assert pre_shrink(shape) == cell


def test_network_input_of_a_large_image_is_near_the_one_step_area_mean():
    import cv2

    base = luminance(make_backlit(1536, 2048, seed=5))
    exact = network_input(base, exact=True)
    one_step = np.clip(cv2.resize(base, (128, 128), interpolation=cv2.INTER_AREA) / 255, 0, 1)
    np.testing.assert_array_equal(exact, one_step)
    fast = network_input(base)
    err = np.abs(fast - exact) * 255
    assert 0 < err.max() < 2.5 and err.mean() < 0.1  # levels; the cells do change it
    small = base[:900, :1200]
    np.testing.assert_array_equal(network_input(small), network_input(small, exact=True))


def test_the_faithful_rendering_keeps_the_one_step_network_input(monkeypatch):
    seen = []
    real = excnet.pipeline.network_input
    monkeypatch.setattr(excnet.pipeline, "network_input",
                        lambda base, exact=False: seen.append(exact) or real(base, exact=exact))
    img = make_backlit(64, 80, seed=1)
    excnet.restore(img, faithful=True)
    excnet.restore(img, exact=True)
    excnet.restore(img)
    assert seen == [True, True, False]


def test_fast_guided_filter_is_not_the_identity_or_a_plain_blur():
    y = luminance(make_backlit(300, 400, seed=3))
    fast = fast_guided_filter(y, 40)
    assert np.abs(fast - y).mean() > 1.0  # it does smooth
    blur = cv2_box(y, 40)
    assert np.abs(fast - guided_filter(y, 40)).mean() < np.abs(blur - guided_filter(y, 40)).mean()


def cv2_box(y: np.ndarray, r: int) -> np.ndarray:
    import cv2

    return cv2.blur(y, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT)


def test_fast_base_layer_gives_the_same_phi():
    y = luminance(make_backlit(480, 640, seed=4))
    exact = solve_direct(network_input(base_layer(y)))
    fast = solve_direct(network_input(fast_base_layer(y)))
    assert abs(fast.phi_s - exact.phi_s) < 0.01
    assert abs(fast.phi_h - exact.phi_h) < 0.01


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("layout", ["rgb", "rgba", "grey", "grey_alpha"])
def test_restorer_fast_path_matches_exact_path(dtype, layout):
    rgb = make_backlit(360, 480, seed=5, dtype=dtype) // 4  # dark: the default lifts it
    alpha = np.linspace(0, np.iinfo(dtype).max, 480).astype(dtype)[None].repeat(360, 0)
    pixels = {"rgb": rgb, "rgba": np.dstack([rgb, alpha]), "grey": rgb[..., 1],
              "grey_alpha": np.dstack([rgb[..., 1], alpha])}[layout]
    exact = excnet.Restorer(exact=True).restore(pixels)
    fast = excnet.Restorer().restore(pixels)
    assert fast.image.shape == pixels.shape and fast.image.dtype == pixels.dtype
    assert abs(fast.phi_s - exact.phi_s) < 0.01 and abs(fast.phi_h - exact.phi_h) < 0.01
    assert psnr(fast.image, exact.image) >= 45
    if layout in ("rgba", "grey_alpha"):
        np.testing.assert_array_equal(fast.image[..., -1], alpha)
    assert np.abs(fast.image.astype(float) - pixels).mean() > 0.01 * np.iinfo(dtype).max


def test_exact_option_is_the_reference_pipeline():
    pixels = make_backlit(200, 260, seed=6)
    res = excnet.Restorer(exact=True, faithful=True).restore(pixels)
    base = base_layer(luminance(pixels))
    est = solve_direct(network_input(base))
    expected = apply_gain(pixels, gain_map(base, res.curve))
    assert (res.phi_s, res.phi_h) == pytest.approx((est.phi_s, est.phi_h), abs=1e-9)
    np.testing.assert_array_equal(res.image, expected)


def test_default_solver_is_direct_and_reaches_the_fixed_point():
    assert DEFAULT_SOLVER == "direct"
    pixels = make_backlit(240, 320, seed=7)
    res = excnet.restore(pixels)
    assert res.iterations == 0 and res.converged
    est = solve_direct(network_input(fast_base_layer(luminance(pixels), IMPROVED.eps)))
    assert (res.phi_s, res.phi_h) == pytest.approx((est.phi_s, est.phi_h), abs=1e-9)


@pytest.mark.parametrize("curve", [Curve(0.9, 0.4), Curve(-0.3, 1.5, strength=1.4),
                                   Curve(2.5, -0.5, highlight_scale=1.0)])
def test_gain_table_matches_the_curve(curve):
    rng = np.random.default_rng(0)
    base = np.concatenate([rng.uniform(0, 255, 20000), [0.0, 0.004, 0.5, 254.99, 255.0]])
    base = base.astype(np.float32).reshape(5, -1)
    exact = gain_map(base, curve)
    fast = GainMap.of(base, curve)[...]
    assert fast.dtype == np.float32 and fast.shape == base.shape
    # One 16-bit step of the base layer moves each output level by far less than one.
    assert np.max(np.abs(fast - exact) * base) < 0.05


def _apply_gain_numpy(pixels: np.ndarray, gain: np.ndarray) -> np.ndarray:
    top = np.iinfo(pixels.dtype).max
    out = pixels.copy()
    n = 1 if pixels.ndim == 2 or pixels.shape[2] in (1, 2) else 3
    g = gain if pixels.ndim == 2 else gain[..., None]
    values = pixels if pixels.ndim == 2 else pixels[..., :n]
    res = np.rint(np.clip(values * g.astype(np.float32), 0, top)).astype(pixels.dtype)
    if pixels.ndim == 2:
        out[:] = res
    else:
        out[..., :n] = res
    return out


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [0, 1, 2, 3, 4])
def test_apply_gain_equals_the_numpy_formula(dtype, channels):
    rng = np.random.default_rng(1)
    rgb = make_backlit(70, 90, seed=1, dtype=dtype)
    pixels = {0: rgb[..., 0], 1: rgb[..., :1], 2: rgb[..., :2], 3: rgb,
              4: np.dstack([rgb, rgb[..., :1]])}[channels]
    gain = rng.uniform(-0.5, 4.0, (70, 90)).astype(np.float32)  # clips at both ends
    out = apply_gain(pixels, gain)
    assert out.dtype == pixels.dtype and out.shape == pixels.shape
    np.testing.assert_array_equal(out, _apply_gain_numpy(pixels, gain))


def test_apply_gain_on_a_non_contiguous_view():
    pixels = make_backlit(64, 80, seed=2)[::-1, ::2]
    gain = np.full(pixels.shape[:2], 1.5, np.float32)
    np.testing.assert_array_equal(apply_gain(pixels, gain), _apply_gain_numpy(pixels, gain))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_luminance_is_the_yiq_y(dtype):
    pixels = make_backlit(1100, 300, seed=3, dtype=dtype)  # several strips
    k = 255.0 / np.iinfo(dtype).max
    expected = (pixels[..., :3].astype(np.float64) * [0.299, 0.587, 0.114]).sum(-1) * k
    np.testing.assert_allclose(luminance(pixels), expected, atol=2e-3)
    rgba = np.dstack([pixels, pixels[..., :1]])
    np.testing.assert_allclose(luminance(rgba), expected, atol=2e-3)


def test_block_stats_in_numpy_equal_the_loss_block_means():
    x = np.random.default_rng(2).uniform(0, 1, (128, 128))
    st = BlockStats.of(x)
    expected = block_means(torch.from_numpy(x)[None, None])[0, 0].numpy().ravel()
    np.testing.assert_allclose(st.b, expected, atol=1e-12)
    assert st.shape == (32, 32)


@pytest.mark.slow
def test_small_network_converges_to_the_direct_fixed_point():
    x = network_input(base_layer(luminance(make_backlit(192, 256, seed=8))))
    direct = solve_direct(x)
    est = NetworkSolver("small", max_iters=600).solve(x)
    assert est.converged
    assert abs(est.phi_s - direct.phi_s) < 0.01 and abs(est.phi_h - direct.phi_h) < 0.01


@pytest.mark.slow
def test_warm_network_needs_fewer_iterations():
    solver = NetworkSolver("small", max_iters=600)
    xs = [network_input(base_layer(luminance(make_backlit(192, 256, seed=s)))) for s in (8, 9)]
    first = solver.solve(xs[0])
    second = solver.solve(xs[1])
    assert second.iterations < first.iterations


@pytest.mark.slow
def test_reference_network_converges_to_the_direct_fixed_point():
    x = network_input(base_layer(luminance(make_backlit(192, 256, seed=8))))
    direct = solve_direct(x)
    est = NetworkSolver("reference", max_iters=300).solve(x)
    assert abs(est.phi_s - direct.phi_s) < 0.01 and abs(est.phi_h - direct.phi_h) < 0.01


def test_radius_for_a_12_megapixel_photo():
    assert radius_for((3000, 4000)) == 120
