"""The quality metrics on known cases, and cross-checked against scikit-image where it has them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make_backlit

from excnet import metrics

skimage = pytest.importorskip("skimage")
from skimage import color  # noqa: E402
from skimage.metrics import structural_similarity  # noqa: E402

# Sharma, Wu & Dalal (2005), table 1: (L1, a1, b1), (L2, a2, b2), published dE00.
SHARMA = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 3.1571, -77.2803), (50.0, 0.0, -82.7485), 2.8615),
    ((50.0, 2.8361, -74.0200), (50.0, 0.0, -82.7485), 3.4412),
    ((50.0, -1.3802, -84.2814), (50.0, 0.0, -82.7485), 1.0000),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.49, -0.001), (50.0, -2.49, 0.0009), 7.1792),
    ((50.0, 2.5, 0.0), (50.0, 0.0, -2.5), 4.3065),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((50.0, 2.5, 0.0), (61.0, -5.0, 29.0), 22.8977),
    ((50.0, 2.5, 0.0), (56.0, -27.0, -3.0), 31.9030),
    ((50.0, 2.5, 0.0), (58.0, 24.0, 15.0), 19.4535),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
]


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    truth = make_backlit(96, 128, seed=3)
    noisy = truth + np.random.default_rng(1).normal(0, 10, truth.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8), truth


def test_psnr_known_values() -> None:
    a = np.full((8, 8, 3), 100, np.uint8)
    assert metrics.psnr(a, a) == math.inf
    assert metrics.psnr(a + 1, a) == pytest.approx(20 * math.log10(255))
    b = np.full((8, 8), 1000, np.uint16)
    assert metrics.psnr(b + 65, b) == pytest.approx(20 * math.log10(65535 / 65))


def test_pairs_must_match() -> None:
    with pytest.raises(ValueError):
        metrics.psnr(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError):
        metrics.ssim(np.zeros((4, 4), np.float32), np.zeros((4, 4), np.float32))


def test_ssim_matches_scikit_image(pair) -> None:
    test, truth = pair
    ref = structural_similarity(test / 255, truth / 255, gaussian_weights=True,
                                use_sample_covariance=False, data_range=1, channel_axis=2)
    assert metrics.ssim(test, truth) == pytest.approx(ref, abs=1e-9)
    grey_ref = structural_similarity(test[..., 1] / 255, truth[..., 1] / 255,
                                     gaussian_weights=True, use_sample_covariance=False,
                                     data_range=1)
    assert metrics.ssim(test[..., 1], truth[..., 1]) == pytest.approx(grey_ref, abs=1e-9)
    assert metrics.ssim(truth, truth) == pytest.approx(1.0)
    assert metrics.ssim(test, truth) < 0.9


def test_srgb_to_lab_matches_scikit_image(pair) -> None:
    _, truth = pair
    assert np.abs(metrics.srgb_to_lab(truth) - color.rgb2lab(truth)).max() < 0.02
    white = metrics.srgb_to_lab(np.full((1, 1, 3), 255, np.uint8))[0, 0]
    assert white == pytest.approx([100, 0, 0], abs=0.01)


@pytest.mark.parametrize("lab1, lab2, expected", SHARMA)
def test_ciede2000_sharma_pairs(lab1, lab2, expected) -> None:
    assert float(metrics.ciede2000(np.array(lab1), np.array(lab2))) == pytest.approx(
        expected, abs=1e-4)
    assert float(metrics.ciede2000(np.array(lab2), np.array(lab1))) == pytest.approx(
        expected, abs=1e-4)


def test_ciede2000_matches_scikit_image() -> None:
    rng = np.random.default_rng(0)
    lab1 = np.stack([rng.uniform(0, 100, 500), rng.uniform(-80, 80, 500),
                     rng.uniform(-80, 80, 500)], axis=-1)
    lab2 = lab1 + rng.normal(0, 8, lab1.shape)
    np.testing.assert_allclose(metrics.ciede2000(lab1, lab2),
                               color.deltaE_ciede2000(lab1, lab2), atol=1e-9)


def test_delta_e_of_images(pair) -> None:
    test, truth = pair
    assert metrics.delta_e(truth, truth) == 0.0
    ref = color.deltaE_ciede2000(color.rgb2lab(test), color.rgb2lab(truth)).mean()
    assert metrics.delta_e(test, truth) == pytest.approx(ref, rel=0.01)


def test_loe_zero_for_order_preserving_change() -> None:
    # Below the grid size (no resampling) and injective, so no pair of levels merges.
    truth = make_backlit(40, 48, seed=3).astype(np.uint16) * 257
    brighter = np.rint(65535 * (truth / 65535) ** 0.5).astype(np.uint16)
    assert metrics.lightness_order_error(truth, truth) == 0.0
    assert metrics.lightness_order_error(brighter, truth) == 0.0
    assert metrics.lightness_order_error(65535 - brighter, truth) > 10


def test_loe_inverted_ramp_flips_every_pair() -> None:
    # 40 x 60 distinct grey levels, below the grid size so no resampling: N = 2400 pixels.
    ramp = (np.arange(40 * 60, dtype=np.uint16).reshape(40, 60) * 20).astype(np.uint16)
    inverted = (ramp.max() - ramp).astype(np.uint16)
    assert metrics.lightness_order_error(inverted, ramp) == 2400 - 1


def test_loe_counts_a_single_swap() -> None:
    # Swapping the two brightest of n distinct values flips exactly the pair between them:
    # 2 flips (one from each side) over n pixels.
    ramp = np.arange(10, dtype=np.uint8).reshape(2, 5) * 10
    swapped = ramp.copy()
    swapped[1, 3], swapped[1, 4] = ramp[1, 4], ramp[1, 3]
    assert metrics.lightness_order_error(swapped, ramp) == pytest.approx(2 / 10)


def test_no_reference_known_cases() -> None:
    flat = np.full((10, 10, 3), 77, np.uint8)
    nr = metrics.no_reference(flat)
    assert (nr.entropy, nr.shadow_spread, nr.clipped) == (0.0, 0.0, 0.0)
    assert nr.shadow_mean == pytest.approx(77)
    half = np.zeros((10, 10, 3), np.uint8)
    half[:, 5:] = 255
    nr = metrics.no_reference(half)
    assert nr.entropy == pytest.approx(1.0)
    assert nr.clipped == pytest.approx(0.5)
    assert nr.shadow_mean == 0.0
    # Judged on a given mask (the input's shadows), not the image's own.
    mask = np.zeros((10, 10), bool)
    mask[:, 5:] = True
    assert metrics.no_reference(half, mask).shadow_mean == pytest.approx(255)


def test_shadow_mask_takes_the_darkest_quarter() -> None:
    img = np.arange(100, dtype=np.uint8).reshape(10, 10)
    mask = metrics.shadow_mask(img)
    assert mask.sum() == 25 and mask.ravel()[:25].all()
