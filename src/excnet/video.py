"""Back-lit video restoration: stream frames in, restore them on their YUV planes, stream out.

Frames are never all held: each one is decoded, corrected and handed to the encoder, so memory
stays flat however long the clip. Frames keep their timestamps and the stream its time base,
rotation and colour tags; audio packets are copied through untouched when the output container
can hold the codec, otherwise re-encoded (AAC, or Opus where AAC cannot go); subtitle packets
are copied where the container can hold them; the file's and the streams' tags (creation time,
location, title, language, timecode) are carried over.

Why YUV planes: the restoration multiplies R, G and B by the same per-pixel gain, and Y'CbCr is
linear in R'G'B', so the gain scales Y' - black and the chroma offsets Cb - 128, Cr - 128 (at
10 bits: Y' - 64 or 0, Cb - 512, Cr - 512) by the same ratio. No RGB conversion is needed, the
stream's own matrix and range are kept exactly, and phi = 0 is a no-op (the gain of the
identity curve is exactly 1).

Frames are restored at 8-bit 4:2:0, or at 10-bit 4:2:0 when the input has more than 8 bits per
sample and the encoder takes a 10-bit format (the planes are uint16; luminance, base layer and
curve work on the 0..255 scale either way, only the gain is applied at 10 bits).

Per frame (4:2:0; shapes for a W x H frame, chroma planes W/2 x H/2):
1. luminance as the method defines it, Y = 0.299 R + 0.587 G + 0.114 B on 0..255, computed at
   chroma resolution from Y' (area-downsampled), Cb and Cr with the stream's colour matrix;
2. base layer: the self-guided filter of the method (radius 4 % of the short side, halved for
   chroma resolution; the restorer's eps: 800 faithful, 1600 by default) through
   `excnet.base.fast_guided_filter` (coefficients on a reduced grid, applied at chroma
   resolution);
3. phi from `excnet.temporal.TemporalGuide` (estimate every k-th frame, smooth in time, reset on
   cuts) or a fixed curve;
4. gain (f(b) + 1e-5)/(b + 1e-5) from a lookup table at chroma resolution, applied to Cb, Cr
   and, after a bilinear 2x upsampling, to Y'.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from .adapt import Decision
from .base import fast_guided_filter, network_input, radius_for
from .colour import LUMA_WEIGHTS
from .curve import Curve, gain_lut
from .pipeline import Restorer
from .temporal import (
    DEFAULT_CUT_THRESHOLD,
    DEFAULT_EVERY,
    DEFAULT_TAU,
    Estimator,
    TemporalGuide,
)

#: Reduced-grid window radius of the fast guided filter (within a grey level of the exact one).
LOW_RADIUS = 3
#: AVColorSpace -> (Kr, Kb) of the Y'CbCr matrix.
MATRICES = {1: (0.2126, 0.0722), 4: (0.30, 0.11), 5: (0.299, 0.114), 6: (0.299, 0.114),
            7: (0.212, 0.087), 9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}
_BT709, _BT601 = 1, 6
#: AVColorTransferCharacteristic values of HDR transfers: SMPTE ST 2084 (PQ), ARIB STD-B67 (HLG).
HDR_TRANSFERS = {16: "PQ", 18: "HLG"}
_RANGE_LIMITED, _RANGE_FULL = 1, 2
#: Unspecified values of AVColorSpace, AVColorPrimaries, AVColorTransferCharacteristic, range.
_UNSPECIFIED = {"colorspace": 2, "color_primaries": 2, "color_trc": 2, "color_range": 0}
_LUT_SIZE = 4096
_RATE_CONTROL = {"libx264": "crf", "libx265": "crf", "libvpx-vp9": "crf", "libsvtav1": "crf",
                 "libaom-av1": "crf"}
#: Encoders that take a preset, and the one used when none is given (SVT-AV1's are numbers).
PRESETS = {"libx264": "veryfast", "libx265": "veryfast", "libsvtav1": "10"}
#: Muxers of the MOV family (their track duration runs on decode timestamps), and the encoders
#: whose B-frames give a variable frame rate decode timestamps that end early there.
_MOV_MUXERS = {"mov", "mp4", "ipod", "3gp", "3g2", "psp", "ismv", "f4v"}
_REORDERING = {"libx264", "libx265"}
#: The video encoder for an output suffix when none is given (libx264 for the rest).
DEFAULT_CODECS = {".webm": "libvpx-vp9"}
#: Pixel formats our 8-bit 4:2:0 frames are encoded in, by preference (the first the encoder
#: takes; ProRes takes only 10-bit 4:2:2 and 4:4:4).
_ENCODE_FORMATS = ("yuv420p", "yuv422p", "yuv444p", "yuv420p10le", "yuv422p10le", "yuv444p10le")
#: Pixel formats our 10-bit 4:2:0 frames are encoded in, by preference; an encoder that takes
#: none of them gets 8-bit frames.
_DEEP_FORMATS = ("yuv420p10le", "p010le", "yuv422p10le", "yuv444p10le")
#: Tags that describe the input's encoding, not its content: the muxer writes its own.
_STALE_TAGS = {"encoder", "major_brand", "minor_version", "compatible_brands", "handler_name",
               "vendor_id", "duration", "bps", "number_of_frames", "number_of_bytes"}


class VideoError(Exception):
    """A video could not be read or written; the message is one line naming the file."""


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
        full = tags["color_range"] == _RANGE_FULL or frame.format.name.startswith("yuvj")
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


def yuv_luminance(y: np.ndarray, u: np.ndarray, v: np.ndarray, spec: YuvSpec) -> np.ndarray:
    """Method luminance (0..255, float32) at chroma resolution from planes Y' (H, W) and Cb, Cr
    (h, w), uint8, or uint16 for a 10-bit spec."""
    h, w = u.shape
    ys = cv2.resize(y, (w, h), interpolation=cv2.INTER_AREA) if y.shape != u.shape else y
    wy, wcb, wcr = (np.float32(255.0 * c) for c in spec.luma_weights())
    lum = ys.astype(np.float32)
    lum -= np.float32(spec.black)
    lum *= wy
    lum += (u.astype(np.float32) - spec.neutral) * wcb
    lum += (v.astype(np.float32) - spec.neutral) * wcr
    return lum


def apply_gain_yuv(y: np.ndarray, u: np.ndarray, v: np.ndarray, base: np.ndarray,
                   lut: np.ndarray, spec: YuvSpec) -> None:
    """Scale Y' - black, Cb - neutral and Cr - neutral in place by the gain lut[base] (base at
    chroma resolution, 0..255; lut tabulates the gain on a uniform grid of b in [0, 1]). Planes
    are uint8, or uint16 holding 10-bit codes for a 10-bit spec; results are rounded and
    saturated to 0..spec.top; Y' below black (sub-black) comes out as black."""
    n = len(lut) - 1
    idx = base * np.float32(n / 255.0)
    idx += np.float32(0.5)
    np.clip(idx, 0, n, out=idx)
    gain = np.take(lut, idx.astype(np.int32))
    depth = cv2.CV_8U if y.dtype == np.uint8 else cv2.CV_16U
    for plane in (u, v):
        product = cv2.multiply(plane, gain, dtype=cv2.CV_32F)
        cv2.addWeighted(product, 1.0, gain, -spec.neutral, spec.neutral, dst=plane, dtype=depth)
    full = gain if y.shape == u.shape else cv2.resize(
        gain, (y.shape[1], y.shape[0]), interpolation=cv2.INTER_LINEAR)
    black = int(spec.black)
    # Offsets through addWeighted: a scalar given to cv2.subtract / cv2.add is read as an
    # array when the plane is one column of at most four rows (OpenCV 5).
    above = cv2.addWeighted(y, 1.0, y, 0.0, -black) if black else y
    scaled = cv2.multiply(above, full, dtype=depth)
    if black:
        cv2.addWeighted(scaled, 1.0, scaled, 0.0, black, dst=y)
    else:
        y[...] = scaled
    if spec.top < np.iinfo(y.dtype).max:  # 10-bit codes in 16-bit planes saturate at 65535
        for plane in (y, u, v):
            np.minimum(plane, spec.top, out=plane)


