"""Writing image files: an array (and a source's metadata) in, a whole file or nothing out.

File writes are atomic: the image is encoded in memory, written to a hidden temp file next to
the target, fsync'ed and renamed over the target, so a reader never sees a half-written file.
Metadata comes from the source :class:`ImageFile` (see :mod:`.metadata`).
"""

from __future__ import annotations

import io
import os
import stat
import struct
import zlib
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from .. import strips
from .formats import ImageError, format_from_path, normalise_format
from .metadata import EXIF_HEADER, Metadata, clean_exif, embed
from .reading import ImageFile, register_heif, short

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

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
    fmt = normalise_format(format) if format else format_from_path(p)
    _check_target(p, overwrite)  # before the work of encoding
    try:
        data = encode_image(pixels, fmt, like=like, quality=quality)
    except ImageError as exc:
        raise ImageError(f"{name}: {exc}") from None
    write_bytes(p, data, overwrite=overwrite)


def write_bytes(path: str | os.PathLike[str], data: bytes, *, overwrite: bool = True) -> None:
    """Write an encoded file to ``path`` atomically, as :func:`write_image` does (temp file,
    fsync, rename; parent folders created). Mostly waiting for the disk: a batch does it
    outside its compute slots. Raises ImageError naming the file."""
    p = Path(path)
    name = p.name or str(p)
    _check_target(p, overwrite)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or exc
        raise ImageError(f"{name}: cannot create folder {p.parent} ({reason})") from None
    _atomic_write(p, data, overwrite=overwrite)


def _check_target(path: Path, overwrite: bool) -> None:
    name = path.name or str(path)
    if path.is_dir():
        raise ImageError(f"{name}: is a directory, cannot write an image there")
    if not overwrite and os.path.lexists(path):
        raise ImageError(f"{name}: file exists (not overwriting)")


def _atomic_write(path: Path, data: bytes, *, overwrite: bool) -> None:
    name = path.name
    tmp = path.with_name(f".{name}.{os.urandom(4).hex()}.tmp")
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
    threads: int | None = None,
) -> bytes:
    """Encode an array (layouts as :class:`ImageFile`) to JPEG, PNG, TIFF, WebP or HEIC bytes.

    * 16-bit arrays become 16-bit PNG/TIFF (exact) and 10-bit HEIC; for JPEG and WebP they
      are reduced to 8 bits as ``round(x / 257)``.
    * JPEG cannot hold alpha: it is dropped (not composited). WebP/HEIC store grey as RGB.
    * EXIF (maker notes included; Orientation forced to 1, thumbnail dropped), XMP, IPTC and
      the ICC profile come from ``like``; every format keeps them all, except WebP (no IPTC)
      and HEIC (EXIF and XMP only).
    * ``quality`` (1..100) drives JPEG, WebP and HEIC. JPEG uses 4:4:4 chroma for
      ``quality >= 90`` (restored shadows carry strong colour detail) and 4:2:0 below, but
      never finer than a JPEG input's own (``like.chroma_sampling``): re-encoding a 4:2:0
      photo at 4:2:0 is closer to the restored pixels than 4:4:4, about 15 % smaller and
      1.5x faster to encode (benchmarks/jpeg_sampling.py); no Huffman optimisation pass (it
      costs ~30 % encode time for ~3 % size). A large JPEG is encoded on ``threads`` cores
      (default: this machine's, at most 4; `jpegstrips`); a batch that keeps every core busy
      with files of its own passes 1. A 16-bit TIFF (a RAW file's default output) is
      deflate-compressed at level 1 after horizontal differencing, its strips compressed on
      ``threads`` cores: 24 MP in 1.8 s on 2 cores instead of 6.4 s, 97 MB instead of 116
      (1.0 s with imagecodecs). A 16-bit PNG's data is deflated in pieces on ``threads``
      cores: 24 MP in 4.4 s on 2 cores instead of 7.8 s, the same size.
    """
    fmt = normalise_format(format)
    arr = _check_pixels(pixels)
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be within 1..100, got {quality}")
    meta = Metadata() if like is None else like.metadata
    meta = Metadata(exif=clean_exif(meta.exif), xmp=meta.xmp, iptc=meta.iptc)
    icc = like.icc_profile if like is not None else None
    try:
        if arr.dtype == np.uint16 and fmt == "PNG":
            data = _encode_png16(arr, exif=meta.exif, icc=icc, threads=threads)
        elif arr.dtype == np.uint16 and fmt == "TIFF":
            data = _encode_tiff16(arr, icc=icc, threads=threads)
        elif arr.dtype == np.uint16 and fmt == "HEIC":
            return _encode_heic10(arr, meta=meta, icc=icc, quality=int(quality))
        elif fmt == "JPEG":
            sampling = jpeg_sampling(int(quality), like and like.chroma_sampling)
            return embed(_encode_jpeg(arr, int(quality), sampling, threads), fmt, meta,
                         exif=True, icc=icc)
        else:
            if arr.dtype == np.uint16:
                arr = _to_uint8(arr)
            data = _encode_pil(arr, fmt, meta=meta, icc=icc, quality=int(quality))
        if fmt == "HEIC":  # exiv2 cannot write HEIC: pillow-heif embedded EXIF and XMP
            return data
        return embed(data, fmt, meta, exif=fmt == "TIFF")
    except ImageError:
        raise
    except MemoryError:
        raise ImageError(f"not enough memory to encode the image as {fmt}") from None
    except Exception as exc:  # noqa: BLE001 - encoder failures become ImageError
        raise ImageError(f"cannot encode the image as {fmt} ({short(exc)})") from None


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


