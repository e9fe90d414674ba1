"""Camera RAW: DNGs built here from a package photo, developed by LibRaw through excnet.

Colours against the scene, 16 bits, orientation, content sniffing, highlight modes, exposure,
colour spaces, bad input, and RAW through `restore`, `estimate`, `batch` and the REST API.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from dngfile import CROSSTALK, mosaic, srgb_to_linear, write_dng
from PIL import Image, ImageCms

from excnet.cli import main
from excnet.imageio import ImageError, RawOptions, decode_image, read_image, write_image
from excnet.imageio.formats import RAW, sniff_format

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    """The chelsea photo (uint8 sRGB), cropped to even dimensions: the truth."""
    return skimage.data.chelsea()[:160, :224]


@pytest.fixture(scope="module")
def dng(scene) -> bytes:
    return write_dng(mosaic(srgb_to_linear(scene / 255.0)), compress=True)


def interior(a: np.ndarray, margin: int = 6) -> np.ndarray:
    return a[margin:-margin, margin:-margin].astype(np.float64)


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- developing


@pytest.mark.parametrize(("compress", "camera"), [(False, None), (True, None), (True, CROSSTALK)])
def test_decoded_colours_match_the_scene(scene, compress: bool, camera) -> None:
    data = write_dng(mosaic(srgb_to_linear(scene / 255.0), camera=camera), compress=compress,
                     camera=camera)
    img = decode_image(data, name="cat.dng", raw=RawOptions(highlights="clip"))
    assert img.format == RAW and img.bit_depth == 16 and img.pixels.dtype == np.uint16
    assert img.pixels.shape == scene.shape
    got = interior(img.pixels) / 257.0
    truth = interior(scene)
    # white balance and colour matrix applied: per-channel means within 1 level of 255
    np.testing.assert_allclose(got.reshape(-1, 3).mean(0), truth.reshape(-1, 3).mean(0), atol=1.0)
    # demosaic error on fur and whiskers (a crosstalk matrix amplifies it a little)
    assert np.abs(got - truth).mean() < (3.0 if camera is None else 3.5)


def test_default_highlight_mode_keeps_mid_tones(scene, dng) -> None:
    clip = decode_image(dng, name="a.dng", raw=RawOptions(highlights="clip")).pixels
    default = decode_image(dng, name="a.dng").pixels
    mid = (interior(clip) > 0.2 * 65535) & (interior(clip) < 0.6 * 65535)
    ratio = interior(default)[mid].mean() / interior(clip)[mid].mean()
    assert 0.95 < ratio < 1.05  # the white-balance headroom is given back to the mid-tones


def test_sixteen_bits_hold_more_than_256_levels() -> None:
    ramp = np.tile(np.linspace(0.0, 0.05, 256), (32, 1))  # deep shadows, 14-bit sensor
    data = write_dng(mosaic(np.repeat(ramp[..., None], 3, axis=2)))
    pixels = decode_image(data, name="ramp.dng").pixels
    green = pixels[16, 4:-4, 1]
    assert len(np.unique(green)) > 200 and green.max() < 65535 // 3
    assert len(np.unique(pixels[..., 1])) > 256
    assert np.all(np.diff(green.astype(int)) >= -64)  # a ramp, not noise


def test_exposure_compensation_brightens_linearly(dng) -> None:
    base = decode_image(dng, name="a.dng", raw=RawOptions(highlights="clip")).pixels
    up = decode_image(dng, name="a.dng", raw=RawOptions(exposure=1.0, highlights="clip")).pixels
    dark = interior(base) < 0.15 * 65535
    lin_base = srgb_to_linear(interior(base)[dark] / 65535)
    lin_up = srgb_to_linear(interior(up)[dark] / 65535)
    assert 1.8 < lin_up.mean() / lin_base.mean() < 2.2
    with pytest.raises(ValueError, match="exposure"):
        RawOptions(exposure=5.0)


def sky_dng() -> tuple[bytes, np.ndarray]:
    """A bluish sky brightening left to right until every sensor channel clips."""
    x = np.linspace(0.0, 1.0, 256)[None, :, None]
    sky = np.broadcast_to(np.array([0.75, 0.85, 1.0]) * (0.3 + 2.2 * x), (32, 256, 3))
    return write_dng(mosaic(sky)), sky


def chroma(rgb: np.ndarray) -> np.ndarray:
    return (rgb.max(-1) - rgb.min(-1)).astype(np.float64) / 65535


def test_clipped_sky_stays_neutral() -> None:
    data, sky = sky_dng()
    clipped = sky[0, :, 1] >= 1.0  # the green sensor channel saturates first
    for mode in ("reconstruct", "blend", "clip"):
        row = decode_image(data, name="sky.dng", raw=RawOptions(highlights=mode)).pixels[16]
        assert chroma(row[clipped][8:-8]).mean() < 0.03, mode
        assert np.all(np.diff(row[8:-8].astype(int).mean(-1)) > -300), mode  # no dip
    # the unclipped sky keeps its blue: blue above red by the same margin as plain clipping
    clip = decode_image(data, name="sky.dng", raw=RawOptions(highlights="clip")).pixels[16]
    rec = decode_image(data, name="sky.dng").pixels[16]
    left = slice(8, 40)
    assert abs(chroma(rec[left]).mean() - chroma(clip[left]).mean()) < 0.02


@pytest.mark.parametrize("space", ["adobe-rgb", "display-p3"])
def test_wide_colour_spaces_carry_their_profile(scene, dng, space: str) -> None:
    img = decode_image(dng, name="a.dng", raw=RawOptions(colorspace=space, highlights="clip"))
    assert img.icc_profile is not None
    profile = ImageCms.ImageCmsProfile(io.BytesIO(img.icc_profile))
    to_srgb = ImageCms.buildTransform(profile, ImageCms.createProfile("sRGB"), "RGB", "RGB")
    eight = Image.fromarray(((img.pixels.astype(np.uint32) + 128) // 257).astype(np.uint8))
    back = np.asarray(ImageCms.applyTransform(eight, to_srgb))
    srgb = decode_image(dng, name="a.dng", raw=RawOptions(highlights="clip")).pixels / 257.0
    assert np.abs(interior(back) - interior(srgb)).mean() < 2.5  # same colours, other space
    assert np.abs(interior(np.asarray(eight)) - interior(srgb)).mean() > 2.0  # other numbers


def test_orientation_applied_once(scene) -> None:
    marked = scene.copy()
    marked[:20, :20] = 255
    lin = srgb_to_linear(marked / 255.0)
    img = decode_image(write_dng(mosaic(lin), orientation=6), name="r.dng")
    assert img.pixels.shape == (224, 160, 3)  # rotated 90 degrees clockwise, once
    corners = [img.pixels[:20, -20:], img.pixels[:20, :20], img.pixels[-20:, :20],
               img.pixels[-20:, -20:]]
    means = [c.mean() / 257 for c in corners]
    assert means[0] > 220 and means[0] > max(means[1:]) + 50  # the marker went top-right
    exif = Image.Exif()
    exif.load(img.exif)
    assert exif[0x0112] == 1 and exif[0x010F] == "Excnet"


def test_tiff_shaped_raw_is_recognised_by_content(tmp_path: Path, dng) -> None:
    assert sniff_format(dng) == RAW
    plain = io.BytesIO()
    Image.new("RGB", (4, 4)).save(plain, "TIFF")
    assert sniff_format(plain.getvalue()) == "TIFF"
    for name in ("camera.tif", "camera.jpg", "camera.nef"):  # the name does not matter
        (tmp_path / name).write_bytes(dng)
        img = read_image(tmp_path / name)
        assert img.format == RAW and img.pixels.shape == (160, 224, 3)
    (tmp_path / "export.dng").write_bytes(plain.getvalue())  # a plain TIFF with a RAW name
    assert read_image(tmp_path / "export.dng").format == "TIFF"


# --------------------------------------------------------------------------- bad input


def refused(data: bytes, name: str, *fragments: str, **kwargs) -> str:
    with pytest.raises(ImageError) as info:
        decode_image(data, name=name, **kwargs)
    msg = str(info.value)
    assert msg.startswith(f"{name}: ") and "\n" not in msg
    for fragment in fragments:
        assert fragment in msg
    return msg


@pytest.mark.parametrize("keep", [0.3, 0.9])
def test_truncated_raw(dng, keep: float, capfd) -> None:
    refused(dng[: int(len(dng) * keep)], "cut.dng", "truncated or corrupt")
    assert capfd.readouterr().err == ""  # LibRaw's own complaint never reaches the terminal


def test_not_a_raw(tmp_path: Path) -> None:
    refused(b"this is not a photo\n" * 50, "notes.nef", "not an image file")
    fake = b"II*\x00" + b"\x08\x00\x00\x00" + bytes(200)  # TIFF magic, nothing inside
    refused(fake, "fake.cr2", "truncated or corrupt")
    refused(b"FUJIFILMCCD-RAW " + bytes(300), "fake.raf", "not a camera RAW file")


def test_unknown_cfa(scene) -> None:
    raw = mosaic(srgb_to_linear(scene / 255.0))
    refused(write_dng(raw, cfa_values=(1, 1, 1, 1)), "mono.dng", "colour filter array")


def test_zero_sized_frame() -> None:
    refused(write_dng(np.zeros((0, 64), np.uint16)), "empty.dng", "zero-sized image (64x0")


def test_size_limits_checked_before_developing(dng) -> None:
    refused(dng, "big.dng", "224x160 pixels exceeds the limit of 10000 pixels", max_pixels=10_000)
    refused(dng, "big.dng", "exceeds the limit of 1000 bytes", max_bytes=1000)
    # a header claiming 40000 x 40000 with almost no data is refused without decoding
    huge = write_dng(np.zeros((2, 2), np.uint16))
    huge = huge.replace(b"\x00\x01\x04\x00\x01\x00\x00\x00\x02\x00\x00\x00",
                        b"\x00\x01\x04\x00\x01\x00\x00\x00\x40\x9c\x00\x00", 1)
    huge = huge.replace(b"\x01\x01\x04\x00\x01\x00\x00\x00\x02\x00\x00\x00",
                        b"\x01\x01\x04\x00\x01\x00\x00\x00\x40\x9c\x00\x00", 1)
    refused(huge, "bomb.dng", "exceeds the limit", max_pixels=100_000_000)


def test_rawpy_not_imported_for_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    write_image(path, np.full((16, 16, 3), 90, np.uint8))
    code = ("import sys, excnet; from excnet.imageio import read_image; "
            f"read_image({str(path)!r}); print('rawpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- commands


def test_restore_raw_writes_a_16bit_tiff_beside_it(tmp_path: Path, dng, capsys) -> None:
    src = tmp_path / "IMG_1.dng"
    src.write_bytes(dng)
    code, out, _ = cli(capsys, "restore", src, "--json")
    assert code == 0
    rec = json.loads(out)
    assert rec["status"] == "ok" and rec["output"] == str(tmp_path / "IMG_1.excnet.tif")
    got = read_image(tmp_path / "IMG_1.excnet.tif")
    assert got.format == "TIFF" and got.bit_depth == 16 and got.pixels.shape == (160, 224, 3)
    assert len(np.unique(got.pixels[..., 1])) > 256
    code, _, _ = cli(capsys, "restore", src, "-o", tmp_path / "small.jpg", "--raw-exposure", "0.5")
    assert code == 0 and read_image(tmp_path / "small.jpg").format == "JPEG"


def test_estimate_reads_raw(tmp_path: Path, dng, capsys) -> None:
    (tmp_path / "a.dng").write_bytes(dng)
    code, out, _ = cli(capsys, "estimate", tmp_path / "a.dng", "--json")
    assert code == 0 and json.loads(out)["status"] == "ok"
    code, _, err = cli(capsys, "estimate", tmp_path / "a.dng", "--raw-exposure", "9")
    assert code == 2 and "exposure" in err


def test_restore_folder_with_raw_and_bad_raw(tmp_path: Path, dng, capsys) -> None:
    shots = tmp_path / "shots"
    shots.mkdir()
    (shots / "good.arw").write_bytes(dng)
    (shots / "bad.nef").write_bytes(dng[:3000])
    write_image(shots / "photo.jpg", np.full((32, 48, 3), 60, np.uint8))
    code, _, err = cli(capsys, "restore", shots, "-o", tmp_path / "out")
    assert code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.tif", "photo.jpg"]
    lines = [line for line in err.splitlines() if line.startswith("excnet: ")]
    assert any("bad.nef" in line and "truncated or corrupt" in line for line in lines)


def test_batch_mirrors_raw_as_tif_and_reports_collisions(tmp_path: Path, dng, capsys) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    (src / "day").mkdir(parents=True)
    (src / "day" / "IMG_1.NEF").write_bytes(dng)
    write_image(src / "day" / "IMG_1.jpg", np.full((32, 48, 3), 60, np.uint8))
    (src / "day" / "IMG_2.dng").write_bytes(dng)
    (src / "day" / "IMG_2.nef").write_bytes(dng)  # the same shot twice: one output
    (src / "day" / "IMG_3.cr2").write_bytes(b"garbage" * 100)
    code, _, err = cli(capsys, "batch", src, dst, "-j", "1")
    assert code == 1
    assert sorted(p.name for p in (dst / "day").iterdir()) == ["IMG_1.jpg", "IMG_1.tif",
                                                              "IMG_2.tif"]
    assert read_image(dst / "day" / "IMG_1.tif").bit_depth == 16
    assert "IMG_2.nef" in err and "already the output of" in err and "IMG_2.dng" in err
    assert "IMG_3.cr2" in err
    manifest = (dst / "excnet-manifest.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in manifest]
    assert sorted(r["status"] for r in records) == ["error", "error", "ok", "ok", "ok"]


def test_rest_upload_of_raw(dng) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from excnet.service import Settings, create_app

    with TestClient(create_app(Settings(solver="direct"))) as client:
        r = client.post("/api/v1/restore", files={"file": ("IMG_9.DNG", dng, "image/x-adobe-dng")})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/tiff"
        assert 'filename="IMG_9.excnet.tif"' in r.headers["content-disposition"]
        out = decode_image(r.content)
        assert out.bit_depth == 16 and out.pixels.shape == (160, 224, 3)
        r = client.post("/api/v1/restore", files={"file": ("x.dng", dng, "image/x-adobe-dng")},
                        data={"format": "jpeg"})
        assert r.status_code == 200 and decode_image(r.content).format == "JPEG"
        est = client.post("/api/v1/estimate?preview=64",
                          files={"file": ("x.dng", dng, "image/x-adobe-dng")})
        assert est.status_code == 200
        preview = est.json()["preview"]
        assert preview["image"].startswith("data:image/jpeg;base64,")
        assert max(preview["width"], preview["height"]) == 64
        r = client.post("/api/v1/restore",
                        files={"file": ("x.dng", dng[:4000], "image/x-adobe-dng")})
        assert r.status_code == 422 and "x.dng" in r.json()["error"]["message"]


@pytest.mark.parametrize("shape", [(1, 5, 3), (7, 3), (300, 700, 3), (1000, 333, 3)])
def test_tone_lookup_in_place_equals_one_lookup(shape: tuple[int, ...]) -> None:
    """The banded, threaded in-place look-up gives table[pixels] for every shape, whatever
    the number of bands per thread."""
    from excnet.imageio.raw import tone_table
    from excnet.strips import look_up

    pixels = np.random.default_rng(3).integers(0, 65536, shape, dtype=np.uint16)
    table = tone_table(2.5, "srgb")
    expected = table[pixels]
    assert look_up(table, pixels, pixels) is pixels
    np.testing.assert_array_equal(pixels, expected)
