"""The array API: excnet.restore / Restorer on every pixel layout, manual curves, bad arrays."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_backlit

import excnet
from excnet import Curve, Restorer
from excnet.base import base_layer
from excnet.colour import apply_gain, luminance
from excnet.pipeline import gain_map

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def with_alpha(colour: np.ndarray, seed: int = 0) -> np.ndarray:
    """Append a random alpha channel (full range of the dtype)."""
    top = np.iinfo(colour.dtype).max
    alpha = np.random.default_rng(seed).integers(0, top + 1, colour.shape[:2], colour.dtype)
    if colour.ndim == 2:
        colour = colour[..., None]
    return np.concatenate([colour, alpha[..., None]], axis=2)


def grey(image: np.ndarray) -> np.ndarray:
    return image[..., 1].copy()


def shadows(image: np.ndarray, like: np.ndarray) -> float:
    """Mean colour value over the darkest 30 % of `like`'s pixels (the back-lit subject)."""
    y = luminance(like)
    mask = y < np.quantile(y, 0.3)
    n = 1 if like.ndim == 2 or like.shape[2] < 3 else 3
    colour = image if image.ndim == 2 else image[..., :n]
    return float(colour[mask].astype(np.float64).mean())


def layouts(dtype) -> dict[str, np.ndarray]:
    # 2 EV under: the adaptive default leaves the plain scene nearly as it is
    rgb = (make_backlit(48, 64, seed=1, dtype=dtype) * 0.25).astype(dtype)
    return {"rgb": rgb, "grey": grey(rgb), "rgba": with_alpha(rgb),
            "grey_alpha": with_alpha(grey(rgb)), "grey_1ch": grey(rgb)[..., None]}


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("layout", ["rgb", "grey", "rgba", "grey_alpha", "grey_1ch"])
def test_same_shape_and_dtype_out_alpha_untouched(dtype, layout):
    image = layouts(dtype)[layout]
    before = image.copy()
    res = excnet.restore(image, solver="direct")
    assert res.image.shape == image.shape
    assert res.image.dtype == image.dtype
    np.testing.assert_array_equal(image, before)  # the input is not modified
    if layout in ("rgba", "grey_alpha"):
        np.testing.assert_array_equal(res.image[..., -1], image[..., -1])
    assert shadows(res.image, image) > 1.15 * shadows(image, image)  # the subject is lifted
    assert res.iterations == 0 and res.converged
    assert set(res.seconds) == {"base", "estimate", "apply"}


def test_network_solver_restores_rgb():
    image = make_backlit(64, 64, seed=2)
    res = excnet.restore(image, solver="excnet")
    direct = excnet.restore(image, solver="direct")
    assert res.iterations > 0 and res.converged
    assert abs(res.phi_s - direct.phi_s) < 0.02 and abs(res.phi_h - direct.phi_h) < 0.02
    # a 0.02 difference in phi is at most a few grey levels
    diff = np.abs(res.image.astype(int) - direct.image.astype(int))
    assert diff.max() <= 4


def test_grey_equals_each_channel_of_a_grey_rgb():
    g = grey(make_backlit(48, 64, seed=3))
    as_rgb = np.repeat(g[..., None], 3, axis=2)
    out_grey = excnet.restore(g, solver="direct").image
    out_rgb = excnet.restore(as_rgb, solver="direct").image
    for c in range(3):
        np.testing.assert_array_equal(out_rgb[..., c], out_grey)


def test_sixteen_bit_keeps_its_precision():
    image = make_backlit(64, 96, seed=1, dtype=np.uint16)
    out = excnet.restore(image, solver="direct").image
    assert out.dtype == np.uint16
    assert len(np.unique(out)) > 256
    # and matches the 8-bit result scaled up, to within 8-bit rounding
    out8 = excnet.restore(make_backlit(64, 96, seed=1), solver="direct").image
    assert np.abs(out.astype(np.float64) / 257 - out8).max() < 2.0


