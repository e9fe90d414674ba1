"""Build DNG files from a known scene, for tests and benchmarks (nothing is downloaded).

The "camera" sees linear sRGB through per-channel gains ``CAMERA_GAINS`` (so white balance
matters), or through any 3 x 3 response ``camera`` (``CROSSTALK``: channels that overlap, as
real filters do, so the colour matrix matters), behind an RGGB colour filter array;
ColorMatrix1 (XYZ → camera) and AsShotNeutral say exactly that, so a correct developer
recovers the scene. Data are written uncompressed
(16-bit samples) or as lossless JPEG (process 14, two interleaved components per row, as
cameras and Adobe's converter write them).
"""

from __future__ import annotations

import heapq
import struct

import numpy as np

CAMERA_GAINS = np.array([0.5, 1.0, 0.7])
XYZ_TO_SRGB = np.array([[3.2404542, -1.5371385, -0.4985314],
                        [-0.9692660, 1.8760108, 0.0415560],
                        [0.0556434, -0.2040259, 1.0572252]])
#: A camera whose channels see each other's light: camera = CROSSTALK @ linear sRGB.
CROSSTALK = np.diag(CAMERA_GAINS) @ np.array([[0.70, 0.25, 0.05],
                                              [0.15, 0.70, 0.15],
                                              [0.05, 0.30, 0.65]])
CFA = {"RGGB": (0, 1, 1, 2), "BGGR": (2, 1, 1, 0), "GRBG": (1, 0, 2, 1), "GBRG": (1, 2, 0, 1)}


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(v: np.ndarray) -> np.ndarray:
    v = np.clip(v, 0.0, 1.0)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055)


def mosaic(linear: np.ndarray, bits: int = 14, black: int = 512, pattern: str = "RGGB",
           noise: float = 0.0, seed: int = 0, camera: np.ndarray | None = None) -> np.ndarray:
    """Sensor values (uint16) of a linear-sRGB scene (H×W×3, 0..1, even H and W) seen
    through `camera` (3 x 3; default: the gains ``CAMERA_GAINS`` alone)."""
    cam = linear * CAMERA_GAINS if camera is None else linear @ np.asarray(camera).T
    colours = CFA[pattern]
    out = np.empty(linear.shape[:2], np.float64)
    for i, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        out[dy::2, dx::2] = cam[dy::2, dx::2, colours[i]]
    white = (1 << bits) - 1
    out = black + out * (white - black)
    if noise:
        out += np.random.default_rng(seed).normal(0.0, noise, out.shape)
    return np.clip(np.round(out), 0, white).astype(np.uint16)


def _rationals(values) -> list[int]:
    out: list[int] = []
    for v in np.ravel(values):
        out += [int(round(float(v) * 10000)), 10000]
    return out


# TIFF field types: (type code, struct format of one value)
_TYPES = {"B": (1, "B"), "s": (2, "B"), "H": (3, "H"), "I": (4, "I"), "R": (5, "I"),
          "SR": (10, "i")}


def _tiff(entries: dict[int, tuple[str, object]], data: bytes) -> bytes:
    """A little-endian classic TIFF: one IFD (entries: tag → (type, value)), then the data."""
    encoded = []
    for tag, (kind, value) in entries.items():
        code, fmt = _TYPES[kind]
        if kind == "s":
            values = list(str(value).encode("ascii") + b"\0")
        else:
            values = list(value) if isinstance(value, (list, tuple)) else [value]
        raw = struct.pack("<" + fmt * len(values), *values)
        n = len(values) // 2 if kind in ("R", "SR") else len(values)
        encoded.append((tag, code, n, raw))
    count = len(encoded) + 2  # + StripOffsets, StripByteCounts
    heap_at = 8 + 2 + 12 * count + 4
    heap = b"".join(raw + b"\0" * (len(raw) % 2) for *_, raw in encoded if len(raw) > 4)
    data_at = heap_at + len(heap)
    encoded += [(273, 4, 1, struct.pack("<I", data_at)),
                (279, 4, 1, struct.pack("<I", len(data)))]
    out = [b"II*\0" + struct.pack("<IH", 8, count)]
    at = heap_at
    for tag, code, n, raw in sorted(encoded, key=lambda e: e[0]):
        if len(raw) > 4:
            out.append(struct.pack("<HHII", tag, code, n, at))
            at += len(raw) + len(raw) % 2
        else:
            out.append(struct.pack("<HHI", tag, code, n) + raw.ljust(4, b"\0"))
    out.append(struct.pack("<I", 0))
    return b"".join(out) + heap + data


