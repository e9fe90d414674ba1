"""Image file formats: names, suffixes, and what a file's leading bytes say it is.

Pure byte and name logic, importing neither NumPy nor Pillow, so that command-line parsing
and folder walks can use it without paying for the decoders.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

#: Formats read *and* written.
FORMATS: tuple[str, ...] = ("JPEG", "PNG", "TIFF", "WEBP", "HEIC")
#: The format name of a camera RAW file (read only; developed by LibRaw).
RAW = "RAW"

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
#: Camera RAW suffixes (LibRaw reads many more; these are the ones a folder walk picks up).
RAW_SUFFIXES: frozenset[str] = frozenset({
    ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".rw2",
    ".orf", ".pef", ".srw", ".x3f", ".3fr", ".fff", ".iiq", ".erf", ".mef", ".mos", ".mrw",
    ".rwl", ".kdc", ".dcr",
})
#: Every suffix that `excnet restore` (folders) and `excnet batch` pick up.
IMAGE_SUFFIXES: frozenset[str] = frozenset(_SUFFIXES) | RAW_SUFFIXES
#: A RAW file restored without an explicit output format becomes a 16-bit TIFF.
RAW_OUTPUT_SUFFIX = ".tif"

_FORMAT_ALIASES: dict[str, str] = {"JPG": "JPEG", "TIF": "TIFF", "HEIF": "HEIC", "MPO": "JPEG"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
# Leading bytes of RAW formats that are not TIFF-shaped (ORF, RW2, RAF, CR3, CRW, MRW, X3F).
_RAW_MAGIC: tuple[tuple[int, bytes], ...] = (
    (0, b"IIRO"), (0, b"IIRS"), (0, b"MMOR"), (0, b"IIU\x00"), (0, b"FUJIFILMCCD-RAW"),
    (4, b"ftypcrx "), (6, b"HEAPCCDR"), (0, b"\x00MRM"), (0, b"FOVb"),
)
_CFA_PHOTOMETRIC = (32803, 34892)  # colour filter array, linear raw
_DNG_VERSION, _SUB_IFDS, _PHOTOMETRIC = 50706, 330, 262


class ImageError(Exception):
    """An image could not be read or written; the message is one human-readable line."""


def normalise_format(fmt: str) -> str:
    """A writable format name from a user's spelling (``jpg`` → ``JPEG``); ImageError if none."""
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


def is_raw_name(path: str | os.PathLike[str]) -> bool:
    """Whether a file name has a camera RAW suffix."""
    return os.path.splitext(os.fspath(path))[1].lower() in RAW_SUFFIXES


#: What excnet adds to a file's stem when it writes the restored copy beside it.
OUTPUT_TAG = ".excnet"


def output_suffix(src: str | os.PathLike[str]) -> str:
    """The suffix of src's restored copy when no format is asked for: its own, or ``.tif``
    for a camera RAW (no RAW writer exists; the TIFF keeps all 16 bits)."""
    return RAW_OUTPUT_SUFFIX if is_raw_name(src) else os.path.splitext(os.fspath(src))[1]


def output_name(name: str) -> str:
    """A mirror-tree file name for input ``name``: unchanged, or ``NAME.tif`` for a RAW."""
    stem, _ = os.path.splitext(name)
    return stem + output_suffix(name)


def default_output_format(input_format: str) -> str:
    """The format a restored copy is written in when none is asked for (RAW → TIFF)."""
    return "TIFF" if input_format == RAW else input_format


# --------------------------------------------------------------------------- sniffing


