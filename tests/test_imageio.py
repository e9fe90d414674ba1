"""Tests for excnet.imageio: round trips, metadata, bad inputs and atomic writes."""

from __future__ import annotations

import io
import os
import struct
import zlib
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms, JpegImagePlugin

from excnet.imageio import (
    ImageError,
    ImageFile,
    decode_image,
    encode_image,
    read_image,
    write_image,
    writing,
)

# --------------------------------------------------------------------------- helpers


def smooth_rgb(h: int = 48, w: int = 64) -> np.ndarray:
    """A smooth colour image (lossy codecs reproduce it closely)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 40 + 170 * x / (w - 1)
    g = 60 + 150 * y / (h - 1)
    b = 128 + 60 * np.sin(x / w * np.pi) * np.cos(y / h * np.pi)
    return np.stack([r, g, b], axis=-1).round().astype(np.uint8)


def noise(shape: tuple[int, ...], dtype: type = np.uint8, seed: int = 0) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.random.default_rng(seed).integers(0, int(info.max) + 1, shape, dtype=dtype)


@cache
def srgb_icc() -> bytes:
    """One sRGB profile for the whole run: its header holds the second it was made, so two
    made a second apart differ (a comparison across a clock tick failed once)."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def exif_bytes(orientation: int | None = None, **extra: str) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = extra.get("make", "Canon")
    exif[0x0110] = extra.get("model", "EOS 5D")
    if orientation is not None:
        exif[0x0112] = orientation
    exif[0x8769] = {0x9003: "2021:06:01 18:30:00"}  # DateTimeOriginal in the Exif sub-IFD
    return exif.tobytes()


def parse_exif(raw: bytes | None) -> Image.Exif:
    exif = Image.Exif()
    assert raw is not None
    exif.load(raw)
    return exif


def with_png_chunk(png: bytes, kind: bytes, payload: bytes) -> bytes:
    """Insert a chunk right after IHDR."""
    chunk = struct.pack(">I", len(payload)) + kind + payload
    chunk += struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    return png[:33] + chunk + png[33:]


def png_with_size(width: int, height: int) -> bytes:
    """A tiny valid PNG whose IHDR then claims another size (CRC fixed)."""
    png = encode_image(np.zeros((4, 4, 3), np.uint8), "PNG")
    ihdr = bytearray(png[12:29])
    struct.pack_into(">II", ihdr, 4, width, height)
    return png[:12] + bytes(ihdr) + struct.pack(">I", zlib.crc32(bytes(ihdr))) + png[33:]


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    ("shape", "fmt"),
    [
        ((24, 36, 3), "PNG"),
        ((24, 36), "PNG"),
        ((24, 36, 4), "PNG"),
        ((24, 36, 2), "PNG"),
        ((24, 36, 3), "TIFF"),
        ((24, 36), "TIFF"),
        ((24, 36, 4), "TIFF"),
    ],
)
def test_lossless_round_trip_8bit(tmp_path: Path, shape: tuple[int, ...], fmt: str) -> None:
    pixels = noise(shape)
    target = tmp_path / f"img.{fmt.lower()}"
    write_image(target, pixels)
    got = read_image(target)
    assert got.format == fmt
    assert got.bit_depth == 8
    assert got.pixels.dtype == np.uint8
    assert got.pixels.shape == shape  # grey stays 2-D, alpha channels are kept
    np.testing.assert_array_equal(got.pixels, pixels)
    assert got.pixels.flags.writeable


@pytest.mark.parametrize("shape", [(20, 30, 3), (20, 30), (20, 30, 4), (20, 30, 2)])
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_lossless_round_trip_16bit(tmp_path: Path, shape: tuple[int, ...], suffix: str) -> None:
    pixels = noise(shape, np.uint16, seed=3)
    target = tmp_path / f"deep{suffix}"
    write_image(target, pixels)
    got = read_image(target)
    assert got.bit_depth == 16
    assert got.pixels.dtype == np.uint16
    assert got.pixels.shape == shape
    np.testing.assert_array_equal(got.pixels, pixels)


