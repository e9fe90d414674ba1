"""The fast JPEG decode (OpenCV straight into the array) gives Pillow's pixels, keeps the
metadata semantics and still refuses a truncated file."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import make_backlit
from PIL import Image

from excnet.imageio import ImageError, decode_image


def _jpeg(pixels: np.ndarray, **options) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", **options)
    return buf.getvalue()


def _pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.array(im)


PHOTO = make_backlit(301, 437, seed=3)


@pytest.mark.parametrize("options", [
    {"quality": 95, "subsampling": 0}, {"quality": 90, "subsampling": 1},
    {"quality": 75, "subsampling": 2}, {"quality": 85, "progressive": True},
])
def test_colour_jpeg_pixels_are_pillows(options):
    data = _jpeg(PHOTO, **options)
    np.testing.assert_array_equal(decode_image(data).pixels, _pillow(data))


def test_grey_jpeg_pixels_are_pillows():
    data = _jpeg(PHOTO[..., 1])
    img = decode_image(data)
    assert img.pixels.ndim == 2
    np.testing.assert_array_equal(img.pixels, _pillow(data))


def test_orientation_is_applied_once_and_metadata_kept():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    exif[0x010F] = "excnet-test"
    icc = b"\0" * 128
    data = _jpeg(PHOTO, quality=95, exif=exif.tobytes(), icc_profile=icc)
    img = decode_image(data)
    np.testing.assert_array_equal(img.pixels, np.rot90(_pillow(data), k=-1))
    assert img.icc_profile == icc
    assert b"excnet-test" in img.exif


def test_a_truncated_jpeg_is_still_refused():
    data = _jpeg(PHOTO, quality=95)
    with pytest.raises(ImageError, match="truncated"):
        decode_image(data[: len(data) * 2 // 3], name="cut.jpg")


def test_trailing_bytes_after_the_image_decode_as_before():
    data = _jpeg(PHOTO, quality=95) + b"camera trailer"
    np.testing.assert_array_equal(decode_image(data).pixels, _pillow(data))