def sniff_format(data: bytes, name: str = "") -> str | None:
    """Which format the leading bytes claim (a claim, not a validation): one of FORMATS, RAW,
    or None. TIFF-shaped RAW (DNG, NEF, CR2, ARW, PEF, ...) is told from a plain TIFF by its
    structure: the CR2 marker, a DNGVersion tag, a colour-filter-array image in IFD0 or a
    SubIFD, or failing those, a RAW suffix on ``name``."""
    if data.startswith(_PNG_SIGNATURE):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if any(data[at : at + len(magic)] == magic for at, magic in _RAW_MAGIC):
        return RAW
    if data[:4] in _TIFF_MAGIC:
        return RAW if _tiff_is_raw(data) or is_raw_name(name) else "TIFF"
    if data[:4] in (b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "HEIC"
    return None


def sniff_other_format(data: bytes) -> str | None:
    """Name a well-known image format we do not support, for a clearer message."""
    for magic, name in ((b"GIF8", "GIF"), (b"BM", "BMP"), (b"\x00\x00\x01\x00", "ICO")):
        if data.startswith(magic):
            return name
    if data[4:12] in (b"ftypavif", b"ftypavis"):
        return "AVIF"
    return None


def _ifd_entries(data: bytes, endian: str, offset: int) -> dict[int, tuple[int, int, int]]:
    """{tag: (type, count, value-or-offset field position)} of one classic-TIFF IFD."""
    (count,) = struct.unpack_from(endian + "H", data, offset)
    out: dict[int, tuple[int, int, int]] = {}
    for i in range(min(count, 4096)):
        pos = offset + 2 + 12 * i
        tag, typ, n = struct.unpack_from(endian + "HHI", data, pos)
        out[tag] = (typ, n, pos + 8)
    return out


def _short_or_long(data: bytes, endian: str, entry: tuple[int, int, int], index: int = 0) -> int:
    typ, n, pos = entry
    size = 2 if typ == 3 else 4
    if n * size > 4:
        (pos,) = struct.unpack_from(endian + "I", data, pos)
    return struct.unpack_from(endian + ("H" if typ == 3 else "I"), data, pos + index * size)[0]


def _tiff_is_raw(data: bytes) -> bool:
    """Whether a classic TIFF holds camera RAW data (see :func:`sniff_format`)."""
    if data[8:10] == b"CR":  # Canon CR2
        return True
    endian = "<" if data[:2] == b"II" else ">"
    try:
        (ifd0,) = struct.unpack_from(endian + "I", data, 4)
        entries = _ifd_entries(data, endian, ifd0)
        if _DNG_VERSION in entries:
            return True
        if _PHOTOMETRIC in entries and _short_or_long(data, endian, entries[_PHOTOMETRIC]) in (
            _CFA_PHOTOMETRIC
        ):
            return True
        sub = entries.get(_SUB_IFDS)
        for i in range(min(sub[1], 8) if sub else 0):
            sub_ifd = _ifd_entries(data, endian, _short_or_long(data, endian, sub, i))
            photometric = sub_ifd.get(_PHOTOMETRIC)
            if photometric and _short_or_long(data, endian, photometric) in _CFA_PHOTOMETRIC:
                return True
    except struct.error:
        return False
    return False


def tiff_data_cut(data: bytes) -> bool:
    """Whether a classic TIFF's image data (strips or tiles of IFD0 and its SubIFDs) runs past
    the end of the file: the mark of a cut-off RAW file, found before a decoder complains."""
    if data[:4] not in _TIFF_MAGIC:
        return False
    endian = "<" if data[:2] == b"II" else ">"
    try:
        (ifd0,) = struct.unpack_from(endian + "I", data, 4)
        ifds = [_ifd_entries(data, endian, ifd0)]
        sub = ifds[0].get(_SUB_IFDS)
        for i in range(min(sub[1], 8) if sub else 0):
            ifds.append(_ifd_entries(data, endian, _short_or_long(data, endian, sub, i)))
        for entries in ifds:
            for offsets_tag, counts_tag in ((273, 279), (324, 325)):
                offsets, counts = entries.get(offsets_tag), entries.get(counts_tag)
                if offsets is None or counts is None:
                    continue
                for i in range(min(offsets[1], counts[1], 65536)):
                    end = (_short_or_long(data, endian, offsets, i)
                           + _short_or_long(data, endian, counts, i))
                    if end > len(data):
                        return True
    except struct.error:
        return True
    return False


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG IHDR, JPEG SOF or TIFF IFD0, read without decoding; else None."""
    if data.startswith(_PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:4] in _TIFF_MAGIC:
        endian = "<" if data[:2] == b"II" else ">"
        try:
            (ifd0,) = struct.unpack_from(endian + "I", data, 4)
            entries = _ifd_entries(data, endian, ifd0)
            if 256 in entries and 257 in entries:
                return (_short_or_long(data, endian, entries[256]),
                        _short_or_long(data, endian, entries[257]))
        except struct.error:
            return None
        return None
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


def tiff_ifd_in_range(data: bytes) -> bool:
    """Whether a classic TIFF's first IFD offset points inside the data (cut files fail)."""
    if len(data) < 8 or data[:4] not in _TIFF_MAGIC:
        return False
    (offset,) = struct.unpack("<I" if data[:2] == b"II" else ">I", data[4:8])
    return 8 <= offset <= len(data) - 2


def png_complete(data: bytes) -> bool:
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


def png_bit_depth(data: bytes) -> int:
    """Bit depth from a PNG's IHDR (0 if the header is malformed)."""
    if len(data) < 33 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return 0
    return data[24]