@pytest.mark.parametrize("suffix", [".png", ".tiff"])
def test_16bit_keeps_more_than_256_levels(tmp_path: Path, suffix: str) -> None:
    ramp = np.linspace(0, 65535, 64 * 96).round().astype(np.uint16).reshape(64, 96)
    rgb = np.stack([ramp, ramp[::-1], ramp // 3], axis=-1)
    target = tmp_path / f"ramp{suffix}"
    write_image(target, rgb)
    got = read_image(target).pixels
    np.testing.assert_array_equal(got, rgb)
    assert len(np.unique(got[..., 0])) == 64 * 96  # far beyond the 256 of 8 bits
    assert np.any(got % 257 != 0)


@pytest.mark.parametrize("shape", [(300, 200, 3), (300, 200, 4), (300, 200)])
def test_16bit_tiff_is_deflated_after_differencing_in_strips(shape: tuple[int, ...]) -> None:
    """A RAW file's default output: deflate with predictor 2 in 64-row strips (compressed on
    several cores, the same bytes on one), read back exactly by tifffile and OpenCV."""
    ramp = np.linspace(0, 60000, shape[0] * shape[1]).reshape(shape[:2])
    pixels = (ramp[..., None] if len(shape) == 3 else ramp) + noise(shape, np.uint16, seed=4) % 64
    pixels = pixels.astype(np.uint16)
    one = encode_image(pixels, "TIFF", threads=1)
    assert encode_image(pixels, "TIFF", threads=2) == one
    with tifffile.TiffFile(io.BytesIO(one)) as tif:
        page = tif.pages[0]
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert page.predictor == tifffile.PREDICTOR.HORIZONTAL
        assert page.rowsperstrip == writing.TIFF_STRIP_ROWS and len(page.dataoffsets) == 5
        np.testing.assert_array_equal(page.asarray(), pixels)
    np.testing.assert_array_equal(decode_image(one, name="x.tif").pixels, pixels)
    plain = io.BytesIO()  # the same deflate without differencing
    tifffile.imwrite(plain, pixels, compression="zlib", compressionargs={"level": 1},
                     photometric="rgb" if len(shape) == 3 else "minisblack")
    assert len(one) < len(plain.getvalue())


def test_16bit_png_is_deflated_in_pieces_that_join_into_one_stream(monkeypatch) -> None:
    """A 16-bit PNG's image data is compressed in pieces on several cores (pigz's way): one
    valid zlib stream, the same bytes on one thread or two, read back exactly."""
    monkeypatch.setattr(writing, "DEFLATE_PIECE", 5000)  # 13 pieces for this image
    ramp = np.linspace(0, 60000, 90 * 70).reshape(90, 70)
    pixels = (ramp[..., None] + noise((90, 70, 3), np.uint16, seed=6) % 300).astype(np.uint16)
    one = encode_image(pixels, "PNG", threads=1)
    assert encode_image(pixels, "PNG", threads=2) == one
    np.testing.assert_array_equal(decode_image(one, name="p.png").pixels, pixels)
    with Image.open(io.BytesIO(one)) as im:  # Pillow inflates the stream on its own
        im.load()
    idat = one[one.index(b"IDAT") + 4:one.index(b"IEND") - 8]
    rows = zlib.decompress(idat)  # checks the header and the Adler-32 of the whole
    assert len(rows) == 90 * (70 * 6 + 1)
    data = np.frombuffer(rows, np.uint8)
    for level in (1, 6, 9):
        assert zlib.decompress(writing._deflate(data, level, 2)) == rows


def test_16bit_rgb_written_by_opencv_reads_as_rgb(tmp_path: Path) -> None:
    rgb = np.zeros((8, 10, 3), np.uint16)
    rgb[..., 0] = 60000  # red
    rgb[..., 2] = 1234
    ok, buf = cv2.imencode(".png", rgb[..., ::-1])  # OpenCV stores BGR
    assert ok
    (tmp_path / "cv.png").write_bytes(buf.tobytes())
    got = read_image(tmp_path / "cv.png").pixels
    np.testing.assert_array_equal(got, rgb)


@pytest.mark.parametrize("compression", ["lzw", "packbits", "zstd", "adobe_deflate"])
@pytest.mark.parametrize("shape", [(40, 30, 3), (40, 30)])
def test_16bit_tiff_in_any_compression_reads_exactly(shape: tuple[int, ...],
                                                     compression: str) -> None:
    """Lightroom and Photoshop export 16-bit TIFFs with LZW (with differencing) or ZIP; those
    decode through imagecodecs, never as "corrupt" and never reduced to 8 bits."""
    pixels = noise(shape, np.uint16, seed=5)
    buf = io.BytesIO()
    tifffile.imwrite(buf, pixels, compression=compression, tile=(16, 16) if len(shape) == 2
                     else None, predictor=compression in ("lzw", "adobe_deflate"))
    got = decode_image(buf.getvalue(), name="export.tif")
    assert got.format == "TIFF" and got.bit_depth == 16
    np.testing.assert_array_equal(got.pixels, pixels)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_tiff_reads_as_16_bits(dtype: type) -> None:
    """Float TIFF samples are 0..1 (above 1 clipped, NaN as 0), rounded to 16 bits."""
    values = np.array([0.0, 0.25, 0.5, 1.0, 1.5, -0.2, np.nan, 2 / 65535])
    rgb = np.resize(values, (6, 8, 3)).astype(dtype)
    buf = io.BytesIO()
    tifffile.imwrite(buf, rgb, photometric="rgb")
    got = decode_image(buf.getvalue(), name="hdr.tif")
    assert got.bit_depth == 16
    want = np.round(np.clip(np.nan_to_num(rgb.astype(np.float64)), 0, 1) * 65535)
    np.testing.assert_array_equal(got.pixels, want.astype(np.uint16))
    grey = decode_image(_tiff_bytes(rgb[..., 1].copy()), name="g.tif").pixels  # Pillow's "F"
    np.testing.assert_array_equal(grey, want[..., 1].astype(np.uint16))


def test_32bit_integer_tiff_is_scaled_to_16_bits() -> None:
    rgb = np.array([0, 65537, 2**31, 2**32 - 1], np.uint32).repeat(6).reshape(4, 2, 3)
    got = decode_image(_tiff_bytes(rgb, photometric="rgb"), name="u32.tif")
    assert got.bit_depth == 16
    np.testing.assert_array_equal(got.pixels[:, 0, 0], [0, 1, 32768, 65535])


def test_tiff_layout_we_cannot_take_is_named() -> None:
    signed = noise((10, 12, 3), np.uint16).astype(np.int16)
    with pytest.raises(ImageError) as info:
        decode_image(_tiff_bytes(signed, photometric="rgb"), name="s.tif")
    assert str(info.value) == ("s.tif: unsupported TIFF layout "
                               "(3 sample(s) of 16-bit signed per pixel, photometric 2)")


def _tiff_bytes(arr: np.ndarray, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, **kwargs)
    return buf.getvalue()


def test_16bit_to_8bit_formats_divides_by_257() -> None:
    flat = np.full((16, 16, 3), 257 * 100 + 100, np.uint16)  # 100.39 -> 100
    flat[..., 1] = 257 * 200 + 200  # 200.78 -> 201
    for fmt in ("JPEG", "WEBP"):
        got = decode_image(encode_image(flat, fmt, quality=100)).pixels
        assert got.dtype == np.uint8
        assert abs(int(got[8, 8, 0]) - 100) <= 1
        assert abs(int(got[8, 8, 1]) - 201) <= 1


def test_jpeg_round_trip_is_close_and_quality_changes_size() -> None:
    img = smooth_rgb(96, 128)
    img = np.clip(img.astype(int) + noise(img.shape, seed=1) % 9 - 4, 0, 255).astype(np.uint8)
    low = encode_image(img, "JPEG", quality=40)
    high = encode_image(img, "JPEG", quality=95)
    assert len(low) < 0.7 * len(high)
    got = decode_image(high, name="q.jpg")
    assert got.format == "JPEG"
    assert got.pixels.shape == img.shape
    assert np.abs(got.pixels.astype(int) - img).mean() < 2.0


def test_jpeg_drops_alpha_and_keeps_grey() -> None:
    rgba = np.dstack([smooth_rgb(), np.full((48, 64), 7, np.uint8)])
    got = decode_image(encode_image(rgba, "JPEG")).pixels
    assert got.shape == (48, 64, 3)
    assert np.abs(got.astype(int) - rgba[..., :3]).mean() < 2.0
    grey = smooth_rgb()[..., 1]
    got = decode_image(encode_image(grey, "JPEG")).pixels
    assert got.shape == grey.shape


@pytest.mark.parametrize("fmt", ["WEBP", "HEIC"])
def test_webp_and_heic_round_trip(tmp_path: Path, fmt: str) -> None:
    img = smooth_rgb(64, 96)
    target = tmp_path / f"img.{fmt.lower()}"
    write_image(target, img, quality=90)
    got = read_image(target)
    assert got.format == fmt
    assert got.pixels.shape == img.shape
    assert got.pixels.dtype == np.uint8
    assert np.abs(got.pixels.astype(int) - img).mean() < 3.0


@pytest.mark.parametrize("shape", [(48, 64, 3), (48, 64, 4), (48, 64)])
def test_16bit_pixels_make_a_10bit_heic_that_reads_back_deep(shape: tuple[int, ...]) -> None:
    """Cameras and phones write 10-bit HEIF for latitude: it is read as 16 bits (more than
    256 levels, on the full scale) and 16-bit pixels are written as 10-bit HEIC."""
    import pillow_heif

    ramp = np.linspace(0, 65535, 48 * 64).reshape(48, 64)
    pixels = np.stack([ramp, ramp[::-1], np.full_like(ramp, 30000), np.full_like(ramp, 50000)],
                      axis=-1)[..., : shape[2]] if len(shape) == 3 else ramp
    pixels = pixels.round().astype(np.uint16)
    data = encode_image(pixels, "HEIC", quality=100, like=ImageFile(
        pixels, "PNG", icc_profile=srgb_icc(), bit_depth=16))
    assert pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=False).info[
        "bit_depth"] == 10
    got = decode_image(data, name="deep.heic")
    assert got.format == "HEIC" and got.bit_depth == 16 and got.icc_profile == srgb_icc()
    want = np.repeat(pixels[..., None], 3, axis=2) if len(shape) == 2 else pixels
    assert got.pixels.shape == want.shape
    assert len(np.unique(got.pixels[..., 0])) > 600  # 8 bits would give at most 256
    assert np.abs(got.pixels.astype(float) - want).mean() < 4 * 257  # HEVC's 4:2:0 chroma
    assert got.pixels.max() > 65000  # full scale, not 10 bits at the top of 16
    shadow = np.tile(np.linspace(0, 20 * 257, 64), (48, 1)).round().astype(np.uint16)
    lifted = decode_image(encode_image(shadow, "HEIC", quality=95)).pixels[..., 1]
    assert len(np.unique(lifted[20])) > 40  # 21 levels in 8 bits; 10 bits keep the steps


def test_webp_keeps_alpha() -> None:
    rgba = np.dstack([smooth_rgb(), np.full((48, 64), 200, np.uint8)])
    rgba[:10, :10, 3] = 0
    got = decode_image(encode_image(rgba, "WEBP", quality=90)).pixels
    assert got.shape == rgba.shape
    assert np.abs(got[..., 3].astype(int) - rgba[..., 3]).max() <= 2


def test_mode_conversions(tmp_path: Path) -> None:
    rgb = smooth_rgb(16, 20)
    pal = Image.fromarray(rgb).quantize(16)
    pal.save(tmp_path / "pal.png")
    got = read_image(tmp_path / "pal.png").pixels
    np.testing.assert_array_equal(got, np.asarray(pal.convert("RGB")))

    pal.info["transparency"] = 0
    pal.save(tmp_path / "palt.png", transparency=0)
    got = read_image(tmp_path / "palt.png").pixels
    assert got.shape == (16, 20, 4)

    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    got = read_image(tmp_path / "cmyk.jpg").pixels
    assert got.shape == (16, 20, 3)
    assert np.abs(got.astype(int) - rgb).mean() < 8

    Image.fromarray(rgb[..., 0] > 128).save(tmp_path / "bits.png")
    got = read_image(tmp_path / "bits.png").pixels
    assert got.shape == (16, 20) and set(np.unique(got)) <= {0, 255}

    grey16 = (np.arange(16 * 20, dtype=np.uint16).reshape(16, 20) * 199).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g16.png")  # Pillow's I;16 writer
    got = read_image(tmp_path / "g16.png")
    assert got.bit_depth == 16
    np.testing.assert_array_equal(got.pixels, grey16)


def test_encode_rejects_bad_arrays() -> None:
    with pytest.raises(ValueError):
        encode_image(np.zeros((4, 4, 3), np.float32), "PNG")
    with pytest.raises(ValueError):
        encode_image(np.zeros((4, 4, 5), np.uint8), "PNG")
    with pytest.raises(ImageError, match="unsupported image format"):
        encode_image(np.zeros((4, 4, 3), np.uint8), "GIF")


# --------------------------------------------------------------------------- metadata


def marked_image() -> np.ndarray:
    """40 rows x 60 columns, grey, with a white 10x10 marker in the top-left corner."""
    img = np.full((40, 60, 3), 60, np.uint8)
    img[:10, :10] = 255
    return img


def marker_box(pixels: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(pixels[..., 0] > 160)
    return int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())


def test_exif_orientation_applied_and_reset(tmp_path: Path) -> None:
    src = tmp_path / "rotated.jpg"
    Image.fromarray(marked_image()).save(src, quality=95, exif=exif_bytes(orientation=6))

    got = read_image(src)
    # Orientation 6: the stored image is shown rotated 90 degrees clockwise,
    # so the 40x60 image becomes 60x40 and the top-left marker moves to the top-right.
    assert got.pixels.shape == (60, 40, 3)
    assert marker_box(got.pixels) == (0, 9, 30, 39)
    exif = parse_exif(got.exif)
    assert exif[0x0112] == 1
    assert exif[0x010F] == "Canon" and exif[0x0110] == "EOS 5D"

    out = tmp_path / "out.jpg"
    write_image(out, got.pixels, like=got)
    with Image.open(out) as im:
        written = im.getexif()
        assert written[0x0112] == 1
        assert written[0x010F] == "Canon" and written[0x0110] == "EOS 5D"
        assert written.get_ifd(0x8769)[0x9003] == "2021:06:01 18:30:00"
    again = read_image(out)
    assert again.pixels.shape == (60, 40, 3)  # not rotated a second time
    assert marker_box(again.pixels) == (0, 9, 30, 39)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_all_orientations_match_pillow(orientation: int) -> None:
    from PIL import ImageOps

    base = noise((6, 9, 3), seed=orientation)
    buf = io.BytesIO()
    Image.fromarray(base).save(buf, "PNG", exif=exif_bytes(orientation=orientation))
    got = decode_image(buf.getvalue())
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        expected = np.asarray(ImageOps.exif_transpose(im))
    np.testing.assert_array_equal(got.pixels, expected)
    assert parse_exif(got.exif)[0x0112] == 1


def test_orientation_applied_on_16bit_paths(tmp_path: Path) -> None:
    deep = marked_image().astype(np.uint16) * 257
    tifffile.imwrite(tmp_path / "r.tif", deep, photometric="rgb", extratags=[(274, "H", 1, 6)])
    got = read_image(tmp_path / "r.tif")
    assert got.bit_depth == 16 and got.pixels.shape == (60, 40, 3)
    assert marker_box(got.pixels >> 8) == (0, 9, 30, 39)

    ok, png = cv2.imencode(".png", deep[..., ::-1])
    assert ok
    png16 = with_png_chunk(png.tobytes(), b"eXIf", exif_bytes(orientation=6)[6:])
    got = decode_image(png16, name="r.png")
    assert got.bit_depth == 16 and got.pixels.shape == (60, 40, 3)
    assert marker_box(got.pixels >> 8) == (0, 9, 30, 39)
    assert parse_exif(got.exif)[0x0112] == 1


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tif", ".heic"])
def test_icc_profile_survives(tmp_path: Path, suffix: str) -> None:
    icc = srgb_icc()
    src = tmp_path / f"src{suffix}"
    Image.fromarray(smooth_rgb()).save(src, icc_profile=icc)
    got = read_image(src)
    assert got.icc_profile == icc
    out = tmp_path / f"out{suffix}"
    write_image(out, got.pixels, like=got)
    assert read_image(out).icc_profile == icc


@pytest.mark.parametrize("quality", [75, 95])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_jpeg_encoder_writes_pillows_pixels(channels: int, quality: int) -> None:
    """The OpenCV encoder stands in for Pillow's: the same quality tables and chroma sampling
    (4:4:4 from 90 up, 4:2:0 below), so the decoded pixels are Pillow's own, and colour
    files without metadata are the same bytes."""
    img = noise((40, 56, channels)) if channels > 1 else noise((40, 56))
    img = cv2.GaussianBlur(img, (0, 0), 2)
    ours = encode_image(img, "JPEG", quality=quality)
    colour = img[..., :3] if channels == 4 else img
    buf = io.BytesIO()
    sampling = 0 if quality >= 90 else 2
    Image.fromarray(colour).save(buf, "JPEG", quality=quality, subsampling=sampling)
    np.testing.assert_array_equal(decode_image(ours).pixels, decode_image(buf.getvalue()).pixels)
    if channels > 1:
        assert ours == buf.getvalue()


@pytest.mark.parametrize(("source", "quality", "written"), [
    ("4:2:0", 95, "4:2:0"), ("4:2:2", 95, "4:2:2"), ("4:4:4", 95, "4:4:4"),
    ("4:4:4", 80, "4:2:0"), ("4:2:2", 80, "4:2:0"), (None, 95, "4:4:4"), (None, 80, "4:2:0"),
])
def test_jpeg_keeps_a_jpeg_inputs_chroma_sampling_or_coarser(
        source: str | None, quality: int, written: str) -> None:
    """A JPEG is re-encoded with its own chroma subsampling (never finer), read from the file."""
    subsampling = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}
    img = cv2.GaussianBlur(noise((64, 80, 3)), (0, 0), 2)
    if source is None:
        like = decode_image(encode_image(img, "PNG"))
    else:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=95, subsampling=subsampling[source])
        like = decode_image(buf.getvalue())
    assert like.chroma_sampling == source
    out = encode_image(like.pixels, "JPEG", like=like, quality=quality)
    with Image.open(io.BytesIO(out)) as im:
        assert JpegImagePlugin.get_sampling(im) == subsampling[written]
    assert decode_image(out).chroma_sampling == written