def test_manual_curve_skips_estimation():
    image = make_backlit(48, 64, seed=4)
    r = Restorer("excnet", faithful=True)
    curve = Curve(0.6, 0.4, strength=0.8, highlight_scale=0.5)
    res = r.restore(image, curve)
    assert res.iterations == 0
    assert r.network.images_seen == 0  # the network was not trained
    assert res.curve == curve
    np.testing.assert_array_equal(res.image, excnet.restore(image, curve, faithful=True).image)
    exact = apply_gain(image, gain_map(base_layer(luminance(image)), curve))
    assert np.abs(res.image.astype(int) - exact).max() <= 1


def test_gain_map_is_the_curve_over_the_base():
    base = np.array([[0.0, 25.5], [127.5, 255.0]], np.float32)
    c = Curve(0.5, 0.5, highlight_scale=1.0)
    b = base.astype(np.float64) / 255
    np.testing.assert_allclose(gain_map(base, c), (c(b) + 1e-5) / (b + 1e-5), rtol=1e-6)


def test_strength_zero_is_the_identity_8_bit():
    image = make_backlit(48, 64, seed=5)
    res = excnet.restore(image, solver="direct", strength=0.0)
    assert res.curve.strength == 0.0 and res.curve.phi_s > 0.3  # estimated, but not applied
    np.testing.assert_array_equal(res.image, image)


def test_strength_zero_is_the_identity_16_bit():
    image = make_backlit(48, 64, seed=5, dtype=np.uint16)
    res = excnet.restore(image, solver="direct", strength=0.0)
    np.testing.assert_array_equal(res.image, image)


def test_strength_and_highlight_scale_are_applied():
    image = make_backlit(48, 64, seed=6)
    full = excnet.restore(image, solver="direct", adapt=False)
    half = excnet.restore(image, solver="direct", strength=0.5, highlight_scale=0.7, adapt=False)
    assert half.curve.applied == pytest.approx((0.5 * full.phi_s, 0.7 * 0.5 * full.phi_h))
    manual = excnet.restore(image, Curve(full.phi_s, full.phi_h, 0.5, 0.7))
    np.testing.assert_array_equal(half.image, manual.image)
    assert shadows(image, image) < shadows(half.image, image) < shadows(full.image, image)


def test_restorer_estimate_matches_estimate_input():
    image = make_backlit(48, 64, seed=7)
    r = Restorer("direct")
    est, base = r.estimate(image)
    assert base.shape == image.shape[:2] and base.dtype == np.float32
    res = r.restore(image)
    assert (res.phi_s, res.phi_h) == (est.phi_s, est.phi_h)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((8, 8, 3), np.float32), "dtype"),
        (np.zeros((8, 8, 3), np.float64), "dtype"),
        (np.zeros((8, 8, 3), np.int32), "dtype"),
        (np.zeros((8, 8, 3), bool), "dtype"),
        (np.zeros((8, 8, 5), np.uint8), "shape"),
        (np.zeros((2, 8, 8, 3), np.uint8), "shape"),
        (np.zeros(8, np.uint8), "shape"),
        (np.zeros((0, 8, 3), np.uint8), "no pixels"),
        (np.zeros((8, 0), np.uint8), "no pixels"),
        ([[1, 2], [3, 4]], "NumPy"),
    ],
)
def test_bad_arrays_raise_value_error(bad, message):
    with pytest.raises(ValueError, match=message):
        excnet.restore(bad, solver="direct")


def test_bad_options_raise_value_error():
    with pytest.raises(ValueError, match="solver"):
        Restorer("magic")
    with pytest.raises(ValueError, match="architecture"):
        Restorer("excnet", arch="huge")
    with pytest.raises(ValueError, match="max_iters"):
        Restorer("excnet", max_iters=0)


def test_tiny_images_work():
    for shape in [(1, 1, 3), (2, 3), (5, 7, 4)]:
        image = np.full(shape, 40, np.uint8)
        out = excnet.restore(image, solver="direct").image
        assert out.shape == image.shape and out.dtype == np.uint8