def write_dng(raw: np.ndarray, *, bits: int = 14, black: int = 512, pattern: str = "RGGB",
              compress: bool = False, orientation: int = 1, make: str = "Excnet",
              model: str = "Test Cam", cfa_values: tuple[int, ...] | None = None,
              camera: np.ndarray | None = None) -> bytes:
    """A DNG 1.4 file (bytes) holding the CFA frame ``raw`` in IFD0, made by `camera` (as
    `mosaic`'s)."""
    h, w = raw.shape
    camera = np.diag(CAMERA_GAINS) if camera is None else np.asarray(camera)
    colour_matrix = camera @ XYZ_TO_SRGB
    data = ljpeg_encode(raw, bits) if compress else raw.astype("<u2").tobytes()
    entries: dict[int, tuple[str, object]] = {
        254: ("I", 0), 256: ("I", w), 257: ("I", h), 258: ("H", bits if compress else 16),
        259: ("H", 7 if compress else 1), 262: ("H", 32803), 271: ("s", make),
        272: ("s", model), 274: ("H", orientation), 277: ("H", 1), 278: ("I", h),
        284: ("H", 1), 33421: ("H", (2, 2)), 33422: ("B", cfa_values or CFA[pattern]),
        50706: ("B", (1, 4, 0, 0)), 50707: ("B", (1, 1, 0, 0)),
        50708: ("s", f"{make} {model}"), 50714: ("I", black), 50717: ("I", (1 << bits) - 1),
        50721: ("SR", _rationals(colour_matrix)), 50728: ("R", _rationals(camera.sum(axis=1))),
        50778: ("H", 21),  # CalibrationIlluminant1: D65
    }
    return _tiff(entries, data)


# --------------------------------------------------------------------------- lossless JPEG


def _code_lengths(freq: np.ndarray) -> np.ndarray:
    """Huffman code lengths (<= 16) for the 17 difference categories, never all-ones codes."""
    heap = [(int(f) + 1, i, [i]) for i, f in enumerate(freq)]
    heap.append((0, 99, [99]))  # a reserved symbol takes the all-ones code
    heapq.heapify(heap)
    lengths = dict.fromkeys(range(18), 0)
    while len(heap) > 1:
        fa, ia, a = heapq.heappop(heap)
        fb, ib, b = heapq.heappop(heap)
        for s in a + b:
            lengths[min(s, 17)] += 1
        heapq.heappush(heap, (fa + fb, min(ia, ib), a + b))
    out = np.array([lengths[i] for i in range(17)])
    if out.max() > 16:  # rare skewed statistics: fall back to a fixed, valid code
        out = np.array([2, 2, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16])
    return out


def ljpeg_encode(raw: np.ndarray, bits: int) -> bytes:
    """Lossless JPEG (SOF3, predictor 1) of a CFA frame as rows of two components."""
    h, w = raw.shape
    x = raw.astype(np.int32)
    pred = np.empty_like(x)
    pred[:, 2:] = x[:, :-2]  # same-colour neighbour to the left
    pred[1:, :2] = x[:-1, :2]  # row starts: the sample above
    pred[0, :2] = 1 << (bits - 1)
    pred[0, 2:] = x[0, :-2]
    diff = (x - pred).ravel()
    diff = np.where(diff > 32768, diff - 65536, np.where(diff < -32767, diff + 65536, diff))
    mag = np.abs(diff)
    ssss = np.zeros(mag.shape, np.int64)
    nz = mag > 0
    ssss[nz] = np.floor(np.log2(mag[nz])).astype(np.int64) + 1
    extra = np.where(diff >= 0, diff, diff - 1) & ((1 << ssss) - 1)
    extra[ssss == 16] = 0
    lengths = _code_lengths(np.bincount(ssss, minlength=17))
    order = sorted(range(17), key=lambda s: (lengths[s], s))
    codes = np.zeros(17, np.int64)
    code, prev = 0, lengths[order[0]]
    for s in order:
        code <<= lengths[s] - prev
        prev = lengths[s]
        codes[s] = code
        code += 1
    nbits = lengths[ssss] + np.where(ssss == 16, 0, ssss)
    value = (codes[ssss] << np.where(ssss == 16, 0, ssss)) | extra
    stream = _pack_bits(value.astype(np.uint64), nbits.astype(np.int64))
    bits_count = [int((lengths == n).sum()) for n in range(1, 17)]
    dht = struct.pack(">B", 0) + bytes(bits_count) + bytes(order)
    sof = struct.pack(">BHHB", bits, h, w // 2, 2) + bytes([1, 0x11, 0, 2, 0x11, 0])
    sos = struct.pack(">B", 2) + bytes([1, 0, 2, 0]) + bytes([1, 0, 0])

    def segment(marker: int, payload: bytes) -> bytes:
        return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload

    return (b"\xff\xd8" + segment(0xC4, dht) + segment(0xC3, sof) + segment(0xDA, sos)
            + stream + b"\xff\xd9")


def _pack_bits(value: np.ndarray, nbits: np.ndarray) -> bytes:
    """Concatenate variable-length codes MSB first, pad with ones, stuff 0x00 after 0xFF."""
    chunks = []
    step = 1 << 20
    carry = np.zeros(0, np.uint8)
    for start in range(0, value.size, step):
        v, n = value[start : start + step], nbits[start : start + step]
        shifts = np.arange(31, -1, -1, dtype=np.uint64)
        allbits = ((v[:, None] >> shifts[None, :]) & np.uint64(1)).astype(np.uint8)
        keep = np.arange(32)[None, :] >= (32 - n)[:, None]
        b = np.concatenate([carry, allbits[keep]])
        usable = b.size - b.size % 8
        chunks.append(np.packbits(b[:usable]))
        carry = b[usable:]
    if carry.size:
        chunks.append(np.packbits(np.concatenate([carry, np.ones(8 - carry.size, np.uint8)])))
    data = np.concatenate(chunks)
    ff = np.flatnonzero(data == 0xFF)
    return np.insert(data, ff + 1, 0).tobytes()