def test_a_turned_422_jpeg_is_written_with_halved_rows() -> None:
    """Orientation 6 turns the picture: 4:2:2's halved columns become halved rows (4:4:0)."""
    img = cv2.GaussianBlur(noise((64, 80, 3)), (0, 0), 2)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=95, subsampling=1, exif=exif_bytes(6))
    like = decode_image(buf.getvalue())
    assert like.pixels.shape[:2] == (80, 64) and like.chroma_sampling == "4:4:0"
    out = encode_image(like.pixels, "JPEG", like=like)
    with Image.open(io.BytesIO(out)) as im:
        assert [layer[1:3] for layer in im.layer] == [(1, 2), (1, 1), (1, 1)]


def test_jpeg_sampling_of_a_grey_jpeg_is_none() -> None:
    buf = io.BytesIO()
    Image.fromarray(noise((32, 32))).save(buf, "JPEG")
    assert decode_image(buf.getvalue()).chroma_sampling is None


def test_jpeg_drops_an_exif_block_too_long_for_it(tmp_path: Path) -> None:
    """A JPEG segment holds 64 kB: a longer EXIF block is left out, the photo still written."""
    long_exif = exif_bytes(make="x" * 70_000)
    like = ImageFile(np.zeros((1, 1, 3), np.uint8), "JPEG", exif=long_exif, icc_profile=srgb_icc())
    write_image(tmp_path / "a.jpg", smooth_rgb(), like=like)
    got = read_image(tmp_path / "a.jpg")
    assert got.exif is None and got.icc_profile == srgb_icc()
    assert got.pixels.shape == (48, 64, 3)


