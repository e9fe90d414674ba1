"""Reading and writing image files safely.

Everything that touches an image file goes through this module:

* :func:`read_image` / :func:`decode_image` turn a file (or bytes) into an :class:`ImageFile`:
  pixels as a NumPy array in RGB order (``uint8`` or, for 16-bit PNG/TIFF, ``uint16``), the
  EXIF block with the Orientation already applied to the pixels, and the ICC profile.
  Every failure raises :class:`ImageError` with a one-line message naming the file; the
  header size is checked against ``max_pixels`` *before* any pixel is decoded.
* :func:`write_image` / :func:`encode_image` turn an array back into a file (or bytes),
  carrying EXIF and ICC over from a source :class:`ImageFile`. File writes are atomic:
  the image is encoded in memory, written to a hidden temp file next to the target,
  fsync'ed and renamed over the target, so a reader never sees a half-written file.

Pixel layouts: ``H×W`` (grey), ``H×W×2`` (grey + alpha), ``H×W×3`` (RGB), ``H×W×4`` (RGBA).
"""

from __future__ import annotations

import io
import os
import secrets
import stat
import struct
import zlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from PIL import ImageFile as _PILImageFile

__all__ = [
    "FORMATS",
    "ImageError",
    "ImageFile",
    "decode_image",
    "encode_image",
    "format_from_path",
    "read_image",
    "write_image",
]

#: Formats this module reads and writes.
FORMATS: tuple[str, ...] = ("JPEG", "PNG", "TIFF", "WEBP", "HEIC")

_SUFFIXES: dict[str, str] = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".heic": "HEIC",
    ".heif": "HEIC",
}
_FORMAT_ALIASES: dict[str, str] = {"JPG": "JPEG", "TIF": "TIFF", "HEIF": "HEIC", "MPO": "JPEG"}
# Pillow format names we let Image.open try (a restricted set keeps the parser surface small).
_PIL_OPEN_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "TIFF", "WEBP", "HEIF")
_EXIF_HEADER = b"Exif\x00\x00"
_ORIENTATION_TAG = 0x0112
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")


class ImageError(Exception):
    """An image could not be read or written; the message is one human-readable line."""


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no boolean equality
class ImageFile:
    """A decoded image and the metadata worth carrying to the restored copy.

    ``pixels``: H×W, H×W×2 (grey+alpha), H×W×3 (RGB) or H×W×4 (RGBA); uint8 or uint16.
    ``format``: one of :data:`FORMATS`. ``exif``: raw EXIF block (starting with
    ``b"Exif\\0\\0"``) whose Orientation is 1 because it was already applied to ``pixels``;
    ``None`` when the file had none. ``icc_profile``: the embedded ICC profile or ``None``.
    ``bit_depth``: 8 or 16, matching ``pixels.dtype``.
    """

    pixels: np.ndarray
    format: str
    exif: bytes | None = None
    icc_profile: bytes | None = None
    bit_depth: int = 8

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


# --------------------------------------------------------------------------- helpers


@cache
def _register_heif() -> bool:
    """Register pillow-heif's opener and saver with Pillow once; False if unavailable."""
    try:
        import pillow_heif
    except ImportError:  # pragma: no cover - pillow-heif is a project dependency
        return False
    pillow_heif.register_heif_opener()
    return True


def _normalise_format(fmt: str) -> str:
    up = fmt.strip().upper().lstrip(".")
    up = _FORMAT_ALIASES.get(up, up)
    if up not in FORMATS:
        raise ImageError(f"unsupported image format {fmt!r} (supported: {', '.join(FORMATS)})")
    return up


def format_from_path(path: str | os.PathLike[str]) -> str:
    """The format implied by a file name's suffix (``.jpg`` → ``"JPEG"``); ImageError if none."""
    p = Path(path)
    fmt = _SUFFIXES.get(p.suffix.lower())
    if fmt is None:
        raise ImageError(
            f"{p.name}: cannot tell the image format from the suffix {p.suffix!r} "
            f"(use one of {', '.join(sorted(_SUFFIXES))})"
        )
    return fmt


def _sniff_supported_format(data: bytes) -> str | None:
    """Which of our formats the leading magic bytes claim (a claim, not a validation)."""
    if data.startswith(_PNG_SIGNATURE):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "HEIC"
    return None