def _planes(frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Writable (H, W), (h, w), (h, w) views of a yuv420p (uint8) or yuv420p10le (uint16)
    frame's planes."""
    dtype = np.dtype(np.uint16 if _bits(frame) > 8 else np.uint8)
    out = []
    for p in frame.planes:
        a = np.frombuffer(p, dtype).reshape(p.height, p.line_size // dtype.itemsize)
        out.append(a[:, :p.width])
    return out[0], out[1], out[2]


def _bits(frame: av.VideoFrame) -> int:
    """Bits per sample of the frame's pixel format."""
    return max(c.bits for c in frame.format.components)


@dataclass
class VideoSummary:
    """What `restore_video` did. bits: the bits per sample frames were restored and encoded
    at (10 for deeper input when the encoder takes it, else 8); input_bits: the input's.
    phi: every frame's (phi_s, phi_h) after temporal smoothing, before strength and highlight
    scale (as `Curve.phi_s`, `Curve.phi_h`); decisions: every frame's smoothed adaptive
    (exposure, amount)."""

    input: str
    output: str
    frames: int = 0
    width: int = 0
    height: int = 0
    seconds: float = 0.0
    codec: str = ""
    bits: int = 8
    input_bits: int = 8
    audio: list[str] = field(default_factory=list)
    subtitles: list[str] = field(default_factory=list)
    data: list[str] = field(default_factory=list)
    rotation: int = 0
    estimates: int = 0
    cuts: list[float] = field(default_factory=list)
    phi: list[tuple[float, float]] = field(default_factory=list)
    decisions: list[tuple[float, float]] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        """JSON-ready record: counts, timing, phi statistics and cut times (not per-frame phi)."""
        arr = np.asarray(self.phi, dtype=np.float64).reshape(-1, 2)
        dec = np.asarray(self.decisions, dtype=np.float64).reshape(-1, 2)

        def stats(col: np.ndarray) -> dict | None:
            if not len(col):
                return None
            return {"mean": float(col.mean()), "std": float(col.std()),
                    "min": float(col.min()), "max": float(col.max())}

        return {"input": self.input, "output": self.output, "status": "ok",
                "frames": self.frames, "width": self.width, "height": self.height,
                "seconds": self.seconds, "fps": self.fps, "codec": self.codec,
                "bits": self.bits, "input_bits": self.input_bits,
                "audio": self.audio, "subtitles": self.subtitles, "data": self.data,
                "rotation": self.rotation, "estimates": self.estimates,
                "cuts": self.cuts, "phi_s": stats(arr[:, 0]), "phi_h": stats(arr[:, 1]),
                "exposure": stats(dec[:, 0]), "amount": stats(dec[:, 1])}


def make_estimator(restorer: Restorer, fresh_iters: int = 1000,
                   always_fresh: bool = False) -> Estimator:
    """(x, fresh[, levels]) -> (phi_s, phi_h, exposure, amount) with the restorer's solver and
    adaptive rule (`Restorer.decide_input`). For the network solver each call
    trains the warm network once (`estimate_input`, capped by the restorer's max_iters); when
    fresh (first frame, cut; every frame with always_fresh) it keeps training until converged
    or `fresh_iters` iterations in all."""

    def estimate(x: np.ndarray, fresh: bool, levels: np.ndarray | None = None
                 ) -> tuple[float, float, float, float]:
        est, decision = restorer.decide_input(x, levels=levels)
        done = est.iterations
        while (fresh or always_fresh) and not est.converged and 0 < done < fresh_iters:
            est, decision = restorer.decide_input(x, levels=levels)
            done += est.iterations
        return est.phi_s, est.phi_h, decision.exposure, decision.amount

    return estimate


def restore_video(src: str | os.PathLike, dst: str | os.PathLike, *,
                  restorer: Restorer | None = None, curve: Curve | None = None,
                  every: int = DEFAULT_EVERY, tau: float = DEFAULT_TAU,
                  cut_threshold: float = DEFAULT_CUT_THRESHOLD, guided: bool = True,
                  fresh_iters: int = 1000, codec: str | None = None, preset: str | None = None,
                  crf: int = 20, overwrite: bool = False, torch_threads: int | None = 1,
                  on_frame: Callable[[int, int], None] | None = None) -> VideoSummary:
    """Restore a back-lit video file `src` into `dst` (format from dst's suffix).

    curve: apply this fixed curve to every frame (no estimation). Otherwise phi comes from
    `restorer` (default: direct solver) through a `TemporalGuide(every, tau, cut_threshold)`;
    guided=False restores every frame independently (estimate each frame, no smoothing). The
    network solver's frames each train up to the restorer's max_iters; first frames and cuts
    up to `fresh_iters`. codec: the video encoder (default by dst's suffix, `DEFAULT_CODECS`,
    else libx264); input with more than 8 bits per sample is restored and encoded at 10 bits
    when the encoder takes a 10-bit format, else at 8 (`VideoSummary.bits`). on_frame(done,
    total) is called after each frame (total may be 0). preset: the encoder's (default `PRESETS`).
    torch_threads: torch's intra-op thread count while this runs (restored after; None leaves
    it alone): the decoder's and encoder's threads already fill the cores, and idle torch
    worker threads spinning between estimates slow the encoder down.
    Raises VideoError (one line naming the file); dst is written atomically and never left
    half-written (its folder is created if need be); dst may replace src only with
    overwrite=True.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise VideoError(f"{src}: no such file")
    if dst.is_dir():
        raise VideoError(f"{dst}: is a folder; name the output file")
    codec = codec or DEFAULT_CODECS.get(dst.suffix.lower(), "libx264")
    formats = encoder_formats(codec, dst)
    if dst.exists() and os.path.samefile(src, dst) and not overwrite:
        raise VideoError(f"{dst}: output would replace the input (use --overwrite)")
    restorer = restorer or Restorer("direct")
    if curve is not None:
        guide = None
    else:
        guide = TemporalGuide(
            make_estimator(restorer, fresh_iters, always_fresh=not guided),
            every=every if guided else 1, tau=tau if guided else 0.0,
            cut_threshold=cut_threshold if guided else math.inf)
    tmp = dst.with_name(f".{dst.stem}.{secrets.token_hex(4)}.part{dst.suffix}")
    try:
        with _open_input(src) as inp, _torch_threads(torch_threads):
            summary = _transcode(inp, src, tmp, dst, guide, curve, restorer,
                                 (codec, formats, preset, crf), on_frame)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return summary


def encoder_formats(codec: str, dst: Path) -> tuple[str, str | None]:
    """The pixel formats the video encoder `codec` is fed: for 8-bit frames
    (`_ENCODE_FORMATS`) and for 10-bit ones (`_DEEP_FORMATS`, None if it takes none); VideoError
    if it is unknown, not a video encoder, or takes no 8-bit one."""
    try:
        enc = av.codec.Codec(codec, "w")
    except (av.codec.codec.UnknownCodecError, ValueError):
        raise VideoError(f"{dst}: unknown video encoder {codec!r}") from None
    if enc.type != "video":
        raise VideoError(f"{dst}: {codec!r} is not a video encoder")
    formats = [f.name for f in enc.video_formats or ()]
    if not formats:
        return _ENCODE_FORMATS[0], None
    deep = next((name for name in _DEEP_FORMATS if name in formats), None)
    for name in _ENCODE_FORMATS:
        if name in formats:
            return name, deep
    raise VideoError(f"{dst}: the {codec} encoder takes no Y'CbCr format we write "
                     f"({', '.join(formats)})")


def expected_frames(src: str | os.PathLike) -> int:
    """Frame count from the container (or duration x rate) for a progress bar; 0 if unknown."""
    try:
        with av.open(os.fspath(src)) as inp:
            v = inp.streams.video[0]
            if v.frames:
                return int(v.frames)
            seconds = float(v.duration * v.time_base) if v.duration else (
                inp.duration / av.time_base if inp.duration else 0.0)
            return int(round(seconds * float(v.average_rate or 0)))
    except (av.FFmpegError, IndexError, UnicodeDecodeError, TypeError, ZeroDivisionError):
        return 0


@contextlib.contextmanager
def _torch_threads(n: int | None):
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _open_input(src: Path) -> av.container.InputContainer:
    try:
        return av.open(str(src), "r")
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise VideoError(f"{src}: not a readable video file, or damaged or truncated "
                         f"({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    msg = getattr(exc, "strerror", None) or str(exc)
    return msg.splitlines()[0] if msg else type(exc).__name__


def _check_video_stream(inp: av.container.InputContainer, src: Path) -> av.VideoStream:
    """The first video stream, decodable and not HDR (by the container's tags)."""
    if not inp.streams.video:
        raise VideoError(f"{src}: no video stream")
    stream = inp.streams.video[0]
    ctx = stream.codec_context
    if ctx is None or ctx.codec is None or not ctx.is_decoder:
        raise VideoError(f"{src}: unsupported video codec")
    _check_sdr(int(ctx.color_trc or 0), src)
    stream.thread_type = "AUTO"
    return stream


def _check_sdr(trc: int, src: Path) -> None:
    if trc in HDR_TRANSFERS:
        raise VideoError(f"{src}: HDR video ({HDR_TRANSFERS[trc]} transfer) is not supported; "
                         "convert it to SDR first")


def _tags(metadata: dict[str, str]) -> dict[str, str]:
    """The tags worth carrying to the output (`_STALE_TAGS` and Matroska statistics left out)."""
    return {k: v for k, v in metadata.items()
            if k.lower().split("-")[0] not in _STALE_TAGS and not k.startswith("_STATISTICS")}


def _frames(inp: av.container.InputContainer, video: av.VideoStream,
            carried: list[av.stream.Stream], src: Path):
    """Yield ("video", frame) and ("packet", packet of a carried stream) in demux order; decode
    errors -> VideoError."""
    try:
        for packet in inp.demux(video, *carried):
            if packet.stream is video:
                for frame in packet.decode():
                    yield "video", frame
            elif packet.size:
                yield "packet", packet
    except av.FFmpegError as exc:
        raise VideoError(f"{src}: damaged or truncated video ({_reason(exc)})") from None


class _Output:
    """The output container, opened when the first video frame tells its size and rotation."""

    def __init__(self, path: Path, dst: Path, inp: av.container.InputContainer,
                 settings) -> None:
        self.path, self.dst, self.inp, self.settings = path, dst, inp, settings
        self.container: av.container.OutputContainer | None = None
        self.video: av.VideoStream | None = None
        self.routes: dict[av.stream.Stream, tuple] = {}
        self.notes: dict[str, list[str]] = {"audio": [], "subtitles": [], "data": []}
        self.pending: list[av.Packet] = []
        self.started = False

    def open(self) -> None:
        """Create the folder and the (temporary) file; refuse a container that cannot hold the
        video codec before any frame is decoded."""
        codec = self.settings[0]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VideoError(f"{self.dst}: cannot create folder {self.path.parent} "
                             f"({exc.strerror or exc})") from None
        try:
            self.container = av.open(str(self.path), "w")
        except (av.FFmpegError, ValueError) as exc:
            reason = (f"unknown container suffix {self.dst.suffix!r}"
                      if "output format" in _reason(exc) else _reason(exc))
            raise VideoError(f"{self.dst}: cannot write this container ({reason})") from None
        if codec not in self.container.supported_codecs:
            raise VideoError(f"{self.dst}: the {self.container.format.name} container cannot "
                             f"hold {codec} video (choose another --codec or suffix)")

    def start(self, first: av.VideoFrame, video_in: av.VideoStream, spec: YuvSpec,
              tags: dict[str, int], pix_fmt: str) -> None:
        """Add the streams (video sized by the first frame, tagged with `colour_tags`, encoded
        in pix_fmt) and open the encoders."""
        codec, _, preset, crf = self.settings
        out = self.container
        options = {}
        if codec in _RATE_CONTROL:
            options[_RATE_CONTROL[codec]] = str(crf)
            if codec == "libvpx-vp9":
                options.update({"b": "0", "row-mt": "1"})
        if codec in PRESETS:
            preset = preset or PRESETS[codec]
            options["preset"] = preset
        if codec == "libx265":
            options["x265-params"] = "log-level=error"
        if codec in _REORDERING and out.format.name in _MOV_MUXERS and _variable_rate(video_in):
            # with B-frames the encoder gives each frame the DTS of the PTS of a frame a few
            # before it: on an uneven rate the last DTS falls well short of the last frame,
            # and MP4/MOV count the duration from the DTS
            options["bf"] = "0"
        rate = video_in.average_rate or video_in.guessed_rate or Fraction(25)
        try:
            v = out.add_stream(codec, rate=rate, options=options)
        except (av.FFmpegError, ValueError) as exc:
            raise VideoError(f"{self.dst}: cannot encode with {codec!r} ({_reason(exc)})") from None
        v.width, v.height = _even(first.width), _even(first.height)
        v.pix_fmt = pix_fmt
        v.time_base = video_in.time_base
        v.codec_context.time_base = video_in.time_base
        cc = v.codec_context
        cc.colorspace = spec.colorspace
        cc.color_range = _RANGE_FULL if spec.full_range else _RANGE_LIMITED
        cc.color_primaries, cc.color_trc = tags["color_primaries"], tags["color_trc"]
        if first.rotation:
            v.set_display_rotation(first.rotation)
        self.video = v
        out.metadata.update(_tags(self.inp.metadata))
        v.metadata.update(_tags(video_in.metadata))
        for d in self.inp.streams.data:
            timecode = d.metadata.get("timecode")
            if timecode:  # a tmcd track: mov/mp4 write it again from the video's tag
                if "timecode" not in v.metadata:
                    v.metadata["timecode"] = timecode
                self.notes["data"].append(f"timecode {timecode} kept")
            else:
                self.notes["data"].append(f"dropped {d.metadata.get('handler_name') or 'data'}")
        for a in self.inp.streams.audio:
            self._add_audio(out, a)
        for t in self.inp.streams.subtitles:
            self._add_subtitles(out, t)
        try:
            out.start_encoding()
        except av.FFmpegError as exc:
            tuning = f"preset {preset!r}, " if codec in PRESETS else ""
            raise VideoError(f"{self.dst}: cannot open the {codec} encoder ({tuning}crf {crf}: "
                             f"{_reason(exc)})") from None
        self.started = True

    def _add_audio(self, out: av.container.OutputContainer, a: av.AudioStream) -> None:
        name = a.codec_context.name
        notes = self.notes["audio"]
        if name in out.supported_codecs:
            self.routes[a] = ("copy", out.add_stream_from_template(a))
            self.routes[a][1].metadata.update(_tags(a.metadata))
            notes.append(f"copied {name}")
            return
        for enc, tag in (("aac", "aac"), ("libopus", "opus")):
            if tag in out.supported_codecs:
                rate = 48000 if enc == "libopus" else a.codec_context.sample_rate
                s = out.add_stream(enc, rate=rate, layout=a.codec_context.layout)
                resampler = av.AudioResampler(format=s.codec_context.format.name,
                                              layout=a.codec_context.layout, rate=rate,
                                              frame_size=s.codec_context.frame_size or None)
                s.metadata.update(_tags(a.metadata))
                self.routes[a] = ("encode", s, resampler)
                notes.append(f"re-encoded {name} to {tag}")
                return
        notes.append(f"dropped {name}: the output container cannot hold it")

    def _add_subtitles(self, out: av.container.OutputContainer, t: av.stream.Stream) -> None:
        name = t.codec_context.name if t.codec_context else "unknown"
        if name not in out.supported_codecs:
            self.notes["subtitles"].append(f"dropped {name}: the output container cannot hold "
                                           "it")
            return
        s = out.add_stream_from_template(t)
        s.metadata.update(_tags(t.metadata))
        self.routes[t] = ("copy", s)
        self.notes["subtitles"].append(f"copied {name}")

    def packet(self, packet: av.Packet) -> None:
        """Copy or re-encode a packet of a carried stream (held until the output starts)."""
        if not self.started:
            self.pending.append(packet)
            return
        route = self.routes.get(packet.stream)
        if route is None:
            return
        if route[0] == "copy":
            packet.stream = route[1]
            self.container.mux(packet)
            return
        _, stream, resampler = route
        for frame in packet.decode():
            for f in resampler.resample(frame):
                self.container.mux(stream.encode(f))

    def flush_pending(self) -> None:
        pending, self.pending = self.pending, []
        for p in pending:
            self.packet(p)

    def finish(self) -> None:
        self.container.mux(self.video.encode())
        for route in self.routes.values():
            if route[0] == "encode":
                _, stream, resampler = route
                for f in resampler.resample(None):
                    self.container.mux(stream.encode(f))
                self.container.mux(stream.encode())
        self.container.close()

    def close(self) -> None:
        if self.container is not None:
            self.container.close()


def _transcode(inp, src: Path, tmp: Path, dst: Path, guide: TemporalGuide | None,
               curve: Curve | None, restorer: Restorer, settings,
               on_frame: Callable[[int, int], None] | None) -> VideoSummary:
    video = _check_video_stream(inp, src)
    container_tags = colour_tags(video.codec_context)
    carried = [*inp.streams.audio, *inp.streams.subtitles]
    total = int(video.frames or 0)
    summary = VideoSummary(input=str(src), output=str(dst), codec=settings[0])
    out = _Output(tmp, dst, inp, settings)
    spec = radius = last_time = None
    lut = None if curve is None else gain_lut(curve, _LUT_SIZE)
    start = time.perf_counter()
    try:
        out.open()
        for kind, item in _frames(inp, video, carried, src):
            if kind == "packet":
                out.packet(item)
                continue
            frame = item
            if spec is None:
                tags = colour_tags(frame, container_tags)
                _check_sdr(tags["color_trc"], src)
                summary.input_bits = _bits(frame)
                eight, deep = settings[1]
                if summary.input_bits > 8 and deep is not None:
                    summary.bits = 10
                spec = YuvSpec.of(frame, container_tags, summary.bits)
                radius = max(1, radius_for((frame.height, frame.width)) // 2)
                out.start(frame, video, spec, tags, deep if summary.bits > 8 else eight)
                summary.width, summary.height = out.video.width, out.video.height
                summary.rotation = int(frame.rotation or 0)
                out.flush_pending()
            frame = _writable_420(frame, spec.bits)
            y, u, v = _planes(frame)
            luma = yuv_luminance(y, u, v, spec)
            base = fast_guided_filter(luma, radius, restorer.tone.eps, low_radius=LOW_RADIUS)
            if guide is not None:
                step = guide.step(network_input(base), float(frame.time or 0.0),
                                  partial(restorer.levels, luma))
                summary.estimates += step.estimated
                if step.cut:
                    summary.cuts.append(round(float(frame.time or 0.0), 4))
                frame_curve = restorer.curve_for(step.phi_s, step.phi_h,
                                                 Decision(step.exposure, step.amount))
                lut = gain_lut(frame_curve, _LUT_SIZE)
                summary.phi.append((step.phi_s, step.phi_h))
                summary.decisions.append((step.exposure, step.amount))
            else:
                summary.phi.append((curve.phi_s, curve.phi_h))
                summary.decisions.append((curve.exposure, curve.amount))
            apply_gain_yuv(y, u, v, base, lut, spec)
            if (frame.width, frame.height) != (out.video.width, out.video.height):
                frame = _cropped(frame, out.video.width, out.video.height)
            try:
                out.container.mux(out.video.encode(frame))
            except av.FFmpegError as exc:
                raise VideoError(f"{dst}: encoding failed ({_reason(exc)})") from None
            summary.frames += 1
            last_time = frame.time
            if on_frame is not None:
                on_frame(summary.frames, total)
        if summary.frames == 0:
            raise VideoError(f"{src}: no decodable video frames")
        if total and summary.frames < total:
            raise VideoError(f"{src}: truncated video ({summary.frames} of {total} frames)")
        _check_complete(video, last_time, src)
        out.finish()
    except BaseException:
        out.close()
        raise
    summary.seconds = time.perf_counter() - start
    summary.audio, summary.subtitles, summary.data = (
        out.notes["audio"], out.notes["subtitles"], out.notes["data"])
    return summary


def _variable_rate(video: av.VideoStream) -> bool:
    """Whether the stream's average frame rate is more than 1 % off its base rate (the rate
    its timestamps tick at): frames are unevenly spaced."""
    average, base = video.average_rate, video.base_rate
    return bool(average and base) and abs(float(average / base) - 1) > 0.01


def _stream_seconds(video: av.VideoStream) -> float | None:
    """The video stream's declared duration: its own field, else Matroska's DURATION tag."""
    if video.duration and video.time_base:
        return float(video.duration * video.time_base)
    tag = video.metadata.get("DURATION", "")
    try:
        h, m, sec = tag.split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except ValueError:
        return None


def _check_complete(video: av.VideoStream, last_time: float | None, src: Path) -> None:
    """Raise if the frames stop well before the declared end (a container cut short)."""
    declared = _stream_seconds(video)
    rate = float(video.average_rate or video.guessed_rate or 25)
    if declared is None or last_time is None:
        return
    if last_time + 1 / rate < declared - 3 / rate:
        raise VideoError(f"{src}: truncated video (frames end at {last_time:.2f} s of "
                         f"{declared:.2f} s)")


def _even(n: int) -> int:
    """Chroma subsampling halves sizes: an odd width or height loses its last column or row."""
    return max(2, n - n % 2)


def _cropped(frame: av.VideoFrame, width: int, height: int) -> av.VideoFrame:
    """The top-left width x height of a 4:2:0 frame (even sizes), timestamp and tags kept."""
    out = av.VideoFrame(width, height, frame.format.name)
    for a, b in zip(_planes(frame), _planes(out), strict=True):
        b[...] = a[:b.shape[0], :b.shape[1]]
    return _with_timing_and_tags(out, frame)


def _writable_420(frame: av.VideoFrame, bits: int) -> av.VideoFrame:
    """The frame as 4:2:0 at `bits` (8 or 10) with its own (writable) buffers, timestamp and
    colour tags kept."""
    formats = ("yuv420p", "yuvj420p") if bits == 8 else ("yuv420p10le",)
    if frame.format.name not in formats:
        return _with_timing_and_tags(frame.reformat(format=formats[0]), frame)
    frame.make_writable()
    return frame


def _with_timing_and_tags(out: av.VideoFrame, frame: av.VideoFrame) -> av.VideoFrame:
    """out, given frame's timestamp, time base and colour tags (a new frame has none)."""
    out.pts, out.time_base = frame.pts, frame.time_base
    out.colorspace, out.color_range = frame.colorspace, frame.color_range
    return out