def test_icc_and_exif_survive_16bit_png_and_tiff(tmp_path: Path) -> None:
    icc = srgb_icc()
    like = ImageFile(np.zeros((1, 1, 3), np.uint8), "JPEG", exif=exif_bytes(3), icc_profile=icc)
    deep = noise((12, 14, 3), np.uint16)
    write_image(tmp_path / "a.png", deep, like=like)
    write_image(tmp_path / "a.tif", deep, like=like)
    for name in ("a.png", "a.tif"):
        got = read_image(tmp_path / name)
        np.testing.assert_array_equal(got.pixels, deep)  # orientation not re-applied
        assert got.icc_profile == icc
        exif = parse_exif(got.exif)
        assert exif[0x010F] == "Canon" and exif.get(0x0112, 1) == 1


def test_no_metadata_gives_none() -> None:
    got = decode_image(encode_image(smooth_rgb(), "PNG"))
    assert got.exif is None and got.icc_profile is None


# --------------------------------------------------------------------------- bad inputs


def assert_refused(path: Path, *fragments: str, **kwargs: int) -> str:
    with pytest.raises(ImageError) as info:
        read_image(path, **kwargs)
    msg = str(info.value)
    assert path.name in msg
    assert "\n" not in msg
    for fragment in fragments:
        assert fragment in msg
    return msg


