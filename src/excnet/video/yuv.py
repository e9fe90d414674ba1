"""Y'CbCr planes: the method's luminance read from them, and the gain applied to them.

The restoration multiplies R, G and B by the same per-pixel gain, and Y'CbCr is linear in
R'G'B', so the gain scales Y' - black and the chroma offsets Cb - 128, Cr - 128 (at 10 bits:
Y' - 64 or 0, Cb - 512, Cr - 512) by the same ratio. No RGB conversion is needed, the stream's
own matrix and range are kept exactly, and phi = 0 is a no-op (the gain of the identity curve
is exactly 1). Planes are 4:2:0: Y' (H, W), Cb and Cr (H/2, W/2); uint8, or uint16 holding
10-bit codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import cv2
import numpy as np

from .. import strips
from ..colour import LUMA_WEIGHTS

#: AVColorSpace -> (Kr, Kb) of the Y'CbCr matrix.
MATRICES = {1: (0.2126, 0.0722), 4: (0.30, 0.11), 5: (0.299, 0.114), 6: (0.299, 0.114),
            7: (0.212, 0.087), 9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}
_BT709, _BT601 = 1, 6
#: AVColorRange values.
RANGE_LIMITED, RANGE_FULL = 1, 2
#: Unspecified values of AVColorSpace, AVColorPrimaries, AVColorTransferCharacteristic, range.
_UNSPECIFIED = {"colorspace": 2, "color_primaries": 2, "color_trc": 2, "color_range": 0}


@dataclass(frozen=True)
class YuvSpec:
    """The Y'CbCr encoding of a stream: matrix (Kr, Kb), full or limited range, and the bits
    per sample of the planes it describes (8 or 10)."""

    colorspace: int
    full_range: bool
    bits: int = 8

    @property
    def black(self) -> float:
        return 0.0 if self.full_range else 16.0 * (1 << (self.bits - 8))

    @property
    def neutral(self) -> float:
        """Chroma of grey: 128, or 512 at 10 bits."""
        return float(1 << (self.bits - 1))

    @property
    def top(self) -> int:
        """The largest code: 255, or 1023 at 10 bits."""
        return (1 << self.bits) - 1

    def luma_weights(self) -> tuple[float, float, float]:
        """Weights (wy, wcb, wcr) so that Y_601 / 255 = wy (Y' - black) + wcb (Cb - neutral) +
        wcr (Cr - neutral), Y_601 being the method's luminance of the decoded R'G'B'."""
        kr, kb = MATRICES[self.colorspace]
        kg = 1.0 - kr - kb
        scale = 1 << (self.bits - 8)
        ys, cs = ((float(self.top),) * 2 if self.full_range
                  else (219.0 * scale, 224.0 * scale))
        r, g, b = LUMA_WEIGHTS
        # R = Y + 2(1-Kr) Cr, B = Y + 2(1-Kb) Cb, G = Y - (2 Kb (1-Kb) Cb + 2 Kr (1-Kr) Cr) / Kg
        wcb = (b * 2 * (1 - kb) - g * 2 * kb * (1 - kb) / kg) / cs
        wcr = (r * 2 * (1 - kr) - g * 2 * kr * (1 - kr) / kg) / cs
        return 1.0 / ys, wcb, wcr

    @classmethod
    def of(cls, frame: av.VideoFrame, container: dict[str, int] | None = None,
           bits: int = 8) -> YuvSpec:
        """The frame's tags, else the container's (`colour_tags`), for planes of `bits`; an
        untagged matrix counts as BT.709 from 720 lines up, else BT.601."""
        tags = colour_tags(frame, container)
        space = tags["colorspace"]
        if space not in MATRICES:
            space = _BT709 if frame.height >= 720 else _BT601
        full = tags["color_range"] == RANGE_FULL or frame.format.name.startswith("yuvj")
        return cls(space, full, bits)


def colour_tags(tagged, fallback: dict[str, int] | None = None) -> dict[str, int]:
    """colorspace, color_primaries, color_trc and color_range of a frame or codec context as
    ints; where one is unspecified, fallback's (the container's, read before decoding: a
    decoder overwrites them with the bitstream's, and ProRes writes unspecified there)."""
    tags = {}
    for name, unknown in _UNSPECIFIED.items():
        value = int(getattr(tagged, name) or unknown)
        tags[name] = value if value != unknown or fallback is None else fallback[name]
    return tags


class Scratch:
    """Work arrays reused from frame to frame, by name. A frame's temporaries are a few MB;
    fresh memory of that size is paged in on every use (a minor fault per 4 KiB page, about
    3,000 for a 1080p frame, near half the restoration's time on a 2-core VM)."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def __call__(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """An uninitialised array of this shape and dtype, the same one each call."""
        a = self._arrays.get(name)
        if a is None or a.shape != tuple(shape) or a.dtype != np.dtype(dtype):
            a = self._arrays[name] = np.empty(shape, dtype)
        return a


def yuv_luminance(y: np.ndarray, u: np.ndarray, v: np.ndarray, spec: YuvSpec,
                  scratch: Scratch | None = None) -> np.ndarray:
    """Method luminance (0..255, float32) at chroma resolution from planes Y' (H, W) and Cb, Cr
    (h, w), uint8, or uint16 for a 10-bit spec. With `scratch` the result is its "luma" array
    (overwritten by the next call)."""
    scratch = scratch or Scratch()
    h, w = u.shape
    ys = y
    if y.shape != u.shape:
        ys = cv2.resize(y, (w, h), dst=scratch("luma_y", (h, w), y.dtype),
                        interpolation=cv2.INTER_AREA)
    wy, wcb, wcr = (255.0 * c for c in spec.luma_weights())
    lum = scratch("luma", (h, w), np.float32)
    # wy (Y' - black) + wcb (Cb - neutral) + wcr (Cr - neutral), in two passes that write lum
    cv2.addWeighted(ys, wy, u, wcb, -(wy * spec.black + wcb * spec.neutral), dst=lum,
                    dtype=cv2.CV_32F)
    cv2.addWeighted(lum, 1.0, v, wcr, -wcr * spec.neutral, dst=lum, dtype=cv2.CV_32F)
    return lum


def apply_gain_yuv(y: np.ndarray, u: np.ndarray, v: np.ndarray, base: np.ndarray,
                   lut: np.ndarray, spec: YuvSpec, scratch: Scratch | None = None) -> None:
    """Scale Y' - black, Cb - neutral and Cr - neutral in place by the gain lut[base] (base at
    chroma resolution, 0..255; lut tabulates the gain on a uniform grid of b in [0, 1]). Planes
    are uint8, or uint16 holding 10-bit codes for a 10-bit spec; results are rounded and
    saturated to 0..spec.top; Y' below black (sub-black) comes out as black. `scratch` keeps
    the work arrays for the next frame."""
    scratch = scratch or Scratch()
    n = len(lut) - 1
    idx = scratch("index", base.shape, np.float32)
    np.multiply(base, np.float32(n / 255.0), out=idx)
    idx += np.float32(0.5)
    np.clip(idx, 0, n, out=idx)
    at = scratch("index_int", base.shape, np.int32)
    np.copyto(at, idx, casting="unsafe")  # truncation: idx >= 0, so rounds half up
    gain = strips.look_up(np.asarray(lut, np.float32), at, scratch("gain", base.shape, np.float32),
                          threads=1)  # in bands: no frame-sized buffer in fresh memory
    depth = cv2.CV_8U if y.dtype == np.uint8 else cv2.CV_16U
    product = scratch("product", u.shape, np.float32)
    for plane in (u, v):
        cv2.multiply(plane, gain, dst=product, dtype=cv2.CV_32F)
        cv2.addWeighted(product, 1.0, gain, -spec.neutral, spec.neutral, dst=plane, dtype=depth)
    full = gain if y.shape == u.shape else cv2.resize(
        gain, (y.shape[1], y.shape[0]), dst=scratch("gain_full", y.shape, np.float32),
        interpolation=cv2.INTER_LINEAR)
    black = int(spec.black)
    # Offsets through addWeighted: a scalar given to cv2.subtract / cv2.add is read as an
    # array when the plane is one column of at most four rows (OpenCV 5).
    if black:
        above = cv2.addWeighted(y, 1.0, y, 0.0, -black, dst=scratch("above", y.shape, y.dtype))
        cv2.multiply(above, full, dst=above, dtype=depth)
        cv2.addWeighted(above, 1.0, above, 0.0, black, dst=y)
    else:
        cv2.multiply(y, full, dst=y, dtype=depth)
    if spec.top < np.iinfo(y.dtype).max:  # 10-bit codes in 16-bit planes saturate at 65535
        for plane in (y, u, v):
            np.minimum(plane, spec.top, out=plane)


def frame_planes(frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Writable (H, W), (h, w), (h, w) views of a yuv420p (uint8) or yuv420p10le (uint16)
    frame's planes."""
    dtype = np.dtype(np.uint16 if sample_bits(frame) > 8 else np.uint8)
    out = []
    for p in frame.planes:
        a = np.frombuffer(p, dtype).reshape(p.height, p.line_size // dtype.itemsize)
        out.append(a[:, :p.width])
    return out[0], out[1], out[2]


def sample_bits(frame: av.VideoFrame) -> int:
    """Bits per sample of the frame's pixel format."""
    return max(c.bits for c in frame.format.components)