@cache
def _uint8_table() -> np.ndarray:
    return ((np.arange(65536, dtype=np.uint32) + 128) // 257).astype(np.uint8)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """uint16 → uint8 as round(x / 257), exact for values that came from 8 bits (x = 257·v);
    a table look-up (`strips.look_up`; 7x faster than the arithmetic at 24 MP)."""
    return strips.look_up(_uint8_table(), arr, np.empty(arr.shape, np.uint8))


#: JPEG chroma subsamplings, finest first (4:2:2 halves the columns, 4:4:0 the rows).
SAMPLINGS = ("4:4:4", "4:2:2", "4:4:0", "4:2:0")


def jpeg_sampling(quality: int, source: str | None = None) -> str:
    """The chroma subsampling a JPEG is written with: 4:4:4 from quality 90 up, 4:2:0 below,
    and never finer than the source JPEG's (colour detail it did not hold costs bytes and
    encode time and brings nothing back)."""
    rule = "4:4:4" if quality >= 90 else "4:2:0"
    if source not in SAMPLINGS:
        return rule
    return max(rule, source, key=SAMPLINGS.index)


def _encode_jpeg(arr: np.ndarray, quality: int, sampling: str,
                 threads: int | None = None) -> bytes:
    """8- or 16-bit pixels to baseline JPEG bytes, alpha dropped, without metadata.

    OpenCV's libjpeg-turbo with Pillow's settings (the same quality tables, chroma sampling
    and Huffman tables: byte for byte the file Pillow writes), 1.5x faster, and it releases
    the GIL while it encodes, where Pillow encoding to memory holds it: in a batch the other
    thread's photo then keeps its core (measured in benchmarks/RESULTS.md). A large image is
    encoded in strips on every core (`jpegstrips`), each strip brought to 8-bit BGR on its
    own thread.
    """
    import cv2

    from . import jpegstrips

    channels = 1 if arr.ndim == 2 else arr.shape[2]
    grey = channels <= 2
    sampling = "4:4:4" if grey else sampling
    factor = {"4:4:4": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
              "4:2:2": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
              "4:4:0": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_440,
              "4:2:0": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420}[sampling]
    table = _uint8_table() if arr.dtype == np.uint16 else None

    def prepare(part: np.ndarray) -> np.ndarray:
        if channels in (2, 4):  # JPEG has no alpha: drop it
            part = part[..., 0] if channels == 2 else part[..., :3]
        if table is not None:  # round(x / 257), as _to_uint8, on this strip's thread only
            part = strips.look_up(table, part, np.empty(part.shape, np.uint8), threads=1)
        return part if grey else cv2.cvtColor(part, cv2.COLOR_RGB2BGR)

    def encode_one(part: np.ndarray) -> bytes:
        ok, data = cv2.imencode(".jpg", part, [cv2.IMWRITE_JPEG_QUALITY, quality,
                                               cv2.IMWRITE_JPEG_SAMPLING_FACTOR, factor])
        if not ok:
            raise ImageError(f"cannot encode a {part.shape[1]}x{part.shape[0]} image as JPEG")
        return data.tobytes()

    return jpegstrips.encode(arr, sampling, encode_one, prepare, threads)


def _encode_pil(
    arr: np.ndarray, fmt: str, *, meta: Metadata, icc: bytes | None, quality: int
) -> bytes:
    im = Image.fromarray(arr)
    if fmt in ("WEBP", "HEIC") and im.mode in ("L", "LA"):
        im = im.convert("RGB" if im.mode == "L" else "RGBA")
    params: dict[str, object] = {}
    if meta.exif and fmt != "TIFF":  # TIFF: exiv2 writes EXIF into the file's own IFDs
        params["exif"] = meta.exif
    if meta.xmp and fmt == "HEIC":
        params["xmp"] = meta.xmp.encode("utf-8")
    if icc:
        params["icc_profile"] = icc
    if fmt == "PNG":
        params.update(compress_level=3)  # ~2x faster than 6 for ~10 % more bytes
    elif fmt == "TIFF":
        params.update(compression="tiff_deflate")
    elif fmt == "WEBP":
        params.update(quality=quality, method=4)
    elif fmt == "HEIC":
        if not register_heif():  # pragma: no cover
            raise ImageError("HEIC support needs the pillow-heif package")
        params.update(quality=quality, enc_params=HEIC_ENCODER)
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


#: x265's own default preset. libheif asks for "slow": twice the time (22-25 s for a 12 MP
#: photo on 2 cores, 11-12 s with this) for the same PSNR and 0-9 % fewer bytes.
HEIC_ENCODER = {"preset": "medium"}


def _encode_heic10(arr: np.ndarray, *, meta: Metadata, icc: bytes | None, quality: int) -> bytes:
    """A 10-bit HEIC (HEVC Main 10, as cameras and phones write for latitude) from 16-bit
    pixels, with EXIF, XMP and the ICC profile; grey is stored as RGB, like 8-bit HEIC."""
    import pillow_heif

    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    elif arr.shape[2] == 2:
        arr = arr[..., [0, 0, 0, 1]]
    mode = "RGBA;16" if arr.shape[2] == 4 else "RGB;16"
    heif = pillow_heif.from_bytes(mode, (arr.shape[1], arr.shape[0]),
                                  np.ascontiguousarray(arr, dtype="<u2").tobytes())
    if icc:
        heif.info["icc_profile"] = icc
    buf = io.BytesIO()
    xmp = meta.xmp.encode("utf-8") if meta.xmp else None
    heif.save(buf, quality=quality, exif=meta.exif, xmp=xmp, enc_params=HEIC_ENCODER)
    return buf.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def _encode_png16(arr: np.ndarray, *, exif: bytes | None, icc: bytes | None,
                  threads: int | None) -> bytes:
    """A 16-bit PNG (grey, grey+alpha, RGB, RGBA) with the Sub filter, plus iCCP/eXIf chunks;
    the image data deflated on `threads` cores (`_deflate`)."""
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
        out.append(_png_chunk(b"eXIf", exif.removeprefix(EXIF_HEADER)))
    out.append(_png_chunk(b"IDAT", _deflate(rows.reshape(-1), 3, strips.threads_for(threads))))
    out.append(_png_chunk(b"IEND", b""))
    return b"".join(out)


#: Bytes each thread of `_deflate` compresses at a time.
DEFLATE_PIECE = 1 << 22


def _deflate(data: np.ndarray, level: int, threads: int) -> bytes:
    """A zlib stream of data (uint8, 1-D) compressed on `threads` cores, as pigz does: each
    4 MB piece is a raw deflate run primed with the 32 KB before it and ended on a byte
    boundary (a sync flush), so the pieces join into one stream. zlib releases the GIL while
    it compresses. It inflates to the same bytes as zlib.compress(data, level)."""
    n = data.size
    parts = [slice(s, min(s + DEFLATE_PIECE, n)) for s in range(0, n, DEFLATE_PIECE)]
    parts = parts or [slice(0, 0)]
    pieces: dict[int, bytes] = {}

    def compress(part: slice) -> None:
        prime = {"zdict": data[max(0, part.start - 32768):part.start].tobytes()} \
            if part.start else {}
        c = zlib.compressobj(level, zlib.DEFLATED, -15, **prime)
        end = zlib.Z_FINISH if part.stop == n else zlib.Z_SYNC_FLUSH
        pieces[part.start] = c.compress(data[part]) + c.flush(end)

    strips.for_each(compress, parts, threads)
    checksum = zlib.adler32(data) & 0xFFFFFFFF
    flevel = 0 if level < 2 else 1 if level < 6 else 2 if level == 6 else 3  # as zlib's
    flg = flevel << 6
    flg += 31 - (0x78 * 256 + flg) % 31  # the header's check bits
    body = b"".join(pieces[part.start] for part in parts)
    return bytes((0x78, flg)) + body + struct.pack(">I", checksum)


#: Rows per strip of a 16-bit TIFF: strips of about 1 MB at 24 MP, compressed in parallel.
TIFF_STRIP_ROWS = 64


def _encode_tiff16(arr: np.ndarray, *, icc: bytes | None, threads: int | None) -> bytes:
    """A 16-bit TIFF via tifffile, with the ICC profile: deflate at level 1 after horizontal
    differencing (predictor 2, which every TIFF reader decodes; level 6 would be 3x slower
    for 1 % fewer bytes), strips compressed on `threads` cores (default: at most 4)."""
    import tifffile

    channels = 1 if arr.ndim == 2 else arr.shape[2]
    kwargs: dict[str, object] = {
        "photometric": "rgb" if channels >= 3 else "minisblack",
        "planarconfig": "contig",
        "compression": "zlib",
        "compressionargs": {"level": 1},
        "predictor": True,
        "rowsperstrip": TIFF_STRIP_ROWS,
        "maxworkers": max(1, strips.threads_for(threads)),
        "metadata": None,
        "software": False,
    }
    if channels in (2, 4):
        kwargs["extrasamples"] = ("unassalpha",)
    extratags = [(274, "H", 1, 1, True)]  # Orientation: top-left
    if icc:
        kwargs["iccprofile"] = icc
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, extratags=extratags, **kwargs)
    return buf.getvalue()