def _header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG IHDR, JPEG SOF or TIFF IFD0, read without decoding; else None."""
    if data.startswith(_PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_header_size(data)
    if not data.startswith(b"\xff\xd8"):
        return None
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # stand-alone markers
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > end:
                return None
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        if marker == 0xDA or length < 2:  # start of scan before any SOF: malformed
            return None
        pos += 2 + length
    return None


def _too_many_pixels(name: str, width: int, height: int, max_pixels: int) -> ImageError:
    return ImageError(f"{name}: {width}x{height} pixels exceeds the limit of {max_pixels} pixels")


def _too_many_bytes(name: str, size: int, max_bytes: int) -> ImageError:
    return ImageError(f"{name}: file of {size} bytes exceeds the limit of {max_bytes} bytes")


def _tiff_header_size(data: bytes) -> tuple[int, int] | None:
    """(ImageWidth, ImageLength) of a classic TIFF's first IFD; None if not found."""
    endian = "<" if data[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack_from(endian + "I", data, 4)
        (count,) = struct.unpack_from(endian + "H", data, ifd)
        found: dict[int, int] = {}
        for i in range(count):
            tag, typ = struct.unpack_from(endian + "HH", data, ifd + 2 + 12 * i)
            if tag in (256, 257) and typ in (3, 4):
                fmt = endian + ("H" if typ == 3 else "I")
                found[tag] = struct.unpack_from(fmt, data, ifd + 2 + 12 * i + 8)[0]
    except struct.error:
        return None
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


def _check_header_size(data: bytes, name: str, max_pixels: int) -> None:
    """Refuse zero-sized and over-large images from the header alone (PNG, JPEG, TIFF)."""
    size = _header_size(data)
    if size is not None and (size[0] == 0 or size[1] == 0):
        raise ImageError(f"{name}: zero-sized image ({size[0]}x{size[1]} pixels)")
    if size is not None and size[0] * size[1] > max_pixels:
        raise _too_many_pixels(name, size[0], size[1], max_pixels)


def _png_complete(data: bytes) -> bool:
    """Whether a PNG's chunk chain runs whole up to IEND (a cut-off file fails this)."""
    pos, end = len(_PNG_SIGNATURE), len(data)
    while pos + 12 <= end:
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        pos += 12 + length
        if pos > end:
            return False
        if kind == b"IEND":
            return True
    return False


def _sniff_other_format(data: bytes) -> str | None:
    """Name a well-known image format we do not support, for a clearer message."""
    for magic, name in ((b"GIF8", "GIF"), (b"BM", "BMP"), (b"\x00\x00\x01\x00", "ICO")):
        if data.startswith(magic):
            return name
    if data[4:12] in (b"ftypavif", b"ftypavis"):
        return "AVIF"
    return None


# --------------------------------------------------------------------------- EXIF


def _tiff_ifd0(exif: bytes) -> tuple[str, int, int] | None:
    """(endian, start of TIFF header, IFD0 offset) of an EXIF block, or None if malformed."""
    start = len(_EXIF_HEADER) if exif.startswith(_EXIF_HEADER) else 0
    head = exif[start : start + 8]
    if len(head) < 8 or head[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    endian = "<" if head[:2] == b"II" else ">"
    (ifd0,) = struct.unpack(endian + "I", head[4:8])
    return endian, start, ifd0


def _exif_orientation(exif: bytes | None) -> int:
    """The Orientation tag (1..8) in a raw EXIF block; 1 when absent or invalid."""
    if not exif:
        return 1
    parsed = _tiff_ifd0(exif)
    if parsed is None:
        return 1
    endian, start, ifd0 = parsed
    pos = start + ifd0
    try:
        (count,) = struct.unpack_from(endian + "H", exif, pos)
        for i in range(count):
            tag, typ, n = struct.unpack_from(endian + "HHI", exif, pos + 2 + 12 * i)
            if tag == _ORIENTATION_TAG and typ == 3 and n == 1:
                (value,) = struct.unpack_from(endian + "H", exif, pos + 2 + 12 * i + 8)
                return int(value) if 1 <= value <= 8 else 1
    except struct.error:
        return 1
    return 1


def _clean_exif(exif: bytes | None) -> bytes | None:
    """EXIF with Orientation set to 1 and the thumbnail (IFD1) unlinked; other bytes untouched.

    The block is patched in place rather than re-serialised, so maker notes and offsets
    survive. The thumbnail is dropped because it would show the unrotated, unrestored image.
    Returns the block with a ``b"Exif\\0\\0"`` prefix, or None when it is not valid EXIF.
    """
    if not exif:
        return None
    parsed = _tiff_ifd0(exif)
    if parsed is None:
        return None
    endian, start, ifd0 = parsed
    buf = bytearray(exif[start:])
    try:
        (count,) = struct.unpack_from(endian + "H", buf, ifd0)
        for i in range(count):
            entry = ifd0 + 2 + 12 * i
            tag, typ, n = struct.unpack_from(endian + "HHI", buf, entry)
            if tag == _ORIENTATION_TAG and typ == 3 and n == 1:
                struct.pack_into(endian + "H", buf, entry + 8, 1)
        struct.pack_into(endian + "I", buf, ifd0 + 2 + 12 * count, 0)  # no IFD1
    except struct.error:
        return None
    return _EXIF_HEADER + bytes(buf)


# TIFF tags that describe the file's own layout, never copied into an EXIF block.
# fmt: off
_TIFF_STRUCTURAL_TAGS = frozenset({
    254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 280, 281, 284, 317, 320,
    322, 323, 324, 325, 330, 338, 339, 340, 341, 347, 530, 531, 532, 700, 33723, 34377, 34665,
    34675, 34853, 37724, 50341,
})
# fmt: on


def _exif_from_tiff(im: Image.Image) -> bytes | None:
    """Build an EXIF block from a TIFF's descriptive tags (Make, Model, Exif sub-IFD, ...)."""
    src = im.getexif()
    out = Image.Exif()
    for tag, value in src.items():
        if tag not in _TIFF_STRUCTURAL_TAGS and isinstance(value, (str, int, float, bytes, tuple)):
            out[tag] = value
    try:
        sub = src.get_ifd(0x8769)
    except Exception:  # noqa: BLE001 - a broken sub-IFD just isn't carried
        sub = {}
    if sub:
        out[0x8769] = dict(sub)
    if not len(out):
        return None
    try:
        return out.tobytes()
    except Exception:  # noqa: BLE001 - unrepresentable tag values: carry no EXIF
        return None


def _apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip an H×W[×C] array as EXIF Orientation says, returning a contiguous array."""
    a = pixels
    if orientation == 2:
        a = a[:, ::-1]
    elif orientation == 3:
        a = a[::-1, ::-1]
    elif orientation == 4:
        a = a[::-1]
    elif orientation == 5:
        a = a.swapaxes(0, 1)
    elif orientation == 6:
        a = a.swapaxes(0, 1)[:, ::-1]
    elif orientation == 7:
        a = a.swapaxes(0, 1)[::-1, ::-1]
    elif orientation == 8:
        a = a.swapaxes(0, 1)[::-1]
    else:
        return pixels
    return np.ascontiguousarray(a)


# --------------------------------------------------------------------------- reading


def read_image(
    path: str | os.PathLike[str],
    *,
    max_pixels: int = 200_000_000,
    max_bytes: int | None = None,
) -> ImageFile:
    """Read a JPEG, PNG, TIFF, WebP or HEIC file; see :func:`decode_image` for the result.

    Raises ImageError for a missing file, a directory, an empty or over-large file and
    everything :func:`decode_image` refuses.
    """
    p = Path(path)
    name = p.name or str(p)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ImageError(f"{name}: missing file (no such file or directory)") from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot access file ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"{name}: is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"{name}: not a regular file")
    if st.st_size == 0:
        raise ImageError(f"{name}: file is empty")
    if max_bytes is not None and st.st_size > max_bytes:
        raise _too_many_bytes(name, st.st_size, max_bytes)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ImageError(f"{name}: cannot read file ({exc.strerror or exc})") from None
    return decode_image(data, name=name, max_pixels=max_pixels, max_bytes=max_bytes)


def decode_image(
    data: bytes | bytearray | memoryview,
    *,
    name: str = "image",
    max_pixels: int = 200_000_000,
    max_bytes: int | None = None,
) -> ImageFile:
    """Decode an in-memory JPEG, PNG, TIFF, WebP or HEIC file.

    ``name`` is used in error messages only. The header's width×height is checked against
    ``max_pixels`` before any pixel is decoded (Pillow's own decompression-bomb limit,
    ``2 * PIL.Image.MAX_IMAGE_PIXELS`` ≈ 179 MP by default, applies as well). 16-bit PNG and
    TIFF are decoded losslessly to uint16; other images become uint8 RGB, RGBA, grey or
    grey+alpha (palette → RGB/RGBA, CMYK/YCbCr/LAB → RGB, 1-bit → grey). The EXIF
    Orientation is applied to the pixels and reset to 1 in the returned EXIF block.
    """
    if isinstance(data, memoryview):
        data = data.tobytes()
    if max_bytes is not None and len(data) > max_bytes:
        raise _too_many_bytes(name, len(data), max_bytes)
    if not data:
        raise ImageError(f"{name}: file is empty")
    _register_heif()
    # Never accept a partial image; this is Pillow's default, asserted rather than assumed.
    if _PILImageFile.LOAD_TRUNCATED_IMAGES:
        raise ImageError(f"{name}: refusing to decode while PIL LOAD_TRUNCATED_IMAGES is enabled")
    _check_header_size(data, name, max_pixels)
    # Warnings (odd metadata, Pillow's bomb *warning* above 89 MP) are left alone on purpose:
    # warnings.catch_warnings() is not thread-safe and a web service decodes in threads.
    try:
        with Image.open(io.BytesIO(data), formats=_PIL_OPEN_FORMATS) as im:
            return _decode_opened(im, data, name, max_pixels)
    except ImageError:
        raise
    except UnidentifiedImageError:
        if _sniff_supported_format(data) == "TIFF" and _tiff_ifd_in_range(data):
            result = _decode_tiff_without_pil(data, name, max_pixels)
            if result is not None:
                return result
        if _sniff_supported_format(data):
            raise ImageError(
                f"{name}: truncated or corrupt image data "
                f"({_sniff_supported_format(data)} header not readable)"
            ) from None
        other = _sniff_other_format(data)
        if other:
            raise ImageError(
                f"{name}: unsupported image format {other} (supported: {', '.join(FORMATS)})"
            ) from None
        raise ImageError(f"{name}: not an image file (unrecognised format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise ImageError(
            f"{name}: image exceeds the decoder's limit of {limit} pixels "
            f"(possible decompression bomb)"
        ) from None
    except MemoryError:
        raise ImageError(f"{name}: not enough memory to decode the image") from None
    except Exception as exc:  # noqa: BLE001 - every decoder failure becomes ImageError
        raise ImageError(f"{name}: truncated or corrupt image data ({_short(exc)})") from None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _decode_opened(im: Image.Image, data: bytes, name: str, max_pixels: int) -> ImageFile:
    fmt = _FORMAT_ALIASES.get(im.format or "", im.format or "")
    if fmt not in FORMATS:
        raise ImageError(f"{name}: unsupported image format {im.format}")
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: zero-sized image ({width}x{height} pixels)")
    if width * height > max_pixels:
        raise _too_many_pixels(name, width, height, max_pixels)

    if fmt == "PNG" and not _png_complete(data):
        raise ImageError(f"{name}: truncated or corrupt image data (PNG ends before IEND)")
    icc = im.info.get("icc_profile") or None
    pixels: np.ndarray | None = None
    if fmt == "PNG" and _png_bit_depth(data) == 16:
        pixels = _decode_png16(data, name)
    elif fmt == "TIFF" and _pil_tiff_is_16bit(im):
        pixels = _decode_tiff16(data)
    elif fmt == "JPEG":
        pixels = _decode_jpeg_fast(im, data)
    if pixels is None:
        im.load()  # inside decode_image's try: truncation/corruption surfaces here
        pixels, icc = _pil_to_array(im, icc)

    if fmt == "TIFF":
        orientation = int(im.getexif().get(_ORIENTATION_TAG, 1) or 1)
        exif = _clean_exif(_exif_from_tiff(im))
    else:
        raw = im.info.get("exif")
        if isinstance(raw, str):
            raw = raw.encode("latin-1")
        orientation = _exif_orientation(raw)
        exif = _clean_exif(raw)
    if orientation not in range(1, 9):
        orientation = 1
    pixels = _apply_orientation(pixels, orientation)
    bit_depth = 16 if pixels.dtype == np.uint16 else 8
    return ImageFile(pixels=pixels, format=fmt, exif=exif, icc_profile=icc, bit_depth=bit_depth)


def _decode_jpeg_fast(im: Image.Image, data: bytes) -> np.ndarray | None:
    """A plain YCbCr or grey JPEG decoded by OpenCV straight into an array; None otherwise.

    Both libraries decode with libjpeg-turbo's defaults (same pixels, tested), but OpenCV
    skips Pillow's copy into an Image and out again: half the time and memory at 12 MP.
    Files that do not end with the EOI marker go to Pillow, which refuses truncated data
    (OpenCV would fill the missing rows with grey), as do Adobe-marked and MPO files.
    """
    import cv2

    if (im.format != "JPEG" or im.mode not in ("RGB", "L") or "adobe" in im.info
            or not data.endswith(b"\xff\xd9")):
        return None
    flags = (cv2.IMREAD_COLOR_RGB if im.mode == "RGB" else cv2.IMREAD_GRAYSCALE)
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags | cv2.IMREAD_IGNORE_ORIENTATION)
    if pixels is None or pixels.shape[:2] != (im.size[1], im.size[0]):
        return None
    return pixels


def _pil_to_array(im: Image.Image, icc: bytes | None) -> tuple[np.ndarray, bytes | None]:
    """A loaded Pillow image as a writable array in one of our layouts (and the ICC to keep)."""
    mode = im.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        pass
    elif mode == "1":
        im = im.convert("L")
    elif mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode == "La":
        im = im.convert("LA")
    elif mode in ("RGBa", "RGBX"):
        im = im.convert("RGBA" if mode == "RGBa" else "RGB")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
        if mode == "CMYK":
            icc = None  # a CMYK profile does not describe the converted RGB values
    elif mode.startswith("I;16"):
        arr = np.asarray(im)
        return arr.astype(np.uint16, copy=True), icc
    elif mode == "I":
        arr = np.asarray(im)
        return np.clip(arr, 0, 65535).astype(np.uint16), icc
    elif mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        if arr.size and np.nanmax(arr) <= 1.0:
            arr = arr * 65535.0
        return np.clip(np.nan_to_num(arr), 0, 65535).round().astype(np.uint16), icc
    else:
        im = im.convert("RGBA" if "A" in mode else "RGB")
    return np.array(im), icc


def _png_bit_depth(data: bytes) -> int:
    """Bit depth from a PNG's IHDR (0 if the header is malformed)."""
    if len(data) < 33 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return 0
    return data[24]


def _decode_png16(data: bytes, name: str) -> np.ndarray:
    """Decode a 16-bit PNG losslessly with OpenCV (RGB order, grey+alpha kept 2-channel)."""
    import cv2

    color_type = data[25]
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ImageError(f"{name}: truncated or corrupt image data (16-bit PNG)")
    arr = _bgr_to_rgb(arr)
    if color_type == 4 and arr.ndim == 3 and arr.shape[2] == 4:  # grey+alpha came back as RGBA
        arr = np.ascontiguousarray(arr[..., [0, 3]])
    elif color_type == 0 and arr.ndim == 3:
        arr = np.ascontiguousarray(arr[..., 0])
    return arr.astype(np.uint16, copy=False)


def _bgr_to_rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 3:
        return np.ascontiguousarray(arr[..., ::-1])
    if arr.ndim == 3 and arr.shape[2] == 4:
        return np.ascontiguousarray(arr[..., [2, 1, 0, 3]])
    return arr


def _tiff16_page(tif: object) -> object | None:
    """The first page of an open TiffFile if it is 16-bit unsigned grey[+alpha]/RGB[A]."""
    page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]  # type: ignore[attr-defined]
    spp = int(page.samplesperpixel)
    photometric = int(page.photometric)  # 1 = MINISBLACK, 2 = RGB
    if page.bitspersample != 16 or int(page.sampleformat) != 1 or photometric not in (1, 2):
        return None
    if spp not in (1, 2, 3, 4) or (photometric == 2) != (spp >= 3):
        return None
    return page


def _pil_tiff_is_16bit(im: Image.Image) -> bool:
    """Whether an opened TIFF stores 16 bits per sample (from its tags, nothing decoded)."""
    tags = getattr(im, "tag_v2", None)
    if tags is None:
        return False
    bits = tags.get(258, (1,))
    bits = bits if isinstance(bits, tuple) else (bits,)
    return bool(bits) and all(int(b) == 16 for b in bits)


def _decode_tiff16(data: bytes) -> np.ndarray | None:
    """Decode a 16-bit-per-sample TIFF (grey, grey+alpha, RGB, RGBA) with tifffile; else None."""
    import tifffile

    try:
        tif = tifffile.TiffFile(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - not for tifffile: let Pillow decide
        return None
    with tif:
        try:
            page = _tiff16_page(tif)
        except Exception:  # noqa: BLE001
            return None
        if page is None:
            return None
        arr = page.asarray()  # type: ignore[attr-defined]
        spp = int(page.samplesperpixel)  # type: ignore[attr-defined]
    if arr.ndim == 3 and arr.shape[0] == spp and arr.shape[-1] != spp:  # planar → interleaved
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise ValueError(f"unexpected TIFF sample layout {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.uint16)


def _tiff_ifd_in_range(data: bytes) -> bool:
    """Whether a classic TIFF's first IFD offset points inside the data (cut files fail)."""
    if len(data) < 8 or data[:4] not in (b"II*\x00", b"MM\x00*"):
        return False
    (offset,) = struct.unpack("<I" if data[:2] == b"II" else ">I", data[4:8])
    return 8 <= offset <= len(data) - 2


def _decode_tiff_without_pil(data: bytes, name: str, max_pixels: int) -> ImageFile | None:
    """16-bit TIFFs Pillow cannot open (e.g. grey+alpha), decoded by tifffile alone."""
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = _tiff16_page(tif)
            if page is None:
                return None
            height, width = int(page.imagelength), int(page.imagewidth)  # type: ignore[attr-defined]
            icc = page.tags.get(34675)  # type: ignore[attr-defined]
            orient = page.tags.get(274)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - not a TIFF tifffile understands either
        return None
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: zero-sized image ({width}x{height} pixels)")
    if width * height > max_pixels:
        raise _too_many_pixels(name, width, height, max_pixels)
    try:
        pixels = _decode_tiff16(data)
    except Exception as exc:  # noqa: BLE001
        raise ImageError(f"{name}: truncated or corrupt image data ({_short(exc)})") from None
    if pixels is None:
        return None
    orientation = int(orient.value) if orient is not None else 1
    pixels = _apply_orientation(pixels, orientation if 1 <= orientation <= 8 else 1)
    icc_bytes = bytes(icc.value) if icc is not None else None
    return ImageFile(pixels=pixels, format="TIFF", exif=None, icc_profile=icc_bytes, bit_depth=16)


# --------------------------------------------------------------------------- writing


def write_image(
    path: str | os.PathLike[str],
    pixels: np.ndarray,
    *,
    like: ImageFile | None = None,
    format: str | None = None,  # noqa: A002 - the natural name, mirrors Pillow
    quality: int = 95,
    overwrite: bool = True,
) -> None:
    """Encode ``pixels`` and write them to ``path`` atomically.

    The format comes from ``format`` or the path's suffix. EXIF (Orientation 1) and ICC are
    carried over from ``like`` (see :func:`encode_image`). The encoded bytes go to a hidden
    temp file (``.NAME.XXXX.tmp``) in the target's directory, are fsync'ed and renamed over
    ``path``; on any failure the temp file is removed and an existing ``path`` is untouched.
    With ``overwrite=False`` an existing ``path`` is refused. Parent folders are created.
    Raises ImageError on failure (ValueError for an unusable ``pixels`` array).
    """
    p = Path(path)
    name = p.name or str(p)
    fmt = _normalise_format(format) if format else format_from_path(p)
    if p.is_dir():
        raise ImageError(f"{name}: is a directory, cannot write an image there")
    if not overwrite and os.path.lexists(p):
        raise ImageError(f"{name}: file exists (not overwriting)")
    try:
        data = encode_image(pixels, fmt, like=like, quality=quality)
    except ImageError as exc:
        raise ImageError(f"{name}: {exc}") from None
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or exc
        raise ImageError(f"{name}: cannot create folder {p.parent} ({reason})") from None
    _atomic_write(p, data, overwrite=overwrite)


def _atomic_write(path: Path, data: bytes, *, overwrite: bool) -> None:
    name = path.name
    tmp = path.with_name(f".{name}.{secrets.token_hex(4)}.tmp")
    try:
        # O_EXCL: never clobber; 0o666 lets the umask decide the final permissions.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        raise ImageError(f"{name}: cannot write file ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if overwrite and hasattr(os, "fchmod"):
                try:  # replacing a file keeps its permissions
                    os.fchmod(f.fileno(), stat.S_IMODE(os.stat(path).st_mode))
                except OSError:
                    pass
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_no_clobber(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, ImageError):
            raise
        if isinstance(exc, OSError):
            raise ImageError(f"{name}: cannot write file ({exc.strerror or exc})") from None
        raise
    _fsync_dir(path.parent)


def _link_no_clobber(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path`` only if ``path`` does not exist (atomically where possible)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise ImageError(f"{path.name}: file exists (not overwriting)") from None
    except OSError:  # hard links unsupported on this file system: check, then rename
        if os.path.lexists(path):
            raise ImageError(f"{path.name}: file exists (not overwriting)") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); silently skipped where directories can't be opened."""
    flags = getattr(os, "O_DIRECTORY", None)
    if flags is None:
        return
    try:
        fd = os.open(folder, os.O_RDONLY | flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def encode_image(
    pixels: np.ndarray,
    format: str,  # noqa: A002
    *,
    like: ImageFile | None = None,
    quality: int = 95,
) -> bytes:
    """Encode an array (layouts as :class:`ImageFile`) to JPEG, PNG, TIFF, WebP or HEIC bytes.

    * 16-bit arrays become 16-bit PNG/TIFF (exact); for JPEG, WebP and HEIC they are reduced
      to 8 bits as ``round(x / 257)``.
    * JPEG cannot hold alpha: it is dropped (not composited). WebP/HEIC store grey as RGB.
    * EXIF (Orientation forced to 1, thumbnail dropped) and the ICC profile come from
      ``like``; every format here keeps both, except 16-bit TIFF which keeps the ICC profile
      and the plain-text EXIF tags of IFD0 (Make, Model, ...).
    * ``quality`` (1..100) drives JPEG, WebP and HEIC. JPEG uses 4:4:4 chroma for
      ``quality >= 90`` (restored shadows carry strong colour detail) and Pillow's 4:2:0
      below; no Huffman optimisation pass (it costs ~30 % encode time for ~3 % size).
    """
    fmt = _normalise_format(format)
    arr = _check_pixels(pixels)
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be within 1..100, got {quality}")
    exif = _clean_exif(like.exif) if like is not None else None
    icc = like.icc_profile if like is not None else None
    try:
        if arr.dtype == np.uint16:
            if fmt == "PNG":
                return _encode_png16(arr, exif=exif, icc=icc)
            if fmt == "TIFF":
                return _encode_tiff16(arr, exif=exif, icc=icc)
            arr = _to_uint8(arr)
        return _encode_pil(arr, fmt, exif=exif, icc=icc, quality=int(quality))
    except ImageError:
        raise
    except MemoryError:
        raise ImageError(f"not enough memory to encode the image as {fmt}") from None
    except Exception as exc:  # noqa: BLE001 - encoder failures become ImageError
        raise ImageError(f"cannot encode the image as {fmt} ({_short(exc)})") from None


def _check_pixels(pixels: np.ndarray) -> np.ndarray:
    arr = np.asarray(pixels)
    if arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"pixels must be uint8 or uint16, got {arr.dtype}")
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 2, 3, 4))):
        raise ValueError(f"pixels must be H×W, H×W×2, H×W×3 or H×W×4, got shape {arr.shape}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"cannot encode a zero-sized image (shape {arr.shape})")
    return arr


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """uint16 → uint8 as round(x / 257), exact for values that came from 8 bits (x = 257·v)."""
    return ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _encode_pil(
    arr: np.ndarray, fmt: str, *, exif: bytes | None, icc: bytes | None, quality: int
) -> bytes:
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if fmt == "JPEG" and channels in (2, 4):
        arr = arr[..., 0] if channels == 2 else arr[..., :3]  # JPEG has no alpha: drop it
    im = Image.fromarray(arr)
    if fmt in ("WEBP", "HEIC") and im.mode in ("L", "LA"):
        im = im.convert("RGB" if im.mode == "L" else "RGBA")
    params: dict[str, object] = {}
    if exif and fmt == "TIFF":
        params["exif"] = _exif_text_tags(exif)
    elif exif:
        params["exif"] = exif
    if icc:
        params["icc_profile"] = icc
    if fmt == "JPEG":
        params.update(quality=quality, optimize=False, subsampling=0 if quality >= 90 else 2)
    elif fmt == "PNG":
        params.update(compress_level=3)  # ~2x faster than 6 for ~10 % more bytes
    elif fmt == "TIFF":
        params.update(compression="tiff_deflate")
    elif fmt == "WEBP":
        params.update(quality=quality, method=4)
    elif fmt == "HEIC":
        if not _register_heif():  # pragma: no cover
            raise ImageError("HEIC support needs the pillow-heif package")
        params.update(quality=quality)
    buf = io.BytesIO()
    pil_format = "HEIF" if fmt == "HEIC" else fmt
    try:
        im.save(buf, format=pil_format, **params)
    except ValueError as exc:
        if "exif" not in params or "EXIF" not in str(exc).upper():
            raise
        params.pop("exif")  # an over-long EXIF block (JPEG: 64 kB) is dropped, not fatal
        buf = io.BytesIO()
        im.save(buf, format=pil_format, **params)
    return buf.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def _encode_png16(arr: np.ndarray, *, exif: bytes | None, icc: bytes | None) -> bytes:
    """A 16-bit PNG (grey, grey+alpha, RGB, RGBA) with the Sub filter, plus iCCP/eXIf chunks."""
    h, w = arr.shape[:2]
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    bpp = 2 * channels
    raw = np.ascontiguousarray(arr, dtype=">u2").view(np.uint8).reshape(h, w * bpp)
    rows = np.empty((h, w * bpp + 1), np.uint8)
    rows[:, 0] = 1  # filter type Sub: each byte minus the byte one pixel to the left
    rows[:, 1 : bpp + 1] = raw[:, :bpp]
    np.subtract(raw[:, bpp:], raw[:, :-bpp], out=rows[:, bpp + 1 :])
    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    out = [_PNG_SIGNATURE, _png_chunk(b"IHDR", ihdr)]
    if icc:  # iCCP: name, NUL, compression method 0, zlib stream
        out.append(_png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)))
    if exif:  # eXIf holds the TIFF structure without the "Exif\0\0" prefix
        out.append(_png_chunk(b"eXIf", exif.removeprefix(_EXIF_HEADER)))
    out.append(_png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 3)))
    out.append(_png_chunk(b"IEND", b""))
    return b"".join(out)


# EXIF IFD0 text tags that a TIFF carries as its own tags.
_TIFF_TEXT_TAGS = (270, 271, 272, 305, 306, 315, 33432)


def _exif_text_tags(exif: bytes) -> Image.Exif:
    """The ASCII IFD0 tags (Description, Make, Model, Software, DateTime, Artist, Copyright)."""
    src = Image.Exif()
    src.load(exif)
    out = Image.Exif()
    for tag in _TIFF_TEXT_TAGS:
        value = src.get(tag)
        if isinstance(value, str) and value and value.isascii():
            out[tag] = value
    return out


def _encode_tiff16(arr: np.ndarray, *, exif: bytes | None, icc: bytes | None) -> bytes:
    """A 16-bit deflate-compressed TIFF via tifffile, with the ICC profile and text tags."""
    import tifffile

    channels = 1 if arr.ndim == 2 else arr.shape[2]
    kwargs: dict[str, object] = {
        "photometric": "rgb" if channels >= 3 else "minisblack",
        "planarconfig": "contig",
        "compression": "zlib",
        "metadata": None,
        "software": False,
    }
    if channels in (2, 4):
        kwargs["extrasamples"] = ("unassalpha",)
    extratags: list[tuple[int, str, int, object, bool]] = []
    if exif:
        for tag, value in _exif_text_tags(exif).items():
            extratags.append((tag, "s", 0, value, True))
    extratags.append((274, "H", 1, 1, True))  # Orientation: top-left
    if icc:
        kwargs["iccprofile"] = icc
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, extratags=extratags, **kwargs)
    return buf.getvalue()
