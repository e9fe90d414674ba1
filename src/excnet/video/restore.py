"""Restore a video file: decode, restore each frame on its Y'CbCr planes, encode.

Frames are never all held: each one is decoded, corrected and handed to the encoder (on its
own thread, `output.Writer`), so memory stays flat however long the clip. Frames keep their
timestamps and the stream its time base, rotation and colour tags (`output.Output` carries
audio, subtitles and tags over).

Frames are restored at 8-bit 4:2:0, or at 10-bit 4:2:0 when the input has more than 8 bits per
sample and the encoder takes a 10-bit format (the planes are uint16; luminance, base layer and
curve work on the 0..255 scale either way, only the gain is applied at 10 bits).

Per frame (4:2:0; shapes for a W x H frame, chroma planes W/2 x H/2):
1. luminance as the method defines it, Y = 0.299 R + 0.587 G + 0.114 B on 0..255, computed at
   chroma resolution from Y' (area-downsampled), Cb and Cr with the stream's colour matrix
   (`yuv.yuv_luminance`);
2. base layer: the self-guided filter of the method (radius 4 % of the short side, halved for
   chroma resolution; the restorer's eps: 800 faithful, 1600 by default) through
   `excnet.base.fast_guided_filter` (coefficients on a reduced grid, applied at chroma
   resolution);
3. phi from `excnet.temporal.TemporalGuide` (estimate every k-th frame, smooth in time, reset on
   cuts) or a fixed curve;
4. gain (f(b) + 1e-5)/(b + 1e-5) from a lookup table at chroma resolution, applied to Cb, Cr
   and, after a bilinear 2x upsampling, to Y' (`yuv.apply_gain_yuv`).
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import av
import numpy as np
import torch

from ..adapt import Decision
from ..base import fast_guided_filter, network_input, radius_for
from ..curve import Curve, gain_lut
from ..pipeline import Restorer
from ..temporal import (
    DEFAULT_CUT_THRESHOLD,
    DEFAULT_EVERY,
    DEFAULT_TAU,
    Estimator,
    TemporalGuide,
)
from .errors import VideoError, reason
from .output import DEFAULT_CODECS, Output, Writer, encoder_formats
from .yuv import (
    Scratch,
    YuvSpec,
    apply_gain_yuv,
    colour_tags,
    frame_planes,
    sample_bits,
    yuv_luminance,
)

#: Reduced-grid window radius of the fast guided filter (within a grey level of the exact one).
LOW_RADIUS = 3
#: AVColorTransferCharacteristic values of HDR transfers: SMPTE ST 2084 (PQ), ARIB STD-B67 (HLG).
HDR_TRANSFERS = {16: "PQ", 18: "HLG"}
_LUT_SIZE = 4096


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
                         f"({reason(exc)})") from None


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
        raise VideoError(f"{src}: damaged or truncated video ({reason(exc)})") from None


def _transcode(inp, src: Path, tmp: Path, dst: Path, guide: TemporalGuide | None,
               curve: Curve | None, restorer: Restorer, settings,
               on_frame: Callable[[int, int], None] | None) -> VideoSummary:
    video = _check_video_stream(inp, src)
    container_tags = colour_tags(video.codec_context)
    carried = [*inp.streams.audio, *inp.streams.subtitles]
    total = int(video.frames or 0)
    summary = VideoSummary(input=str(src), output=str(dst), codec=settings[0])
    out = Output(tmp, dst, inp, settings)
    spec = radius = last_time = None
    lut = None if curve is None else gain_lut(curve, _LUT_SIZE)
    scratch = Scratch()
    start = time.perf_counter()
    writer = Writer()
    try:
        out.open()
        for kind, item in _frames(inp, video, carried, src):
            if kind == "packet":
                if out.started:
                    writer.put(out.packet, item)
                else:  # nothing is queued before the start: held here, in order
                    out.packet(item)
                continue
            frame = item
            if spec is None:
                tags = colour_tags(frame, container_tags)
                _check_sdr(tags["color_trc"], src)
                summary.input_bits = sample_bits(frame)
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
            y, u, v = frame_planes(frame)
            luma = yuv_luminance(y, u, v, spec, scratch)
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
            apply_gain_yuv(y, u, v, base, lut, spec, scratch)
            if (frame.width, frame.height) != (out.video.width, out.video.height):
                frame = _cropped(frame, out.video.width, out.video.height)
            writer.put(out.encode, frame)
            summary.frames += 1
            last_time = frame.time
            if on_frame is not None:
                on_frame(summary.frames, total)
        if summary.frames == 0:
            raise VideoError(f"{src}: no decodable video frames")
        if total and summary.frames < total:
            raise VideoError(f"{src}: truncated video ({summary.frames} of {total} frames)")
        _check_complete(video, last_time, src)
        writer.put(out.finish)
        writer.join()
    except BaseException:
        writer.abort()
        out.close()
        raise
    summary.seconds = time.perf_counter() - start
    summary.audio, summary.subtitles, summary.data = (
        out.notes["audio"], out.notes["subtitles"], out.notes["data"])
    return summary


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


def _cropped(frame: av.VideoFrame, width: int, height: int) -> av.VideoFrame:
    """The top-left width x height of a 4:2:0 frame (even sizes), timestamp and tags kept."""
    out = av.VideoFrame(width, height, frame.format.name)
    for a, b in zip(frame_planes(frame), frame_planes(out), strict=True):
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
