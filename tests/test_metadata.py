"""Metadata carried by exiv2: EXIF (maker notes with their offsets, GPS), XMP and IPTC, from
JPEG, TIFF and DNG inputs to every output format; Orientation 1 and no thumbnail out."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyexiv2
import pytest
import tifffile
from dngfile import mosaic, srgb_to_linear, write_dng
from PIL import Image

from excnet.imageio import decode_image, encode_image

TAGS = {
    "Exif.Image.Make": "Canon",
    "Exif.Image.Model": "Canon EOS 5D",
    "Exif.Canon.OwnerName": "Ansel",  # a maker note exiv2 parses: offsets must be rewritten
    "Exif.Canon.FirmwareVersion": "Firmware 1.1.1",
    "Exif.Photo.LensModel": "EF50mm f/1.8",
    "Exif.Photo.ExposureTime": "1/250",
    "Exif.Photo.ISOSpeedRatings": "400",
    "Exif.Photo.DateTimeOriginal": "2024:06:01 18:30:00",
    "Exif.GPSInfo.GPSLatitudeRef": "N",
    "Exif.GPSInfo.GPSLatitude": "48/1 51/1 2400/100",
    "Exif.GPSInfo.GPSLongitudeRef": "E",
    "Exif.GPSInfo.GPSLongitude": "2/1 17/1 4000/100",
}
XMP = {"Xmp.dc.title": {'lang="x-default"': "Back-lit cat"}, "Xmp.dc.subject": ["cat", "sun"]}
IPTC = {"Iptc.Application2.Caption": "A cat against the window",
        "Iptc.Application2.Keywords": ["cat", "window"]}


def tagged(data: bytes, orientation: int = 1) -> bytes:
    """data with TAGS, XMP and IPTC written into it by exiv2."""
    img = pyexiv2.ImageData(data)
    try:
        img.modify_exif({**TAGS, "Exif.Image.Orientation": str(orientation)})
        img.modify_xmp(XMP)
        img.modify_iptc(IPTC)
        return img.get_bytes()
    finally:
        img.close()


def read_back(data: bytes) -> tuple[dict, dict, dict]:
    img = pyexiv2.ImageData(data)
    try:
        return img.read_exif(), img.read_xmp(), img.read_iptc()
    finally:
        img.close()


def scene(h: int = 48, w: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([40 + 3 * x, 30 + 4 * y, 90 + 0 * x], axis=-1).astype(np.uint8)


def jpeg_input() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(scene()).save(buf, "JPEG", quality=95)
    return tagged(buf.getvalue())


def tiff_input() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(scene()).save(buf, "TIFF")
    return tagged(buf.getvalue())


def tiff16_input() -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, scene().astype(np.uint16) * 257, photometric="rgb")
    return tagged(buf.getvalue())


def dng_input() -> bytes:
    return tagged(write_dng(mosaic(srgb_to_linear(scene() / 255.0))))


INPUTS = {"jpeg": jpeg_input, "tiff": tiff_input, "tiff16": tiff16_input, "dng": dng_input}


def maker_note_offsets_valid(exif_block: bytes) -> bool:
    """Whether the Canon OwnerName entry of the maker note points at "Ansel" (offsets are
    relative to the TIFF header, so a maker note moved without rewriting fails this)."""
    tiff = exif_block[6:]
    exif = Image.Exif()
    exif.load(exif_block)
    note = exif.get_ifd(0x8769)[0x927C]
    at = tiff.find(note)
    count = struct.unpack_from("<H", note, 0)[0]
    for i in range(count):
        tag, _, n, value = struct.unpack_from("<HHII", note, 2 + 12 * i)
        if tag == 0x0009:
            return tiff[value : value + n] == b"Ansel\x00" and at > 0
    return False


@pytest.mark.parametrize("source", list(INPUTS))
@pytest.mark.parametrize("fmt", ["JPEG", "TIFF", "PNG", "WEBP", "HEIC"])
def test_metadata_carried(source: str, fmt: str) -> None:
    img = decode_image(INPUTS[source](), name=f"in.{source}")
    out = encode_image(img.pixels, fmt, like=img)
    exif, xmp, iptc = read_back(out)
    for key in ("Exif.Image.Make", "Exif.Image.Model", "Exif.Photo.LensModel",
                "Exif.Photo.ExposureTime", "Exif.Photo.ISOSpeedRatings",
                "Exif.Photo.DateTimeOriginal", "Exif.GPSInfo.GPSLatitude",
                "Exif.GPSInfo.GPSLongitude", "Exif.Canon.OwnerName",
                "Exif.Canon.FirmwareVersion"):
        assert exif.get(key) == TAGS[key], (key, exif.get(key))
    assert exif.get("Exif.Image.Orientation", "1") == "1"
    assert xmp.get("Xmp.dc.title") == XMP["Xmp.dc.title"]
    assert xmp.get("Xmp.dc.subject") == XMP["Xmp.dc.subject"]
    if fmt not in ("WEBP", "HEIC"):  # neither format has a place for IPTC
        assert iptc == IPTC
    if fmt in ("JPEG", "PNG", "WEBP"):
        with Image.open(io.BytesIO(out)) as im:
            block = im.info["exif"]
        block = block if block.startswith(b"Exif") else b"Exif\x00\x00" + block
        assert maker_note_offsets_valid(block)


def test_oversized_maker_note_is_dropped_not_the_rest() -> None:
    """A RAW's EXIF can outgrow a JPEG's 64 kB segment: the maker note goes, the rest stays."""
    img = pyexiv2.ImageData(dng_input())
    img.modify_exif({"Exif.Image.Make": "Excnet", "Exif.Canon.OwnerName": None,
                     "Exif.Canon.FirmwareVersion": None,
                     "Exif.Photo.MakerNote": " ".join(["7"] * 70_000)})
    source = img.get_bytes()
    decoded = decode_image(source, name="big-notes.dng")
    exif, _, _ = read_back(encode_image(decoded.pixels, "JPEG", like=decoded))
    assert "Exif.Photo.MakerNote" not in exif
    assert exif["Exif.Photo.LensModel"] == TAGS["Exif.Photo.LensModel"]
    assert exif["Exif.GPSInfo.GPSLatitude"] == TAGS["Exif.GPSInfo.GPSLatitude"]


def test_source_layout_tags_are_not_carried() -> None:
    img = decode_image(dng_input(), name="a.dng")
    exif, _, _ = read_back(encode_image(img.pixels, "JPEG", like=img))
    for key in exif:
        assert not key.startswith(("Exif.Image.DNG", "Exif.Image.CFA", "Exif.Image.Strip",
                                   "Exif.Image.ColorMatrix", "Exif.Image.AsShotNeutral",
                                   "Exif.SubImage", "Exif.Thumbnail")), key


def test_orientation_applied_and_thumbnail_dropped() -> None:
    pixels = scene()
    pixels[:8, :8] = 255
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=95)
    data = pyexiv2.ImageData(tagged(buf.getvalue(), orientation=6))
    thumb = io.BytesIO()
    Image.new("RGB", (16, 12), (255, 0, 0)).save(thumb, "JPEG")
    data.modify_thumbnail(thumb.getvalue())
    source = data.get_bytes()
    assert pyexiv2.ImageData(source).read_thumbnail()
    img = decode_image(source, name="rot.jpg")
    assert img.pixels.shape == (64, 48, 3) and img.pixels[:8, -8:].mean() > 200
    out = encode_image(img.pixels, "JPEG", like=img)
    exif, _, _ = read_back(out)
    assert exif["Exif.Image.Orientation"] == "1" and exif["Exif.Canon.OwnerName"] == "Ansel"
    assert not pyexiv2.ImageData(out).read_thumbnail()
    assert decode_image(out).pixels.shape == (64, 48, 3)  # not rotated a second time


@pytest.mark.parametrize("orientation", [8, 1])
def test_caller_exif_is_cleaned_on_write(orientation: int) -> None:
    """An EXIF block handed in by a caller (not read by excnet) loses thumbnail and rotation."""
    from excnet.imageio import ImageFile

    buf = io.BytesIO()
    Image.new("RGB", (64, 48)).save(buf, "JPEG")
    data = pyexiv2.ImageData(tagged(buf.getvalue(), orientation=orientation))
    thumb = io.BytesIO()
    Image.new("RGB", (16, 12), (255, 0, 0)).save(thumb, "JPEG")
    data.modify_thumbnail(thumb.getvalue())
    with Image.open(io.BytesIO(data.get_bytes())) as im:
        block = im.info["exif"]
    like = ImageFile(scene(), "JPEG", exif=block)
    out = encode_image(scene(), "PNG", like=like)
    exif, _, _ = read_back(out)
    assert exif["Exif.Image.Orientation"] == "1" and exif["Exif.Canon.OwnerName"] == "Ansel"
    assert not pyexiv2.ImageData(out).read_thumbnail()
    assert decode_image(out).pixels.shape == (48, 64, 3)


def test_threads_share_exiv2_safely() -> None:
    sources = [jpeg_input(), tiff_input(), dng_input()] * 4

    def work(data: bytes) -> str:
        img = decode_image(data, name="t")
        return read_back(encode_image(img.pixels, "JPEG", like=img))[0]["Exif.Canon.OwnerName"]

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(work, sources)) == ["Ansel"] * len(sources)


def test_exiv2_loaded_only_for_files_with_metadata(tmp_path) -> None:
    plain = tmp_path / "plain.jpg"
    Image.fromarray(scene()).save(plain, quality=95)
    (tmp_path / "tagged.jpg").write_bytes(jpeg_input())
    code = ("import sys; from excnet.imageio import read_image, write_image; "
            "img = read_image(sys.argv[1]); write_image(sys.argv[2], img.pixels, like=img); "
            "print('pyexiv2' in sys.modules, 'rawpy' in sys.modules)")
    for name, expected in (("plain.jpg", "False False"), ("tagged.jpg", "True False")):
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path / name),
                              str(tmp_path / f"out-{name}")],
                             capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected
