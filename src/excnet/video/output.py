"""The output file: the encoder and its settings, the streams carried over from the input
(audio copied or re-encoded, subtitles, tags, timecode), and a thread that encodes and muxes
while the next frame is restored."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av

from .errors import VideoError, reason
from .yuv import RANGE_FULL, RANGE_LIMITED, YuvSpec

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


def _tags(metadata: dict[str, str]) -> dict[str, str]:
    """The tags worth carrying to the output (`_STALE_TAGS` and Matroska statistics left out)."""
    return {k: v for k, v in metadata.items()
            if k.lower().split("-")[0] not in _STALE_TAGS and not k.startswith("_STATISTICS")}


class Output:
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
            why = (f"unknown container suffix {self.dst.suffix!r}"
                   if "output format" in reason(exc) else reason(exc))
            raise VideoError(f"{self.dst}: cannot write this container ({why})") from None
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
            raise VideoError(f"{self.dst}: cannot encode with {codec!r} ({reason(exc)})") from None
        v.width, v.height = _even(first.width), _even(first.height)
        v.pix_fmt = pix_fmt
        v.time_base = video_in.time_base
        v.codec_context.time_base = video_in.time_base
        cc = v.codec_context
        cc.colorspace = spec.colorspace
        cc.color_range = RANGE_FULL if spec.full_range else RANGE_LIMITED
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
                             f"{reason(exc)})") from None
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

    def encode(self, frame: av.VideoFrame) -> None:
        """Encode a restored video frame and mux what the encoder gives back."""
        try:
            self.container.mux(self.video.encode(frame))
        except av.FFmpegError as exc:
            raise VideoError(f"{self.dst}: encoding failed ({reason(exc)})") from None

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
        """Flush the encoders (the frames they still hold) and close the file."""
        try:
            self.container.mux(self.video.encode())
            for route in self.routes.values():
                if route[0] == "encode":
                    _, stream, resampler = route
                    for f in resampler.resample(None):
                        self.container.mux(stream.encode(f))
                    self.container.mux(stream.encode())
            self.container.close()
        except av.FFmpegError as exc:
            raise VideoError(f"{self.dst}: encoding failed ({reason(exc)})") from None

    def close(self) -> None:
        if self.container is not None:
            self.container.close()


class Writer:
    """Runs the output's calls (encode, mux, finish) in order on a thread of its own, so the
    encoder (which releases the GIL) works on one frame while the next is decoded and
    restored: on two cores the two overlap instead of taking turns. At most `depth` calls wait;
    the first error is raised by the next `put` or by `join`."""

    def __init__(self, depth: int = 2) -> None:
        self.calls: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        self.stopped = False

    def put(self, fn: Callable, *args) -> None:
        """Queue fn(*args) (blocks while `depth` calls wait); raises an earlier call's error."""
        if self.error is not None:
            raise self.error
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="excnet-encoder", daemon=True)
            self.thread.start()
        self.calls.put((fn, args))

    def _run(self) -> None:
        while True:
            fn, args = self.calls.get()
            if fn is None:
                return
            if self.error is None and not self.stopped:
                try:
                    fn(*args)
                except BaseException as exc:  # handed to the caller's thread
                    self.error = exc

    def join(self) -> None:
        """Wait for every queued call; raise the first error."""
        if self.thread is not None:
            self.calls.put((None, ()))
            self.thread.join()
            self.thread = None
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        """Drop the calls still queued and wait for the running one (the output is closed
        next)."""
        self.stopped = True
        with contextlib.suppress(BaseException):
            self.join()


def _even(n: int) -> int:
    """Chroma subsampling halves sizes: an odd width or height loses its last column or row."""
    return max(2, n - n % 2)


def _variable_rate(video: av.VideoStream) -> bool:
    """Whether the stream's average frame rate is more than 1 % off its base rate (the rate
    its timestamps tick at): frames are unevenly spaced."""
    average, base = video.average_rate, video.base_rate
    return bool(average and base) and abs(float(average / base) - 1) > 0.01