def test_corrupt_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.png"
    path.write_bytes(noise((5000,)).tobytes())
    assert_refused(path, "not an image file")


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_text("this is not a photo\n" * 20)
    assert_refused(path, "not an image file (unrecognised format)")


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow, on the cut TIFF
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIC", "TIFF"])
@pytest.mark.parametrize("keep", [0.5, 0.95])
def test_truncated_files(tmp_path: Path, fmt: str, keep: float) -> None:
    data = encode_image(smooth_rgb(200, 300), fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: int(len(data) * keep)])
    assert_refused(path, "truncated or corrupt")


def test_truncated_16bit_png(tmp_path: Path) -> None:
    data = encode_image(noise((50, 60, 3), np.uint16), "PNG")
    path = tmp_path / "cut16.png"
    path.write_bytes(data[: len(data) // 2])
    assert_refused(path, "truncated or corrupt")


@pytest.mark.parametrize("marker", [b"\xff\xc4", b"\xff\xda", b"\xff\xdb"])
def test_corrupt_jpeg_segments(tmp_path: Path, marker: bytes) -> None:
    data = bytearray(encode_image(smooth_rgb(200, 300), "JPEG"))
    at = data.index(marker)  # Huffman table, start of scan, quantisation table
    data[at + 4 : at + 12] = b"\xff" * 8
    path = tmp_path / "broken.jpg"
    path.write_bytes(bytes(data))
    assert_refused(path, "truncated or corrupt")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert_refused(path, "file is empty")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert_refused(tmp_path / "nothere.png", "missing file")
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    assert_refused(folder, "is a directory")


def test_zero_sized(tmp_path: Path) -> None:
    path = tmp_path / "zero.png"
    path.write_bytes(png_with_size(0, 4))
    assert_refused(path, "zero-sized image")


def test_decompression_bomb_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(png_with_size(40000, 40000))  # a few hundred bytes claiming 1.6 GP
    msg = assert_refused(path, "40000x40000 pixels exceeds the limit of 200000000 pixels")
    assert msg.startswith("big.png: ")
    # Even with our limit lifted, Pillow's own bomb check still refuses it as ImageError.
    assert_refused(path, "decompression bomb", max_pixels=10**12)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "WEBP", "HEIC"])
