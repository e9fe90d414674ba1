"""Reading and writing image files safely: every image file goes through this package.

* :func:`read_image` / :func:`decode_image` (:mod:`.reading`) turn a file (or bytes) into an
  :class:`ImageFile`: upright pixels (8 or 16 bits), EXIF, XMP, IPTC and ICC. Camera RAW is
  developed by LibRaw (:mod:`.raw`). Every failure is an :class:`ImageError` naming the file.
* :func:`write_image` / :func:`encode_image` (:mod:`.writing`) turn an array back into a file
  (or bytes), carrying the metadata over; file writes are atomic (:func:`write_bytes` for
  bytes already encoded).
* :mod:`.formats` (names, suffixes, sniffing) and :mod:`.rawoptions` import neither NumPy nor
  Pillow; this package loads its readers and writers on first use, so that importing those
  two stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .formats import FORMATS, IMAGE_SUFFIXES, RAW, ImageError, format_from_path, output_suffix
from .rawoptions import RawOptions

if TYPE_CHECKING:
    from .reading import ImageFile, decode_image, read_image
    from .writing import encode_image, write_bytes, write_image

__all__ = [
    "FORMATS",
    "IMAGE_SUFFIXES",
    "RAW",
    "ImageError",
    "ImageFile",
    "RawOptions",
    "decode_image",
    "encode_image",
    "format_from_path",
    "output_suffix",
    "read_image",
    "write_bytes",
    "write_image",
]

_LAZY = {"ImageFile": "reading", "decode_image": "reading", "read_image": "reading",
         "encode_image": "writing", "write_bytes": "writing", "write_image": "writing"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
