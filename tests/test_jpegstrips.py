"""JPEG in strips joined by restart markers: the same pixels as a one-pass encode."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from excnet.imageio import encode_image, jpegstrips


def textured(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Smooth colour blobs plus fine noise: every MCU row codes differently."""
    rng = np.random.default_rng(seed)
    h, w = shape[:2]
    small = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, *shape[2:]), dtype=np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).reshape(shape)
    return cv2.add(img, rng.integers(0, 12, shape, dtype=np.uint8))


def one_pass(monkeypatch: pytest.MonkeyPatch, pixels: np.ndarray, quality: int) -> bytes:
    with monkeypatch.context() as m:
        m.setattr(jpegstrips, "MIN_PIXELS", 1 << 62)
        return encode_image(pixels, "JPEG", quality=quality)


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def restart_markers(data: bytes) -> int:
    return sum(data.count(bytes((0xFF, 0xD0 + k))) for k in range(8))


@pytest.mark.parametrize(("shape", "dtype", "quality"), [
    ((1203, 2005, 3), np.uint8, 95),     # 4:4:4, last strip a partial MCU row
    ((1203, 2005, 3), np.uint8, 80),     # 4:2:0: 16-row MCUs
    ((1100, 2100, 3), np.uint16, 95),    # 16 bits, brought to 8 on each strip's thread
    ((1500, 1500), np.uint8, 95),        # grey
    ((1111, 1999, 4), np.uint16, 85),    # alpha dropped
])
def test_strips_decode_to_the_pixels_of_one_pass(monkeypatch: pytest.MonkeyPatch,
                                                 shape: tuple[int, ...], dtype: type,
                                                 quality: int) -> None:
    pixels = textured(shape).astype(dtype) * (257 if dtype == np.uint16 else 1)
    monkeypatch.setattr(jpegstrips, "MIN_PIXELS", 1 << 20)
    split = encode_image(pixels, "JPEG", quality=quality, threads=2)
    whole = one_pass(monkeypatch, pixels, quality)
    assert restart_markers(whole) == 0
    assert restart_markers(split) >= 2  # the strips really were joined
    assert split[:2] == b"\xff\xd8" and split[-2:] == b"\xff\xd9"
    ours = decoded(split)
    assert ours.shape == decoded(whole).shape
    np.testing.assert_array_equal(ours, decoded(whole))
    again = cv2.imdecode(np.frombuffer(split, np.uint8), cv2.IMREAD_UNCHANGED)  # libjpeg-turbo
    np.testing.assert_array_equal(again if again.ndim == 2 else again[..., ::-1], ours)
    assert abs(len(split) - len(whole)) < 1000


def test_a_jpeg_input_keeps_its_subsampling_in_strips(monkeypatch: pytest.MonkeyPatch) -> None:
    from excnet.imageio import decode_image

    src = decode_image(encode_image(textured((64, 64, 3)), "JPEG", quality=70), name="a.jpg")
    assert src.chroma_sampling == "4:2:0"
    monkeypatch.setattr(jpegstrips, "MIN_PIXELS", 1 << 20)
    pixels = textured((1216, 1024, 3), seed=3)
    split = encode_image(pixels, "JPEG", quality=95, like=src, threads=2)
    assert decode_image(split, name="b.jpg").chroma_sampling == "4:2:0"
    with monkeypatch.context() as m:
        m.setattr(jpegstrips, "MIN_PIXELS", 1 << 62)
        whole = encode_image(pixels, "JPEG", quality=95, like=src)
    np.testing.assert_array_equal(decoded(split), decoded(whole))


@pytest.mark.parametrize(("shape", "sampling"), [
    ((4000, 6000), "4:4:4"), ((4000, 6000), "4:2:0"), ((3000, 65000), "4:4:4"),
    ((3001, 4000), "4:4:0"),
])
def test_strip_rows_are_whole_mcu_rows_within_the_restart_interval_limit(
        shape: tuple[int, int], sampling: str) -> None:
    rows = jpegstrips.strip_rows(shape, sampling, threads=2)
    mcu_h, mcu_w = jpegstrips.MCU[sampling]
    assert rows % mcu_h == 0 and 0 < rows < shape[0]
    assert -(-shape[1] // mcu_w) * (rows // mcu_h) <= 0xFFFF
    assert -(-shape[0] // rows) >= 2 * jpegstrips.STRIPS_PER_THREAD


def test_small_images_and_one_thread_take_one_pass() -> None:
    assert jpegstrips.strip_rows((1000, 1000), "4:4:4", threads=8) == 1000
    assert jpegstrips.strip_rows((4000, 6000), "4:4:4", threads=1) == 4000


def test_join_refuses_what_is_not_an_encoder_jpeg() -> None:
    with pytest.raises(ValueError, match="not a JPEG"):
        jpegstrips.join([b"\xff\xd8\x00\x00garbage"], 10, 1)


def test_one_thread_encodes_in_one_pass() -> None:
    pixels = textured((1500, 1500, 3))
    assert restart_markers(encode_image(pixels, "JPEG", threads=1)) == 0
    assert restart_markers(encode_image(pixels, "JPEG", threads=2)) >= 2


def test_a_batch_on_busy_cores_encodes_each_file_on_one() -> None:
    from excnet.batch import cores_per_file, default_workers

    assert cores_per_file(1) == default_workers()
    assert cores_per_file(default_workers()) == 1
    assert cores_per_file(4 * default_workers()) == 1