def test_max_pixels_and_max_bytes(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"small.{fmt.lower()}"
    path.write_bytes(encode_image(smooth_rgb(40, 50), fmt))
    assert_refused(path, "50x40 pixels exceeds the limit of 1000 pixels", max_pixels=1000)
    assert_refused(path, "exceeds the limit of 10 bytes", max_bytes=10)
    assert read_image(path, max_pixels=2000).pixels.shape == (40, 50, 3)


def test_unsupported_format_named(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    Image.fromarray(smooth_rgb()).save(path)
    assert_refused(path, "unsupported image format GIF")


def test_decode_image_uses_given_name() -> None:
    with pytest.raises(ImageError, match=r"^upload\.jpg: file is empty$"):
        decode_image(b"", name="upload.jpg")
    with pytest.raises(ImageError, match=r"^upload\.jpg: not an image file"):
        decode_image(b"hello", name="upload.jpg")


def test_load_truncated_images_stays_off() -> None:
    from PIL import ImageFile as PILImageFile

    decode_image(encode_image(smooth_rgb(), "JPEG"))
    assert PILImageFile.LOAD_TRUNCATED_IMAGES is False


# --------------------------------------------------------------------------- writing


def test_format_from_suffix_and_override(tmp_path: Path) -> None:
    img = smooth_rgb()
    for suffix, fmt in [(".JPG", "JPEG"), (".jpeg", "JPEG"), (".tiff", "TIFF"), (".webp", "WEBP")]:
        write_image(tmp_path / f"x{suffix}", img)
        assert read_image(tmp_path / f"x{suffix}").format == fmt
    write_image(tmp_path / "data.bin", img, format="png")
    assert read_image(tmp_path / "data.bin").format == "PNG"
    with pytest.raises(ImageError, match="x.gif"):
        write_image(tmp_path / "x.gif", img)


def test_write_creates_parents_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.png"
    write_image(target, smooth_rgb())
    assert target.is_file()
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.png"]


def test_overwrite_false_refuses(tmp_path: Path) -> None:
    target = tmp_path / "keep.png"
    target.write_bytes(b"original")
    with pytest.raises(ImageError, match="keep.png: file exists"):
        write_image(target, smooth_rgb(), overwrite=False)
    assert target.read_bytes() == b"original"
    write_image(tmp_path / "new.png", smooth_rgb(), overwrite=False)
    assert read_image(tmp_path / "new.png").pixels.shape == (48, 64, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png", "new.png"]


def test_overwrite_replaces(tmp_path: Path) -> None:
    target = tmp_path / "img.png"
    target.write_bytes(b"old")
    write_image(target, smooth_rgb())
    assert read_image(target).pixels.shape == (48, 64, 3)


def test_failed_encode_leaves_target_untouched(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "photo.jpg"
    target.write_bytes(b"original")

    def broken(*args: object, **kwargs: object) -> bytes:
        raise OSError("encoder exploded")

    monkeypatch.setattr(writing, "_encode_jpeg", broken)
    with pytest.raises(ImageError, match="photo.jpg"):
        write_image(target, smooth_rgb())
    assert target.read_bytes() == b"original"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg"]


@pytest.mark.parametrize("fail_at", ["fsync", "replace"])
def test_failed_write_removes_temp_and_keeps_target(
    tmp_path: Path, monkeypatch, fail_at: str
) -> None:
    target = tmp_path / "photo.png"
    target.write_bytes(b"original")
    seen_temp: list[str] = []

    def boom(*args: object, **kwargs: object) -> None:
        # By now part of the image is on disk in the temp file.
        temps = [p for p in tmp_path.iterdir() if p.name != "photo.png"]
        assert len(temps) == 1 and temps[0].stat().st_size > 0
        seen_temp.append(temps[0].name)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writing.os, fail_at, boom)
    with pytest.raises(ImageError, match=r"^photo.png: cannot write file \(No space left"):
        write_image(target, smooth_rgb())
    monkeypatch.undo()

    assert seen_temp and seen_temp[0].startswith(".photo.png.") and seen_temp[0].endswith(".tmp")
    assert target.read_bytes() == b"original"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


def test_write_keeps_existing_permissions(tmp_path: Path) -> None:
    target = tmp_path / "perm.png"
    target.write_bytes(b"x")
    os.chmod(target, 0o640)
    write_image(target, smooth_rgb())
    assert target.stat().st_mode & 0o777 == 0o640


def test_write_to_directory_refused(tmp_path: Path) -> None:
    (tmp_path / "d.png").mkdir()
    with pytest.raises(ImageError, match="d.png: is a directory"):
        write_image(tmp_path / "d.png", smooth_rgb())


def test_decode_accepts_bytearray_and_memoryview() -> None:
    data = encode_image(smooth_rgb(), "PNG")
    for buf in (bytearray(data), memoryview(data)):
        np.testing.assert_array_equal(decode_image(buf).pixels, smooth_rgb())


def test_bomb_warning_as_error_is_still_image_error() -> None:
    import warnings

    data = png_with_size(10000, 10000)  # 100 MP: above Pillow's warning threshold (89 MP)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageError, match="^huge.png: .*decompression bomb"):
            decode_image(data, name="huge.png")
