"""JPEG encoding on several cores: strips of whole MCU rows, joined by restart markers.

libjpeg-turbo encodes a picture on one core. A baseline JPEG may be cut into restart
intervals, each of which a decoder starts afresh (every RSTn marker resets the DC
predictions). So strips of whole MCU rows are encoded as JPEGs of their own, with the same
settings (quality tables, chroma sampling, the standard Huffman tables), on separate threads
(OpenCV releases the GIL), and their entropy-coded data are joined under the first strip's
header with a DRI segment. The file decodes to exactly the pixels of a one-pass encode
(tested) and is about 100 bytes larger. Each strip is also converted to what the encoder
takes (8 bits, BGR) on its own thread, so no converted copy of the whole image is made.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..strips import threads_for

#: (rows, columns) of one MCU for each chroma sampling.
MCU = {"4:4:4": (8, 8), "4:2:2": (8, 16), "4:4:0": (16, 8), "4:2:0": (16, 16)}
#: Below this many pixels an image is encoded in one pass (threads and headers cost more).
MIN_PIXELS = 1 << 21
#: Strips per thread: enough for the threads to finish together.
STRIPS_PER_THREAD = 3
_MAX_INTERVAL = 0xFFFF  # MCUs: the DRI segment holds 16 bits

Encoder = Callable[[np.ndarray], bytes]


def strip_rows(shape: tuple[int, ...], sampling: str, threads: int) -> int:
    """Rows per strip (a whole number of MCU rows, at most 65535 MCUs); the image's height
    where one pass is best: a small image, or a single thread."""
    h, w = shape[:2]
    mcu_h, mcu_w = MCU[sampling]
    if threads < 2 or h * w < MIN_PIXELS or h <= mcu_h:
        return h
    per_row = -(-w // mcu_w)
    mcu_rows = -(-h // mcu_h)
    wanted = -(-mcu_rows // (threads * STRIPS_PER_THREAD))
    return max(1, min(wanted, _MAX_INTERVAL // per_row)) * mcu_h


def encode(pixels: np.ndarray, sampling: str, encode_one: Encoder,
           prepare: Callable[[np.ndarray], np.ndarray] = lambda a: a,
           threads: int | None = None) -> bytes:
    """JPEG bytes of `pixels` (H×W or H×W×C, any dtype `prepare` accepts).

    prepare: turns a strip into what encode_one takes (run on the strip's thread).
    encode_one: a baseline, non-optimised JPEG encode of one array (the same settings for
    every strip). threads: default the machine's cores, at most 4.
    """
    threads = threads_for(threads)
    h = pixels.shape[0]
    rows = strip_rows(pixels.shape, sampling, threads)
    if rows >= h:
        return encode_one(prepare(pixels))
    starts = range(0, h, rows)
    with ThreadPoolExecutor(min(threads, len(starts)), thread_name_prefix="excnet-jpeg") as pool:
        strips = list(pool.map(lambda r: encode_one(prepare(pixels[r:r + rows])), starts))
    mcu_h, mcu_w = MCU[sampling]
    interval = -(-pixels.shape[1] // mcu_w) * (rows // mcu_h)
    return join(strips, h, interval)


def join(strips: list[bytes], height: int, interval: int) -> bytes:
    """One JPEG of `height` rows from strips encoded alike (every strip but the last holding
    `interval` MCUs): the first strip's header with its height patched and a DRI segment,
    then each strip's entropy-coded data, RST0..RST7 in turn between them."""
    header, scan = _split(strips[0])
    header = bytearray(header)
    sos = _patch_height(header, height)
    parts = [bytes(header[:sos]), b"\xff\xdd" + struct.pack(">HH", 4, interval),
             bytes(header[sos:]), scan]
    for k, strip in enumerate(strips[1:]):
        parts += [bytes((0xFF, 0xD0 + k % 8)), _split(strip)[1]]
    parts.append(b"\xff\xd9")
    return b"".join(parts)


def _split(jpeg: bytes) -> tuple[bytes, bytes]:
    """(everything up to and with the SOS segment, the entropy-coded data before EOI)."""
    i = 2
    while True:
        if jpeg[i] != 0xFF:
            raise ValueError("not a JPEG stream the encoder wrote")
        marker = jpeg[i + 1]
        i += 2 + struct.unpack_from(">H", jpeg, i + 2)[0]
        if marker == 0xDA:
            if not jpeg.endswith(b"\xff\xd9"):
                raise ValueError("JPEG stream without EOI")
            return jpeg[:i], jpeg[i:-2]


def _patch_height(header: bytearray, height: int) -> int:
    """Write `height` into the SOF segment; return where the SOS segment starts."""
    i = 2
    while True:
        marker = header[i + 1]
        if marker in (0xC0, 0xC1):
            struct.pack_into(">H", header, i + 5, height)
        elif marker == 0xDA:
            return i
        i += 2 + struct.unpack_from(">H", header, i + 2)[0]
