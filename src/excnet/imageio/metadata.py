"""Photo metadata (EXIF with maker notes, XMP, IPTC) carried from an input to its restored copy.

The work is done by exiv2 (through pyexiv2, imported on first use): it decodes and re-encodes
maker notes with their offsets fixed, which a byte-level copy cannot do across formats.
exiv2 is not thread-safe throughout, so it is initialised once and every call holds one lock.

An EXIF block travels as bytes (``b"Exif\\0\\0"`` + TIFF structure) with Orientation 1 (the
pixels are already upright), no thumbnail, and none of the source file's own layout tags
(strips, tiles, sub-images, DNG colour tags), so it describes the photo, not the container.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

from PIL import ExifTags, Image

EXIF_HEADER = b"Exif\x00\x00"
# IFD0 tags that describe the photo; every other Exif.Image tag describes the file's layout.
_IFD0_KEPT = frozenset({
    "ImageDescription", "Make", "Model", "Orientation", "XResolution", "YResolution",
    "ResolutionUnit", "Software", "DateTime", "Artist", "HostComputer", "Copyright",
    "DocumentName", "PageName", "Rating", "RatingPercent", "XPTitle", "XPComment", "XPAuthor",
    "XPKeywords", "XPSubject", "ExifTag", "GPSTag", "CameraSerialNumber", "LensInfo",
    "ImageUniqueID", "YCbCrPositioning",
})
_LOCK = threading.Lock()


@dataclass(frozen=True, eq=False)
class Metadata:
    """What is carried: EXIF block, XMP packet, IPTC datasets (pyexiv2's key → value(s))."""

    exif: bytes | None = None
    xmp: str | None = None
    iptc: dict[str, str | list[str]] | None = None


@cache
def _exiv2():  # noqa: ANN202 - the pyexiv2 module
    import pyexiv2

    pyexiv2.set_log_level(4)  # exiv2 warnings about odd maker notes are not ours to print
    return pyexiv2


@contextmanager
def exiv2() -> Iterator:
    """The pyexiv2 module, initialised once, used under the one exiv2 lock."""
    with _LOCK:
        yield _exiv2()


@cache
def _blank_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "JPEG")
    return buf.getvalue()


def _exif_of_jpeg(jpeg: bytes) -> bytes | None:
    with Image.open(io.BytesIO(jpeg)) as im:
        exif = im.info.get("exif")
    return exif or None


def _layout_keys(keys: list[str]) -> list[str]:
    """The EXIF keys (``Exif.Group.Tag``) that describe the file rather than the photo."""
    out = []
    for key in keys:
        _, group, tag = key.split(".", 2)
        if group == "Image":
            drop = tag not in _IFD0_KEPT
        else:  # IFD1 (Thumbnail), Image2.., SubImage1..: previews and raw data layouts
            drop = group.startswith(("SubImage", "Thumbnail", "Image"))
        if drop:
            out.append(key)
    return out


def _clean_into_carrier(ex, source) -> bytes | None:  # noqa: ANN001 - pyexiv2 objects
    """Copy source's EXIF into a blank JPEG, clean it there, return the EXIF block (None if
    there is none or exiv2 cannot carry it). exiv2 itself leaves out a maker note that would
    not fit the JPEG's 64 kB EXIF segment."""
    carrier = ex.ImageData(_blank_jpeg())
    try:
        source.copy_to_another_image(carrier, exif=True, iptc=False, xmp=False,
                                     comment=False, icc=False, thumbnail=False)
        keys = list(carrier.read_exif())
        if not keys:
            return None
        changes: dict[str, str | None] = dict.fromkeys(_layout_keys(keys))
        changes["Exif.Image.Orientation"] = "1"
        carrier.modify_exif(changes)
        carrier.clear_thumbnail()
        return _exif_of_jpeg(carrier.get_bytes())
    except Exception:  # noqa: BLE001 - metadata exiv2 cannot carry is dropped, not fatal
        return None
    finally:
        carrier.close()


def read_metadata(data: bytes) -> Metadata:
    """EXIF (cleaned), XMP and IPTC of an image file's bytes; empty parts are None.

    A file exiv2 cannot parse yields empty Metadata (its pixels may still be fine).
    """
    with exiv2() as ex:
        try:
            source = ex.ImageData(bytes(data))
        except Exception:  # noqa: BLE001 - unreadable metadata is not fatal
            return Metadata()
        try:
            block = _clean_into_carrier(ex, source)
            try:
                xmp = source.read_raw_xmp() or None
            except Exception:  # noqa: BLE001
                xmp = None
            try:
                iptc = source.read_iptc() or None
            except Exception:  # noqa: BLE001
                iptc = None
        finally:
            source.close()
    return Metadata(exif=block, xmp=xmp, iptc=iptc)


def clean_exif(exif: bytes | None) -> bytes | None:
    """A caller's EXIF block with Orientation 1, no thumbnail and no layout tags; exiv2 only
    runs when the block needs it. None for an empty or unparsable block."""
    if not exif:
        return None
    block = exif if exif.startswith(EXIF_HEADER) else EXIF_HEADER + exif
    parsed = Image.Exif()
    try:
        parsed.load(block)
        ifd1 = parsed.get_ifd(ExifTags.IFD.IFD1)  # the thumbnail's IFD
    except Exception:  # noqa: BLE001
        return None
    if parsed.get(0x0112, 1) == 1 and not ifd1 and not any(
        tag in parsed for tag in (256, 257, 273, 279, 324, 325, 330)
    ):
        return block
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "JPEG", exif=block)
    with exiv2() as ex:
        source = ex.ImageData(buf.getvalue())
        try:
            return _clean_into_carrier(ex, source)
        finally:
            source.close()


def embed(encoded: bytes, fmt: str, meta: Metadata, *, exif: bool,
          icc: bytes | None = None) -> bytes:
    """Add metadata to an encoded JPEG, PNG, TIFF or WebP file (``exif``: also the EXIF
    block, ``icc``: an ICC profile, for writers that could not embed them themselves). Parts
    the format cannot hold (IPTC in WebP) are left out, and so is an EXIF block too large
    for it (a JPEG segment holds 64 kB)."""
    carrier_jpeg = _exif_carrier(meta.exif) if exif and meta.exif else None
    if not (meta.xmp or meta.iptc or carrier_jpeg or icc):
        return encoded
    with exiv2() as ex:
        target = ex.ImageData(encoded)
        try:
            if icc:
                target.modify_icc(icc)
            if carrier_jpeg:
                carrier = ex.ImageData(carrier_jpeg)
                try:
                    carrier.copy_to_another_image(target, exif=True, iptc=False, xmp=False,
                                                  comment=False, icc=False, thumbnail=False)
                finally:
                    carrier.close()
                target.modify_exif({"Exif.Image.Orientation": "1"})
            if meta.xmp:
                try:
                    target.modify_raw_xmp(meta.xmp)
                except Exception:  # noqa: BLE001 - a format without XMP
                    pass
            if meta.iptc and fmt != "WEBP":
                try:
                    target.modify_iptc(meta.iptc)
                except Exception:  # noqa: BLE001 - a format without IPTC
                    pass
            return target.get_bytes()
        finally:
            target.close()


def _exif_carrier(exif: bytes) -> bytes | None:
    """A tiny JPEG holding the EXIF block, for exiv2 to copy from; None when it is too long
    for a JPEG segment (dropped, not fatal, as Pillow's writers do)."""
    buf = io.BytesIO()
    try:
        Image.new("L", (8, 8)).save(buf, "JPEG", exif=exif)
    except ValueError:
        return None
    return buf.getvalue()
