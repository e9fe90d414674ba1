"""Tiny and one-pixel-wide images: every rendering keeps their shape and lifts them as it lifts a
larger image of the same content (OpenCV 5 reads a scalar argument as an array when the array
is one column of at most four rows, which broke these shapes)."""

from __future__ import annotations

import numpy as np
import pytest

import excnet
from excnet import Curve
from excnet.curve import gain_lut
from excnet.gainmap import LUT_SIZE, GainMap

SHAPES = [(1, 1), (1, 1, 3), (2, 1), (4, 1, 3), (3, 1, 4), (1, 4), (1, 7, 3), (2, 3), (5, 7, 4)]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("denoise", ["off", "auto", "strong"])
def test_flat_tiny_images_get_the_large_images_level(shape, dtype, denoise):
    level = 40 * (np.iinfo(dtype).max // 255)
    image = np.full(shape, level, dtype)
    big = np.full((32, 32) + shape[2:], level, dtype)
    out = excnet.restore(image, solver="direct", denoise=denoise).image
    ref = excnet.restore(big, solver="direct", denoise=denoise).image
    assert out.shape == image.shape and out.dtype == dtype
    # a flat image has one base-layer value, so one gain: every pixel lands on the large
    # image's value (alpha, the last of 2 or 4 channels, passes through)
    np.testing.assert_array_equal(out, np.broadcast_to(ref[0, 0], shape))


@pytest.mark.parametrize("shape", [(1, 1), (2, 1), (4, 1), (1, 4), (3, 5)], ids=str)
def test_gain_map_reads_one_column(shape):
    curve = Curve(0.6, 0.1)
    base = np.linspace(3.0, 250.0, int(np.prod(shape)), dtype=np.float32).reshape(shape)
    table = gain_lut(curve, LUT_SIZE)
    expected = table[np.rint(base * ((LUT_SIZE - 1) / 255.0)).astype(np.int64)]
    got = GainMap(base, table)[...]
    assert got.shape == shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=0)


def test_a_dark_flat_tiny_image_is_lifted():
    out = excnet.restore(np.full((4, 1, 3), 30, np.uint8), solver="direct").image
    assert out.min() > 30
