"""Reading image files: bytes in, an upright :class:`ImageFile` out (or one ImageError line).

JPEG, PNG, TIFF, WebP and HEIC through Pillow (16-bit PNG through OpenCV; TIFFs deeper than 8
bits, floats included, through tifffile and imagecodecs; all lossless); camera RAW through
LibRaw (:mod:`.raw`), recognised by content. The header size is checked against
``max_pixels`` before any pixel is decoded. Metadata worth carrying (EXIF, XMP, IPTC, ICC)
comes along; the EXIF Orientation is applied to the pixels and reset to 1.

Pixel layouts: ``H×W`` (grey), ``H×W×2`` (grey + alpha), ``H×W×3`` (RGB), ``H×W×4`` (RGBA).
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from PIL import ImageFile as _PILImageFile

from .. import strips
from .formats import (
    FORMATS,
    RAW,
    ImageError,
    header_size,
    png_bit_depth,
    png_complete,
    sniff_format,
    sniff_other_format,
    tiff_ifd_in_range,
)
from .metadata import Metadata, read_metadata
from .rawoptions import RawOptions

_FORMAT_ALIASES: dict[str, str] = {"MPO": "JPEG"}
# Pillow format names we let Image.open try (a restricted set keeps the parser surface small).
_PIL_OPEN_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "TIFF", "WEBP", "HEIF")
_ORIENTATION_TAG = 0x0112
# TIFF tags that are photo metadata (descriptions, EXIF/GPS pointers, XMP, IPTC).
_TIFF_METADATA_TAGS = frozenset({270, 271, 272, 305, 306, 315, 700, 33432, 33723, 34665, 34853})
# Pillow `info` keys that hold metadata: EXIF, XMP (JPEG/WebP/PNG), IPTC (JPEG APP13, PNG).
_INFO_METADATA_KEYS = ("exif", "xmp", "photoshop", "XML:com.adobe.xmp", "Raw profile type iptc")
_DEFAULT_RAW = RawOptions()


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no boolean equality
class ImageFile:
    """A decoded image and the metadata worth carrying to the restored copy.

    ``pixels``: H×W, H×W×2 (grey+alpha), H×W×3 (RGB) or H×W×4 (RGBA); uint8 or uint16.
    ``format``: one of :data:`FORMATS`, or ``"RAW"`` for a camera RAW file. ``exif``: EXIF
    block (starting with ``b"Exif\\0\\0"``) whose Orientation is 1 because it was already
    applied to ``pixels``; ``None`` when the file had none. ``icc_profile``: the embedded ICC
    profile or ``None``. ``bit_depth``: 8 or 16, matching ``pixels.dtype``. ``xmp``: the XMP
    packet; ``iptc``: IPTC datasets (pyexiv2 keys → value or list of values).
    ``chroma_sampling``: a JPEG's colour subsampling in the upright pixels, ``"4:4:4"``,
    ``"4:2:2"``, ``"4:4:0"`` or ``"4:2:0"`` (a JPEG output keeps it: :func:`encode_image`);
    ``None`` for other files.
    """

    pixels: np.ndarray
    format: str
    exif: bytes | None = None
    icc_profile: bytes | None = None
    bit_depth: int = 8
    xmp: str | None = None
    iptc: dict[str, str | list[str]] | None = None
    chroma_sampling: str | None = None

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def metadata(self) -> Metadata:
        """EXIF, XMP and IPTC, as :mod:`.metadata` carries them."""
        return Metadata(exif=self.exif, xmp=self.xmp, iptc=self.iptc)


@cache
def register_heif() -> bool:
    """Register pillow-heif's opener and saver with Pillow once; False if unavailable."""
    try:
        import pillow_heif
    except ImportError:  # pragma: no cover - pillow-heif is a project dependency
        return False
    pillow_heif.register_heif_opener()
    return True


def too_many_pixels(name: str, width: int, height: int, max_pixels: int) -> ImageError:
    return ImageError(f"{name}: {width}x{height} pixels exceeds the limit of {max_pixels} pixels")


def _too_many_bytes(name: str, size: int, max_bytes: int) -> ImageError:
    return ImageError(f"{name}: file of {size} bytes exceeds the limit of {max_bytes} bytes")


def _check_header_size(data: bytes, name: str, max_pixels: int) -> None:
    """Refuse zero-sized and over-large images from the header alone (PNG, JPEG, TIFF)."""
    size = header_size(data)
    if size is not None and (size[0] == 0 or size[1] == 0):
        raise ImageError(f"{name}: zero-sized image ({size[0]}x{size[1]} pixels)")
    if size is not None and size[0] * size[1] > max_pixels:
        raise too_many_pixels(name, size[0], size[1], max_pixels)


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
    raw: RawOptions | None = None,
) -> ImageFile:
    """Read a JPEG, PNG, TIFF, WebP, HEIC or camera RAW file; see :func:`decode_image`.

    Raises ImageError for a missing file, a directory, an empty or over-large file and
    everything :func:`decode_image` refuses.
    """
    p = Path(path)
    name = p.name or str(p)
    try:
        st = p.stat()
    except FileNotFoundError:
        if p.is_symlink():
            raise ImageError(f"{name}: broken link (its target {os.readlink(p)} is missing)"
                             ) from None
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
    return decode_image(data, name=name, max_pixels=max_pixels, max_bytes=max_bytes, raw=raw)


def decode_image(
    data: bytes | bytearray | memoryview,
    *,
    name: str = "image",
    max_pixels: int = 200_000_000,
    max_bytes: int | None = None,
    raw: RawOptions | None = None,
) -> ImageFile:
    """Decode an in-memory JPEG, PNG, TIFF, WebP, HEIC or camera RAW file.

    ``name`` is used in error messages and, for TIFF-shaped files, as a hint that a file is
    RAW. The header's width×height is checked against ``max_pixels`` before any pixel is
    decoded (Pillow's own decompression-bomb limit, ``2 * PIL.Image.MAX_IMAGE_PIXELS`` ≈
    179 MP by default, applies as well). 16-bit PNG and TIFF are decoded losslessly to
    uint16 (32-bit and float TIFF samples scaled to it, floats as 0..1), RAW is developed to
    uint16 RGB (``raw``: how; see :class:`RawOptions`); other images become uint8 RGB, RGBA,
    grey or grey+alpha (palette → RGB/RGBA, CMYK/YCbCr/LAB → RGB, 1-bit → grey). The EXIF
    Orientation is applied to the pixels and reset to 1.
    """
    if isinstance(data, (memoryview, bytearray)):
        data = bytes(data)
    if max_bytes is not None and len(data) > max_bytes:
        raise _too_many_bytes(name, len(data), max_bytes)
    if not data:
        raise ImageError(f"{name}: file is empty")
    _check_header_size(data, name, max_pixels)
    claimed = sniff_format(data, name)
    if claimed == RAW:
        from .raw import NotRawError, decode_raw

        try:
            return decode_raw(data, name, max_pixels, raw or _DEFAULT_RAW)
        except NotRawError:
            if sniff_format(data) != "TIFF":  # only the name said RAW: a plain TIFF after all
                raise
            claimed = "TIFF"
    formats = _PIL_OPEN_FORMATS
    if claimed in (None, "HEIC"):
        register_heif()
    else:  # pillow-heif costs 11 ms to import; a file that is not HEIC never needs it
        formats = tuple(f for f in formats if f != "HEIF")
    # Never accept a partial image; this is Pillow's default, asserted rather than assumed.
    if _PILImageFile.LOAD_TRUNCATED_IMAGES:
        raise ImageError(f"{name}: refusing to decode while PIL LOAD_TRUNCATED_IMAGES is enabled")
    # Warnings (odd metadata, Pillow's bomb *warning* above 89 MP) are left alone on purpose:
    # warnings.catch_warnings() is not thread-safe and a web service decodes in threads.
    try:
        with Image.open(io.BytesIO(data), formats=formats) as im:
            return _decode_opened(im, data, name, max_pixels)
    except ImageError:
        raise
    except UnidentifiedImageError:
        if claimed == "TIFF" and tiff_ifd_in_range(data):
            result = _decode_tiff_without_pil(data, name, max_pixels)
            if result is not None:
                return result
        if claimed:
            raise ImageError(
                f"{name}: truncated or corrupt image data ({claimed} header not readable)"
            ) from None
        other = sniff_other_format(data)
        if other:
            raise ImageError(
                f"{name}: unsupported image format {other} (supported: {', '.join(FORMATS)}, "
                "camera RAW)"
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
        raise ImageError(f"{name}: truncated or corrupt image data ({short(exc)})") from None


def short(exc: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _has_metadata(im: Image.Image, fmt: str) -> bool:
    """Whether Pillow saw EXIF, XMP or IPTC in the file (so exiv2 is worth running)."""
    if fmt == "TIFF":
        tags = getattr(im, "tag_v2", None)
        return tags is not None and not _TIFF_METADATA_TAGS.isdisjoint(tags.keys())
    return any(im.info.get(key) for key in _INFO_METADATA_KEYS)


def _decode_opened(im: Image.Image, data: bytes, name: str, max_pixels: int) -> ImageFile:
    fmt = _FORMAT_ALIASES.get(im.format or "", im.format or "")
    fmt = "HEIC" if fmt == "HEIF" else fmt
    if fmt not in FORMATS:
        raise ImageError(f"{name}: unsupported image format {im.format}")
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: zero-sized image ({width}x{height} pixels)")
    if width * height > max_pixels:
        raise too_many_pixels(name, width, height, max_pixels)

    if fmt == "PNG" and not png_complete(data):
        raise ImageError(f"{name}: truncated or corrupt image data (PNG ends before IEND)")
    icc = im.info.get("icc_profile") or None
    pixels: np.ndarray | None = None
    if fmt == "PNG" and png_bit_depth(data) == 16:
        pixels = _decode_png16(data, name)
    elif fmt == "TIFF" and _pil_tiff_is_deep(im):
        pixels = _decode_tiff_deep(data)
    elif fmt == "JPEG":
        pixels = _decode_jpeg_fast(im, data)
    elif fmt == "HEIC" and int(im.info.get("bit_depth") or 8) > 8:
        pixels = _decode_heic_deep(data, im.size)
    if pixels is None:
        im.load()  # inside decode_image's try: truncation/corruption surfaces here
        pixels, icc = _pil_to_array(im, icc)

    orientation = int(im.getexif().get(_ORIENTATION_TAG, 1) or 1)
    pixels = _apply_orientation(pixels, orientation if 1 <= orientation <= 8 else 1)
    meta = read_metadata(data) if _has_metadata(im, fmt) else Metadata()
    bit_depth = 16 if pixels.dtype == np.uint16 else 8
    return ImageFile(pixels=pixels, format=fmt, exif=meta.exif, icc_profile=icc,
                     bit_depth=bit_depth, xmp=meta.xmp, iptc=meta.iptc,
                     chroma_sampling=_jpeg_sampling(im, orientation) if fmt == "JPEG" else None)


#: Pillow's `JpegImagePlugin.get_sampling` codes → the usual names.
_SAMPLINGS = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}


def _jpeg_sampling(im: Image.Image, orientation: int) -> str | None:
    """A colour JPEG's chroma subsampling from its header, as it lies in the upright pixels
    (an orientation that swaps the axes turns 4:2:2's halved columns into halved rows, 4:4:0);
    None for grey or unusual ones."""
    from PIL import JpegImagePlugin

    sampling = _SAMPLINGS.get(JpegImagePlugin.get_sampling(im)) if im.mode != "L" else None
    return "4:4:0" if sampling == "4:2:2" and orientation in (5, 6, 7, 8) else sampling


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
        return _to_uint16(np.asarray(im)), icc
    else:
        im = im.convert("RGBA" if "A" in mode else "RGB")
    return np.array(im), icc


def _decode_heic_deep(data: bytes, size: tuple[int, int]) -> np.ndarray | None:
    """A 10- or 12-bit HEIC (what cameras and phones write for latitude) as uint16 on the full
    0..65535 scale (v x 65535 / (2^bits - 1), rounded); Pillow's plugin would reduce it to 8
    bits. libheif applies the file's rotation and mirroring as it does for Pillow; None if
    the result does not match the size Pillow saw."""
    import pillow_heif

    heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=False)
    bits = int(heif.info.get("bit_depth") or 8)
    arr = np.asarray(heif)
    if arr.dtype != np.uint16 or arr.shape[1::-1] != tuple(size) or not 8 < bits < 16:
        return None
    top = (1 << bits) - 1
    values = np.arange(65536, dtype=np.uint32) >> (16 - bits)  # pillow-heif: bits at the top
    table = ((values * 65535 + top // 2) // top).astype(np.uint16)
    return strips.look_up(table, arr, np.empty_like(arr))


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


#: TIFF sample types decoded by tifffile (Pillow reduces 16-bit RGB to 8 bits and opens no
#: float or 32-bit RGB): (SampleFormat, BitsPerSample). 1 = unsigned integer, 3 = float.
_TIFFFILE_SAMPLES = frozenset({(1, 8), (1, 16), (1, 32), (3, 16), (3, 32), (3, 64)})


def _tiff_layout(page: object) -> str | None:
    """None if we can take a TIFF page's pixels (grey[+alpha] or RGB[A], samples as in
    _TIFFFILE_SAMPLES), else what the page holds, for the error message."""
    spp = int(page.samplesperpixel)  # type: ignore[attr-defined]
    photometric = int(page.photometric)  # type: ignore[attr-defined]  # 1 = MINISBLACK, 2 = RGB
    sample = (int(page.sampleformat), int(page.bitspersample))  # type: ignore[attr-defined]
    if (sample in _TIFFFILE_SAMPLES and photometric in (1, 2) and spp in (1, 2, 3, 4)
            and (photometric == 2) == (spp >= 3)):
        return None
    kind = {1: "unsigned", 2: "signed", 3: "float"}.get(sample[0], f"format {sample[0]}")
    return f"{spp} sample(s) of {sample[1]}-bit {kind} per pixel, photometric {photometric}"


def _pil_tiff_is_deep(im: Image.Image) -> bool:
    """Whether an opened TIFF stores more than 8 bits or floats per sample (from its tags,
    nothing decoded): those go to tifffile, which keeps them."""
    tags = getattr(im, "tag_v2", None)
    if tags is None:
        return False
    bits = tags.get(258, (1,))
    bits = bits if isinstance(bits, tuple) else (bits,)
    return bool(bits) and all(int(b) in (16, 32, 64) for b in bits)


def _to_uint16(arr: np.ndarray) -> np.ndarray:
    """Samples of a deep TIFF in our 16-bit range: uint32 scaled (65535 / (2^32 - 1) =
    1 / 65537), floats taken as 0..1 (above 1 clipped, NaN as 0); uint8/uint16 as they are."""
    if arr.dtype in (np.uint8, np.uint16):
        return arr
    if arr.dtype == np.uint32:
        return ((arr.astype(np.uint64) + 32768) // 65537).astype(np.uint16)
    scaled = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0) * 65535.0
    return np.clip(scaled + 0.5, 0, 65535).astype(np.uint16)


def _decode_tiff_deep(data: bytes) -> np.ndarray | None:
    """A TIFF's first page decoded by tifffile (`_page_pixels`); None if the page's layout is
    not one we take (see _tiff_layout)."""
    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages[0]
        return None if _tiff_layout(page) is not None else _page_pixels(page)


def _page_pixels(page: object) -> np.ndarray:
    """A tifffile page's pixels (every TIFF compression, through imagecodecs), interleaved, in
    our layouts: uint8 stays uint8, deeper samples become uint16."""
    arr = page.asarray()  # type: ignore[attr-defined]
    spp = int(page.samplesperpixel)  # type: ignore[attr-defined]
    if arr.ndim == 3 and arr.shape[0] == spp and arr.shape[-1] != spp:  # planar → interleaved
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise ValueError(f"unexpected TIFF sample layout {arr.shape}")
    return np.ascontiguousarray(_to_uint16(arr))


def _decode_tiff_without_pil(data: bytes, name: str, max_pixels: int) -> ImageFile | None:
    """TIFFs Pillow cannot open (RGB floats, grey+alpha 16 bits, LZW 32-bit...) decoded by
    tifffile alone; None if tifffile cannot parse the file either."""
    import tifffile

    try:
        tif = tifffile.TiffFile(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - not a TIFF tifffile understands either
        return None
    with tif:
        try:
            page = tif.pages[0]
            if 256 not in page.tags or 257 not in page.tags:  # no ImageWidth / ImageLength
                return None
            height, width = int(page.imagelength), int(page.imagewidth)
            icc = page.tags.get(34675)
            orient = page.tags.get(274)
            layout = _tiff_layout(page)
        except Exception:  # noqa: BLE001 - its first page is not readable either
            return None
        if width <= 0 or height <= 0:
            raise ImageError(f"{name}: zero-sized image ({width}x{height} pixels)")
        if width * height > max_pixels:
            raise too_many_pixels(name, width, height, max_pixels)
        if layout is not None:
            raise ImageError(f"{name}: unsupported TIFF layout ({layout})")
        try:
            pixels = _page_pixels(page)
        except Exception as exc:  # noqa: BLE001
            raise ImageError(f"{name}: truncated or corrupt image data ({short(exc)})") from None
    orientation = int(orient.value) if orient is not None else 1
    pixels = _apply_orientation(pixels, orientation if 1 <= orientation <= 8 else 1)
    icc_bytes = bytes(icc.value) if icc is not None else None
    return ImageFile(pixels=pixels, format="TIFF", exif=None, icc_profile=icc_bytes,
                     bit_depth=16 if pixels.dtype == np.uint16 else 8)
