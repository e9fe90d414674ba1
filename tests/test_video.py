"""Video restoration: temporal logic, stream metadata and audio, bad input, flicker and cuts.

Clips are made at test time (scripts/make_clips.py or tiny PyAV writers) in temporary folders.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import signal
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from excnet import Curve, Restorer
from excnet.base import fast_guided_filter, radius_for
from excnet.cli import main
from excnet.curve import gain_lut
from excnet.temporal import TemporalGuide, block_signature, change_score
from excnet.video import (
    LOW_RADIUS,
    Scratch,
    VideoError,
    YuvSpec,
    apply_gain_yuv,
    restore_video,
    yuv_luminance,
)

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("make_clips", ROOT / "scripts" / "make_clips.py")
make_clips = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_clips)

SIZE = (192, 108)
FPS = 25


# ----------------------------------------------------------------------------- helpers


def write_clip(path: Path, n: int = 6, *, size=(64, 48), pts=None, rotation=0, audio=None,
               pix_fmt="yuv420p", trc=None, colour_range=1, time_base=Fraction(1, 25),
               level=80, faststart=False, codec="libx264", srt=None, tags=None,
               timecode=None, primaries=None) -> Path:
    """A tiny H.264 clip with chosen timestamps, rotation, audio codec, pixel format, transfer;
    srt: subtitles (an .srt file) copied in; tags: the file's and the audio's tags."""
    w, h = size
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as out, \
            contextlib.ExitStack() as stack:
        out.metadata.update(tags or {})
        quiet = {"x265-params": "log-level=error"} if codec == "libx265" else {}
        v = out.add_stream(codec, rate=25, options={"crf": "10", **quiet})
        v.width, v.height, v.pix_fmt = w, h, pix_fmt
        v.codec_context.colorspace, v.codec_context.color_range = 1, colour_range
        if trc is not None:
            v.codec_context.color_trc = trc
        if primaries is not None:
            v.codec_context.color_primaries = primaries
        if rotation:
            v.set_display_rotation(rotation)
        if timecode:
            v.metadata["timecode"] = timecode
        a = out.add_stream(audio, rate=8000, layout="mono") if audio else None
        if a is not None:
            a.metadata.update(tags or {})
        subs = stack.enter_context(av.open(str(srt))) if srt else None
        s = out.add_stream_from_template(subs.streams.subtitles[0]) if subs else None
        rng = np.random.default_rng(0)
        for t in pts if pts is not None else range(n):
            rgb = np.clip(level + 40 * rng.random((h, w, 3)), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, "rgb24").reformat(
                format=pix_fmt, dst_colorspace=1, dst_color_range=colour_range)
            frame.pts, frame.time_base = t, time_base
            out.mux(v.encode(frame))
        out.mux(v.encode())
        if a is not None:
            for k in range(4):
                frame = av.AudioFrame(format=a.codec_context.format.name, layout="mono",
                                      samples=a.codec_context.frame_size or 1024)
                for p in frame.planes:  # random samples (as floats: random bytes make NaNs)
                    noise = (rng.random(p.buffer_size // 4, np.float32) - 0.5).tobytes() \
                        if "flt" in frame.format.name else bytes(
                            rng.integers(0, 256, p.buffer_size, dtype=np.uint8))
                    p.update(noise)
                frame.sample_rate, frame.pts = 8000, k * frame.samples
                out.mux(a.encode(frame))
            out.mux(a.encode())
        for packet in subs.demux(subs.streams.subtitles[0]) if subs else ():
            if packet.size:
                packet.stream = s
                out.mux(packet)
    return path


def write_deep_clip(path: Path, n: int = 3, *, size=(64, 48), codec="libx264",
                    pix_fmt="yuv420p10le", colour_range=1, colorspace=1, lo=64, hi=464) -> Path:
    """A tiny 10-bit clip: a smooth dark ramp of Y' from lo to hi (10-bit codes; 393 levels by
    default, 100 at 8 bits) and a slight tint, tagged BT.709 primaries and transfer."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    y = np.round(lo + (hi - lo) * (xx / (w - 1) + yy / (h - 1)) / 2)
    c = np.full((h // 4, w), 512)
    planes = np.concatenate([y, c - 16, c + 24]).astype(np.uint16)  # yuv420p10le's layout
    with av.open(str(path), "w") as out:
        v = out.add_stream(codec, rate=25, options={"crf": "10"} if codec == "libx264" else {})
        v.width, v.height, v.pix_fmt = w, h, pix_fmt
        cc = v.codec_context
        cc.colorspace, cc.color_range, cc.color_primaries, cc.color_trc = (colorspace,
                                                                           colour_range, 1, 1)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p10le")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode())
    return path


def video_frames(path: Path):
    with av.open(str(path)) as c:
        yield from c.decode(c.streams.video[0])


def mean_luma(path: Path) -> np.ndarray:
    """Mean Y' of every frame of a clip."""
    return np.array([f.to_ndarray()[: f.height].mean() for f in video_frames(path)])


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


def subtitle_packets(path: Path) -> list[tuple[bytes, float, float]]:
    """(text, start, duration) of every subtitle packet, in seconds."""
    with av.open(str(path)) as c:
        s = c.streams.subtitles[0]
        return [(bytes(p), float(p.pts * p.time_base), float(p.duration * p.time_base))
                for p in c.demux(s) if p.size]


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """`excnet video ARGS` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    try:
        code = main(["video", *map(str, args)])
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    return {kind: make_clips.make_clip(d / f"{kind}.mp4", kind, SIZE, 150, FPS, audio=True)
            for kind in make_clips.KINDS}


# ----------------------------------------------------------------------------- temporal logic


class FakeEstimator:
    """Returns queued answers and records each call's fresh flag."""

    def __init__(self, *answers):
        self.answers, self.calls = list(answers), []

    def __call__(self, x, fresh):
        self.calls.append(fresh)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def flat(level: float) -> np.ndarray:
    return np.full((128, 128), level, np.float32)


def test_smoothing_follows_first_order_filter_in_video_time():
    est = FakeEstimator((0.0, 0.0), (1.0, 0.5))
    guide = TemporalGuide(est, every=1, tau=0.4)
    guide.step(flat(0.3), 0.0)
    times = [0.04, 0.1, 0.3, 0.31, 0.8]  # irregular steps: a variable frame rate
    for t in times:
        step = guide.step(flat(0.3), t)
    expected = 1 - math.exp(-0.8 / 0.4)  # steps compose: only the elapsed time matters
    assert step.phi_s == pytest.approx(expected, abs=1e-12)
    assert step.phi_h == pytest.approx(0.5 * expected, abs=1e-12)
    assert not step.cut


def test_estimates_every_kth_frame_and_glides_between():
    est = FakeEstimator((0.2, 0.0), (0.6, 0.0))
    guide = TemporalGuide(est, every=4, tau=0.2)
    steps = [guide.step(flat(0.3), i / 25) for i in range(9)]
    assert [s.estimated for s in steps] == [True, False, False, False, True, False, False,
                                            False, True]
    phis = [s.phi_s for s in steps]
    assert phis[:4] == [0.2] * 4  # held until the next estimate
    assert all(b > a for a, b in zip(phis[4:], phis[5:], strict=False))  # then a smooth glide
    assert phis[-1] < 0.6


def test_cut_resets_to_new_estimate_with_fresh_training():
    est = FakeEstimator((0.2, 0.1), (0.9, 0.3))
    guide = TemporalGuide(est, every=10, tau=1.0, cut_threshold=0.03)
    guide.step(flat(0.2), 0.0)
    step = guide.step(flat(0.6), 0.04)  # a new scene: the block means jump by 0.4
    assert step.cut and step.estimated
    assert (step.phi_s, step.phi_h) == (0.9, 0.3)  # followed at once, not smoothed
    assert est.calls == [True, True]  # first frame and cut both ask for full training


def test_noise_and_slow_pan_are_not_cuts(clips):
    rng = np.random.default_rng(1)
    x = np.clip(0.4 + 0.2 * rng.random((128, 128)), 0, 1).astype(np.float32)
    noisy = np.clip(x + 0.02 * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
    shifted = np.roll(x, 1, axis=1)
    assert change_score(block_signature(x), block_signature(noisy)) < 0.005
    assert change_score(block_signature(x), block_signature(shifted)) < 0.03
    assert restore_video(clips["pan"], clips["pan"].with_name("pan_out.mp4")).cuts == []


def test_cut_and_lighting_change_are_detected(clips, tmp_path):
    s = restore_video(clips["events"], tmp_path / "out.mp4")
    frames = 150
    change = math.ceil(make_clips.LIGHT_CHANGE_AT * frames) / FPS
    cut = math.ceil(make_clips.CUT_AT * frames) / FPS
    assert s.cuts == [pytest.approx(change, abs=1e-3), pytest.approx(cut, abs=1e-3)]


def test_parameter_state_is_carried_from_frame_to_frame(clips, tmp_path):
    guided = restore_video(clips["static"], tmp_path / "g.mp4")
    indep = restore_video(clips["static"], tmp_path / "i.mp4", guided=False)
    g, i = np.array(guided.phi), np.array(indep.phi)
    assert np.ptp(g, axis=0).max() < 0.01  # the target for a static clip
    assert np.ptp(g, axis=0).max() < np.ptp(i, axis=0).max()
    assert guided.estimates == 50 and indep.estimates == 150  # every 3rd frame vs all


def test_network_state_is_carried_from_frame_to_frame(tmp_path):
    clip = write_clip(tmp_path / "c.mp4", 3, size=(128, 96))
    restorer = Restorer("excnet", max_iters=1)
    restore_video(clip, tmp_path / "o.mp4", restorer=restorer, every=1, fresh_iters=1)
    assert restorer.network.images_seen == 3  # one warm network trained on every frame


def test_guided_flicker_no_worse_than_fixed_phi(clips, tmp_path):
    # phi alone (the adaptive rule off, as the fixed curve has it)
    plain = Restorer("direct", adapt=False)
    guided = restore_video(clips["pan"], tmp_path / "g.mp4", restorer=plain)
    phi = np.median(np.array(guided.phi), axis=0)
    restore_video(clips["pan"], tmp_path / "f.mp4", curve=Curve(*phi))
    indep = restore_video(clips["pan"], tmp_path / "i.mp4", restorer=plain, guided=False)
    flicker = {k: np.diff(mean_luma(tmp_path / f"{k}.mp4")).std() for k in "gf"}
    assert flicker["g"] <= 1.1 * flicker["f"]
    jitter = {k: np.diff(np.array(s.phi), axis=0).std(axis=0) for k, s in
              (("g", guided), ("i", indep))}
    assert np.all(jitter["g"] < 0.5 * jitter["i"])  # smoothing calms phi frame to frame


def test_the_adaptive_decision_follows_a_pan_calmly(clips, tmp_path):
    # the pan ends on a darker part of the scene: the default lifts it a little, gliding
    guided = restore_video(clips["pan"], tmp_path / "g.mp4")
    indep = restore_video(clips["pan"], tmp_path / "i.mp4", guided=False)
    exposure = {k: np.array(s.decisions)[:, 0] for k, s in (("g", guided), ("i", indep))}
    assert exposure["g"][-10:].mean() > exposure["g"][:10].mean() + 0.1
    assert np.diff(exposure["g"]).std() < 0.5 * np.diff(exposure["i"]).std()
    flicker = {k: np.diff(mean_luma(tmp_path / f"{k}.mp4")).std() for k in "gi"}
    assert flicker["g"] < flicker["i"]


# ----------------------------------------------------------------------------- colour


def test_luminance_from_yuv_matches_rgb_formula():
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    for space, rng_tag in ((1, 1), (5, 2)):
        f = av.VideoFrame.from_ndarray(rgb, "rgb24").reformat(
            format="yuv444p", dst_colorspace=space, dst_color_range=rng_tag)
        f.colorspace, f.color_range = space, rng_tag
        y, u, v = (f.to_ndarray()[i] for i in range(3))
        lum = yuv_luminance(y, u, v, YuvSpec.of(f))
        expected = rgb.astype(float) @ np.array([0.299, 0.587, 0.114])
        assert np.abs(lum - expected).mean() < 1.0


def test_phi_zero_round_trip_keeps_channel_means(clips, tmp_path):
    out = restore_video(clips["pan"], tmp_path / "o.mp4", curve=Curve(0.0, 0.0)).output
    for a, b in zip(video_frames(clips["pan"]), video_frames(Path(out)), strict=True):
        ma = a.to_ndarray(format="rgb24").reshape(-1, 3).mean(0)
        mb = b.to_ndarray(format="rgb24").reshape(-1, 3).mean(0)
        assert np.abs(ma - mb).max() <= 1.0


def test_restoration_brightens_the_subject(clips, tmp_path):
    # the curve alone: the adaptive default judges this sample (a small bright window, a
    # large dim cat) as only mildly back-lit and lifts it little
    out = restore_video(clips["static"], tmp_path / "o.mp4",
                        restorer=Restorer("direct", adapt=False)).output
    assert mean_luma(Path(out)).mean() > mean_luma(clips["static"]).mean() + 5
    adaptive = restore_video(clips["static"], tmp_path / "a.mp4")
    assert mean_luma(Path(adaptive.output)).mean() >= mean_luma(clips["static"]).mean() - 0.5
    record = adaptive.to_dict()
    assert record["exposure"]["max"] < 0.1 and 0 <= record["amount"]["mean"] <= 1


# ----------------------------------------------------------------------------- metadata, audio


def test_timestamps_time_base_rotation_and_colour_tags_kept(tmp_path):
    pts = [0, 1, 2, 5, 6, 10, 11, 12]  # variable frame rate
    src = write_clip(tmp_path / "vfr.mp4", pts=pts, rotation=90, time_base=Fraction(1, 25))
    out = restore_video(src, tmp_path / "o.mp4", curve=Curve(0.5, 0.1))
    with av.open(str(src)) as a, av.open(str(out.output)) as b:
        assert b.streams.video[0].time_base == a.streams.video[0].time_base
    times_in = [f.time for f in video_frames(src)]
    frames_out = list(video_frames(Path(out.output)))
    assert [f.time for f in frames_out] == pytest.approx(times_in, abs=1e-4)
    assert [f.rotation for f in frames_out] == [90] * len(pts)
    assert (frames_out[0].colorspace, frames_out[0].color_range) == (1, 1)
    assert out.rotation == 90


@pytest.mark.parametrize("name", ["o.mp4", "o.mkv"])
def test_variable_frame_rate_keeps_its_duration(tmp_path, name):
    pts = [0, 1, 2, 5, 6, 10, 11, 12, 20, 25, 26]  # the last frame at 1.04 s
    src = write_clip(tmp_path / "vfr.mp4", pts=pts)
    restore_video(src, tmp_path / name, curve=Curve(0.5, 0.1))
    with av.open(str(tmp_path / name)) as c:
        times = [f.time for f in c.decode(video=0)]
        seconds = c.duration / av.time_base
    assert times == pytest.approx([t / 25 for t in pts], abs=1e-3)
    assert 1.04 < seconds <= 1.04 + 0.1  # MP4 with B-frames said 0.96 s: its DTS ended early


@pytest.mark.parametrize("codec, name", [("libx265", "hevc.mkv"), ("libvpx-vp9", "vp9.webm"),
                                         ("libx264", "h264.mov")])
def test_hevc_vp9_and_mov_inputs(tmp_path, codec, name):
    src = write_clip(tmp_path / name, 4, codec=codec)
    out = restore_video(src, tmp_path / "o.mp4")
    assert out.frames == 4
    assert [f.width for f in video_frames(Path(out.output))] == [64] * 4


def test_full_range_stays_full_range(tmp_path):
    src = write_clip(tmp_path / "full.mp4", colour_range=2, pix_fmt="yuvj420p")
    out = restore_video(src, tmp_path / "o.mp4", curve=Curve(0.0, 0.0))
    frame = next(video_frames(Path(out.output)))
    assert frame.color_range == 2


def test_audio_copied_untouched(clips, tmp_path):
    out = restore_video(clips["static"], tmp_path / "o.mkv")
    assert out.audio == ["copied aac"]
    assert audio_packets(tmp_path / "o.mkv") == audio_packets(clips["static"])


def test_audio_reencoded_when_container_cannot_hold_it(tmp_path):
    src = write_clip(tmp_path / "mulaw.mov", audio="pcm_mulaw")
    out = restore_video(src, tmp_path / "o.mp4")
    assert out.audio == ["re-encoded pcm_mulaw to aac"]
    with av.open(str(out.output)) as c:
        assert c.streams.audio[0].codec_context.name == "aac"
        assert c.streams.audio[0].duration or c.duration


# ----------------------------------------------------------------------------- bad input


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    audio_only = tmp_path / "audio.m4a"
    with av.open(str(audio_only), "w") as out:
        a = out.add_stream("aac", rate=8000, layout="mono")
        frame = av.AudioFrame(format="fltp", layout="mono", samples=1024)
        frame.planes[0].update(bytes(frame.planes[0].buffer_size))
        frame.sample_rate, frame.pts = 8000, 0
        out.mux(a.encode(frame))
        out.mux(a.encode())
    whole = write_clip(tmp_path / "whole.mp4", 30, size=(128, 96)).read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(whole[: len(whole) // 2])
    faststart = write_clip(tmp_path / "fs.mp4", 50, size=(128, 96), faststart=True).read_bytes()
    truncated_fs = tmp_path / "truncated_faststart.mp4"
    truncated_fs.write_bytes(faststart[: len(faststart) * 2 // 3])
    mkv = write_clip(tmp_path / "ok.mkv", 50, size=(128, 96)).read_bytes()
    truncated_mkv = tmp_path / "truncated.mkv"
    truncated_mkv.write_bytes(mkv[: len(mkv) * 2 // 3])
    unknown = tmp_path / "unknown.mkv"
    unknown.write_bytes(mkv.replace(b"V_MPEG4/ISO/AVC", b"V_XXXXX/ISO/AVC"))
    hdr = write_clip(tmp_path / "hdr.mkv", pix_fmt="yuv420p10le", trc=16)
    return {"not a video": (text, "not a readable video"),
            "no video stream": (audio_only, "no video stream"),
            "truncated mp4": (truncated, "damaged or truncated"),
            "truncated faststart mp4": (truncated_fs, "truncated video"),
            "truncated mkv": (truncated_mkv, "truncated"),
            "unsupported codec": (unknown, "unsupported video codec"),
            "hdr": (hdr, "HDR video (PQ transfer)")}


def test_bad_inputs_raise_one_line_error_and_leave_no_file(tmp_path):
    for name, (src, words) in _bad_inputs(tmp_path).items():
        out = tmp_path / "out" / f"{name}.mp4"
        out.parent.mkdir(exist_ok=True)
        with pytest.raises(VideoError) as err:
            restore_video(src, out)
        msg = str(err.value)
        assert words in msg and str(src) in msg and "\n" not in msg, name
        assert list(out.parent.iterdir()) == [], name


def test_cli_bad_inputs_exit_non_zero_with_one_line(tmp_path, capsys):
    for name, (src, _) in _bad_inputs(tmp_path).items():
        out = tmp_path / "out" / f"{name}.mp4"
        out.parent.mkdir(exist_ok=True)
        code, _, err = run_cli(capsys, src, "-o", out)
        assert code == 1, name
        assert err.count("\n") == 1 and err.startswith("excnet: "), name
        assert str(src) in err, name
        assert list(out.parent.iterdir()) == [], name


def test_cli_json_summary_and_refuses_to_replace_input(tmp_path, capsys):
    src = write_clip(tmp_path / "c.mp4", 8, size=(128, 96))
    code, out, err = run_cli(capsys, src, "-o", tmp_path / "o.mp4", "--json", "--strength",
                             "0.8")
    assert code == 0, err
    rec = json.loads(out)
    assert rec["frames"] == 8 and rec["fps"] > 0 and rec["cuts"] == []
    assert set(rec["phi_s"]) == {"mean", "std", "min", "max"}
    assert rec["audio"] == rec["subtitles"] == rec["data"] == [] and rec["estimates"] == 3
    code, _, err = run_cli(capsys, src, "-o", src)
    assert code == 1 and "would replace the input" in err
    code, _, _ = run_cli(capsys, src, "-o", tmp_path / "x.mp4", "--phi-s", "0.5", "--params",
                         "p.json")
    assert code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4", "o.mp4"]


# ----------------------------------------------------------------------------- output settings


def test_output_folder_is_created_and_webm_gets_vp9(tmp_path):
    src = write_clip(tmp_path / "c.mp4", 3, audio="aac")
    out = restore_video(src, tmp_path / "new" / "sub" / "o.webm", curve=Curve(0.3, 0.1))
    assert out.codec == "libvpx-vp9" and out.audio == ["re-encoded aac to opus"]
    with av.open(str(tmp_path / "new" / "sub" / "o.webm")) as c:
        assert c.streams.video[0].codec_context.name == "vp9"
        assert sum(1 for _ in c.decode(video=0)) == 3


@pytest.mark.parametrize("args, words", [
    (["--preset", "nope"], "cannot open the libx264 encoder (preset 'nope'"),
    (["--crf", "-5"], "cannot open the libx264 encoder"),
    (["--codec", "aac"], "'aac' is not a video encoder"),
    (["--codec", "nope"], "unknown video encoder 'nope'"),
    (["--codec", "libx264rgb"], "takes no Y'CbCr format"),
    (["--codec", "libx265", "-o", "{d}/o.webm"], "webm container cannot hold libx265"),
    (["-o", "{d}/o.xyz"], "unknown container suffix '.xyz'"),
    (["-o", "{d}"], "is a folder"),
])
def test_cli_bad_output_settings_one_line_error(tmp_path, capsys, args, words):
    src = write_clip(tmp_path / "c.mp4", 2, audio="aac")
    d = tmp_path / "out"
    d.mkdir()
    args = [a.format(d=d) for a in args]
    code, _, err = run_cli(capsys, src, *(args if "-o" in args else [*args, "-o", d / "o.mp4"]))
    assert code == 1 and err.startswith("excnet: ") and err.count("\n") == 1, err
    assert words in err
    assert list(d.iterdir()) == []


# ----------------------------------------------------------------------------- other streams, tags


def test_subtitles_tags_and_timecode_carried(tmp_path):
    srt = tmp_path / "s.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:00,080\nHello\n\n"
                   "2\n00:00:00,080 --> 00:00:00,120\nWorld\n")
    tags = {"title": "Sunset", "creation_time": "2024-05-01T10:00:00.000000Z",
            "language": "fra"}
    src = write_clip(tmp_path / "c.mkv", 4, audio="aac", srt=srt, tags=tags)
    out = restore_video(src, tmp_path / "o.mkv", curve=Curve(0.3, 0.1))
    assert (out.audio, out.subtitles) == (["copied aac"], ["copied srt"])
    assert subtitle_packets(tmp_path / "o.mkv") == subtitle_packets(src)
    assert [t for t, _, _ in subtitle_packets(src)] == [b"Hello", b"World"]
    with av.open(str(tmp_path / "o.mkv")) as c:
        assert c.metadata["title"] == "Sunset" and "creation_time" in c.metadata
        assert c.streams.audio[0].metadata["language"] == "fra"
    dropped = restore_video(src, tmp_path / "o.mp4", curve=Curve(0.3, 0.1))
    assert dropped.subtitles == ["dropped srt: the output container cannot hold it"]
    mov = write_clip(tmp_path / "tc.mov", 3, timecode="01:02:03:04")
    assert restore_video(mov, tmp_path / "tc_out.mov").data == ["timecode 01:02:03:04 kept"]
    with av.open(str(tmp_path / "tc_out.mov")) as c:
        assert c.streams.video[0].metadata["timecode"] == "01:02:03:04"
        assert c.streams.data[0].metadata["timecode"] == "01:02:03:04"  # the tmcd track


def test_cli_sigterm_mid_encode_leaves_no_file(tmp_path, capsys, monkeypatch):
    import excnet.video.restore

    src = write_clip(tmp_path / "c.mp4", 6)
    out = tmp_path / "out"
    out.mkdir()
    apply = excnet.video.apply_gain_yuv
    frames = []

    def apply_then_terminate(*a):
        apply(*a)
        frames.append(1)
        if len(frames) == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    def fallback(signum, frame):  # without our handler SIGTERM would end pytest
        raise RuntimeError("SIGTERM not handled")

    monkeypatch.setattr(excnet.video.restore, "apply_gain_yuv", apply_then_terminate)
    previous = signal.signal(signal.SIGTERM, fallback)
    try:
        code, _, err = run_cli(capsys, src, "-o", out / "o.mp4")
    finally:
        assert signal.signal(signal.SIGTERM, previous) is fallback  # handler put back
    assert (code, err) == (128 + signal.SIGTERM, "excnet: terminated\n")
    assert len(frames) == 3 and list(out.iterdir()) == []


def test_odd_size_loses_last_row_and_column_only(tmp_path):
    src = write_clip(tmp_path / "odd.mp4", 3, size=(65, 49), pix_fmt="yuv444p")
    out = restore_video(src, tmp_path / "o.mp4", curve=Curve(0.0, 0.0))
    assert (out.frames, out.width, out.height) == (3, 64, 48)
    for a, b in zip(video_frames(src), video_frames(tmp_path / "o.mp4"), strict=True):
        assert (b.width, b.height) == (64, 48)
        ya, yb = a.to_ndarray()[0, :48, :64].astype(int), b.to_ndarray()[:48].astype(int)
        assert np.abs(ya - yb).mean() < 4  # cropped (scaled to fit: 5.6)


def test_container_colour_tags_kept_when_the_bitstream_has_none(tmp_path):
    # prores_ks writes BT.709 into the MOV's colr atom only; its frames say "unspecified"
    src = write_clip(tmp_path / "p.mov", 6, codec="prores_ks", pix_fmt="yuv422p10le", trc=1,
                     primaries=1)
    with av.open(str(src)) as c:
        assert next(c.decode(video=0)).color_trc == 2
    restore_video(src, tmp_path / "o.mp4", curve=Curve(0.3, 0.1))
    with av.open(str(tmp_path / "o.mp4")) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.colorspace, cc.color_range, cc.color_primaries, cc.color_trc) == (1, 1, 1, 1)
        assert cc.pix_fmt == "yuv420p10le"  # 10-bit 4:2:2 in, 10-bit 4:2:0 out


# ----------------------------------------------------------------------------- bit depth


def _reference_restore(frame: av.VideoFrame, curve: Curve, bits: int) -> list[np.ndarray]:
    """The planes of `frame` restored step by step with the module's building blocks at
    `bits` (as 4:2:0, 8 or 10 bits)."""
    frame = frame.reformat(format="yuv420p" if bits == 8 else "yuv420p10le")
    a = frame.to_ndarray()
    h, w = frame.height, frame.width
    y, u, v = a[:h].copy(), a[h:h + h // 4].reshape(h // 2, w // 2), \
        a[h + h // 4:].reshape(h // 2, w // 2)
    u, v = u.copy(), v.copy()
    spec = YuvSpec.of(frame, bits=bits)
    base = fast_guided_filter(yuv_luminance(y, u, v, spec), max(1, radius_for((h, w)) // 2),
                              Restorer("direct").tone.eps, low_radius=LOW_RADIUS)
    apply_gain_yuv(y, u, v, base, gain_lut(curve, 4096), spec)
    return [y, u, v]


def _yuv_planes(frame: av.VideoFrame) -> list[np.ndarray]:
    a, h = frame.to_ndarray(), frame.height
    return [a[:h], a[h:h + h // 4], a[h + h // 4:]]


@pytest.mark.parametrize("deep", [False, True])
def test_frames_are_the_step_by_step_restoration_at_the_input_depth(tmp_path, deep):
    # ffv1 is lossless: the output frames are exactly what the encoder was given
    src = (write_deep_clip(tmp_path / "c.mkv", codec="ffv1") if deep
           else write_clip(tmp_path / "c.mkv", 3, level=30))
    curve = Curve(1.5, 0.1)
    out = restore_video(src, tmp_path / "o.mkv", codec="ffv1", curve=curve)
    assert (out.bits, out.input_bits) == ((10, 10) if deep else (8, 8))
    with av.open(str(tmp_path / "o.mkv")) as c:
        assert c.streams.video[0].codec_context.pix_fmt == (
            "yuv420p10le" if deep else "yuv420p")
    for a, b in zip(video_frames(src), video_frames(tmp_path / "o.mkv"), strict=True):
        expected = _reference_restore(a, curve, out.bits)
        for e, got in zip(expected, _yuv_planes(b), strict=True):
            assert np.array_equal(e.reshape(got.shape), got)


@pytest.mark.parametrize("name, pix_fmt", [("o.mp4", "yuv420p10le"), ("o.mov", "yuv422p10le")])
def test_ten_bit_input_keeps_its_levels_where_the_curve_lifts(tmp_path, name, pix_fmt):
    src = write_deep_clip(tmp_path / "c.mp4")
    codec = "prores_ks" if name.endswith(".mov") else None
    curve = Curve(2.0, 0.0)
    out = restore_video(src, tmp_path / name, curve=curve, codec=codec, crf=10)
    assert (out.bits, out.input_bits) == (10, 10)
    with av.open(str(tmp_path / name)) as c:
        cc = c.streams.video[0].codec_context
        assert cc.pix_fmt == pix_fmt
        assert (cc.colorspace, cc.color_range, cc.color_primaries, cc.color_trc) == (1, 1, 1, 1)
    first = next(video_frames(src))
    y_in = first.to_ndarray()[:48].astype(int)
    y_out = next(video_frames(tmp_path / name)).to_ndarray(format="yuv420p10le")[:48]
    y_out = y_out.astype(int)
    assert (y_out[:8, :8] - 64).mean() > 5 * (y_in[:8, :8] - 64).mean()  # the shadows lifted
    lifted = y_out > y_in
    assert lifted.mean() > 0.95
    # 100 levels at 8 bits, about 390 at 10: an 8-bit restoration cannot give more than 256
    assert len(np.unique(y_out[lifted])) > 350
    # within the encoder's loss of the 10-bit restoration (through 8 bits: 5 codes off)
    expected = _reference_restore(first, curve, 10)[0]
    assert np.abs(y_out - expected).mean() < 3


def test_ten_bit_full_range_and_matrix_kept(tmp_path):
    src = write_deep_clip(tmp_path / "c.mkv", codec="ffv1", colour_range=2, colorspace=6,
                          lo=0, hi=400)
    out = restore_video(src, tmp_path / "o.mkv", curve=Curve(2.0, 0.0), codec="ffv1")
    assert out.bits == 10
    frame = next(video_frames(tmp_path / "o.mkv"))
    assert (frame.colorspace, frame.color_range, frame.format.name) == (6, 2, "yuv420p10le")
    assert frame.to_ndarray()[0, 0] == 0  # full-range black is 0, not 64


def test_gain_on_ten_bit_planes_rounds_and_saturates():
    y = np.array([[0, 60, 64, 65, 67, 500, 1023]], np.uint16)
    c = np.array([[0, 1, 511, 512, 515, 800, 1023]], np.uint16)
    base = np.full(y.shape, 100.0, np.float32)
    lut = np.full(4097, 1.25, np.float32)  # a gain of 1.25 everywhere
    for full, black in ((False, 64), (True, 0)):
        planes = [y.copy(), c.copy(), c.copy()]
        apply_gain_yuv(*planes, base, lut, YuvSpec(1, full, 10))
        lifted = np.rint(1.25 * (np.maximum(y, black) - black) + black)
        assert np.array_equal(planes[0], np.minimum(lifted, 1023))
        assert np.array_equal(planes[1], np.clip(np.rint(1.25 * (c - 512.0) + 512), 0, 1023))
        if not full:  # sub-black to black, rounded (67.75 -> 68), saturated at 0 and 1023
            assert planes[0].tolist() == [[64, 64, 64, 65, 68, 609, 1023]]
            assert planes[1].tolist() == [[0, 0, 511, 512, 516, 872, 1023]]


def test_vp9_takes_no_ten_bit_format_so_the_output_is_eight_bit(tmp_path, capsys):
    src = write_deep_clip(tmp_path / "c.mp4")
    code, out, err = run_cli(capsys, src, "-o", tmp_path / "o.webm", "--json", "--phi-s", "1")
    assert code == 0, err
    rec = json.loads(out)
    assert (rec["bits"], rec["input_bits"], rec["codec"]) == (8, 10, "libvpx-vp9")
    with av.open(str(tmp_path / "o.webm")) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
    code, out, _ = run_cli(capsys, write_clip(tmp_path / "e.mp4", 3), "-o", tmp_path / "e.mkv",
                           "--json")
    assert (json.loads(out)["bits"], json.loads(out)["input_bits"]) == (8, 8)


def test_cli_json_records_a_failure(tmp_path, capsys):
    src = tmp_path / "notes.mp4"
    src.write_text("this is not a video\n")
    code, out, err = run_cli(capsys, src, "-o", tmp_path / "o.mp4", "--json")
    assert code == 1 and err.startswith(f"excnet: {src}: not a readable video")
    rec = json.loads(out)
    assert (rec["input"], rec["output"], rec["status"]) == (str(src), str(tmp_path / "o.mp4"),
                                                            "error")
    assert rec["error"] == err.removeprefix("excnet: ").rstrip("\n")


def test_svt_av1_gets_its_own_default_preset(tmp_path):
    """SVT-AV1's presets are numbers: x264's default name ("veryfast") made it fail to open."""
    src = write_clip(tmp_path / "in.mp4", 3, size=(64, 64))
    dst = tmp_path / "out.mp4"
    summary = restore_video(src, dst, curve=Curve(0.5, 0.0), codec="libsvtav1")
    assert summary.frames == 3
    with av.open(str(dst)) as f:
        assert f.streams.video[0].codec_context.name in ("av1", "libdav1d", "libaom-av1")
        assert sum(1 for _ in f.decode(video=0)) == 3
    with pytest.raises(VideoError, match="preset 'veryfast'"):
        restore_video(src, tmp_path / "bad.mp4", curve=Curve(0.5, 0.0), codec="libsvtav1",
                      preset="veryfast")


def test_scratch_arrays_reused_across_frames_give_the_same_planes():
    rng = np.random.default_rng(5)
    spec = YuvSpec(1, False, 8)
    lut = gain_lut(Curve(0.8, 0.2, monotonic=True), 4096)
    scratch = Scratch()
    for _ in range(3):  # each frame overwrites the last one's work arrays
        y = rng.integers(16, 100, (48, 64), dtype=np.uint8)
        u, v = (rng.integers(16, 241, (24, 32), dtype=np.uint8) for _ in range(2))
        fresh = yuv_luminance(y, u, v, spec)
        reused = yuv_luminance(y, u, v, spec, scratch)
        assert np.array_equal(fresh, reused)
        base = fast_guided_filter(fresh, 2, 1600.0, low_radius=LOW_RADIUS)
        planes = [y.copy(), u.copy(), v.copy()]
        apply_gain_yuv(*planes, base, lut, spec)
        again = [y.copy(), u.copy(), v.copy()]
        apply_gain_yuv(*again, base, lut, spec, scratch)
        assert all(np.array_equal(a, b) for a, b in zip(planes, again, strict=True))
        assert planes[0].mean() > y.mean() + 5  # the curve lifted it: the check has teeth
    assert np.shares_memory(reused, scratch("luma", (24, 32), np.float32))


def test_encoder_error_on_its_thread_stops_the_run_with_one_line(tmp_path, monkeypatch):
    from excnet.video.output import Output

    class Refusing:  # the muxer of a full disk, say
        def mux(self, packets):
            raise av.error.OSError(28, "No space left on device")

    src = write_clip(tmp_path / "c.mp4", 12)
    encode, threads = Output.encode, []

    def refuse_the_fourth(self, frame):
        threads.append(threading.current_thread().name)
        if len(threads) == 4:
            real, self.container = self.container, Refusing()
            try:
                encode(self, frame)
            finally:
                self.container = real
        else:
            encode(self, frame)

    monkeypatch.setattr(Output, "encode", refuse_the_fourth)
    out = tmp_path / "out" / "o.mp4"
    with pytest.raises(VideoError) as err:
        restore_video(src, out)
    msg = str(err.value)
    assert msg == f"{out}: encoding failed (No space left on device)", msg
    assert list(out.parent.iterdir()) == []  # no output, no temporary file
    assert len(threads) == 4 and set(threads) == {"excnet-encoder"}  # none after the error
