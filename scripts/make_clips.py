"""Make small synthetic back-lit video clips from the sample photos in ``examples/``.

What it makes (H.264 in MP4, yuv420p, BT.709 limited range, 25 fps unless told otherwise)
    static  one back-lit photo held still, fresh sensor noise every frame.
    pan     a slow camera pan across a back-lit photo (about 2 % of the width per second)
            with sensor noise: the flicker benchmark.
    events  a pan with noise, then one sudden lighting change (the whole scene drops by one
            stop at 40 % of the clip) and one cut to another photo (at 70 %): the
            responsiveness and cut-detection checks.

Each frame is a crop of the photo scaled up by 1.25; noise is Gaussian luma noise, stronger
in the shadows (as in an under-exposed subject), drawn from a fixed seed so clips are reproducible.
With ``--audio`` a 440 Hz AAC tone is muxed in (for the pass-through checks).

Usage
    python scripts/make_clips.py [--out out/clips] [--size 320x180] [--frames 150]
                                 [--fps 25] [--audio] [--kinds static pan events]

Tests and ``benchmarks/video.py`` import :func:`make_clip` and write into temporary folders.
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
KINDS = ("static", "pan", "events")
#: Fraction of the clip at which the `events` clip changes its lighting, then cuts.
LIGHT_CHANGE_AT = 0.4
CUT_AT = 0.7
#: The lighting change: one stop down in linear light, applied to sRGB values.
LIGHT_FACTOR = 0.5 ** (1 / 2.2)
NOISE_SIGMA = 2.0


def _photo(name: str, width: int, height: int) -> np.ndarray:
    """The sample photo as RGB uint8, scaled to cover 1.25 x (width, height)."""
    bgr = cv2.imread(str(EXAMPLES / f"backlit_{name}.jpg"), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(EXAMPLES / f"backlit_{name}.jpg")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    scale = 1.25 * max(width / w, height / h)
    size = (max(width, round(w * scale)), max(height, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def _noisy(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add sensor-like luma noise (as a phone's processing leaves it: chroma noise removed):
    sigma 1.5 NOISE_SIGMA in black, falling to 0.5 NOISE_SIGMA in white."""
    f = frame.astype(np.float32)
    sigma = NOISE_SIGMA * (1.5 - f.mean(axis=2, keepdims=True) / 255.0)
    f += rng.standard_normal(f.shape[:2], dtype=np.float32)[..., None] * sigma
    return np.clip(f, 0, 255).astype(np.uint8)


def frames_of(kind: str, width: int, height: int, frames: int, fps: float, seed: int = 0):
    """Yield the RGB uint8 frames (height, width, 3) of a clip of this kind."""
    if kind not in KINDS:
        raise ValueError(f"unknown clip kind {kind!r}; choose from {', '.join(KINDS)}")
    rng = np.random.default_rng(seed)
    first, second = _photo("chelsea", width, height), _photo("coffee", width, height)
    speed = 0.02 * width / fps  # pixels per frame
    for i in range(frames):
        photo = second if kind == "events" and i >= CUT_AT * frames else first
        x = 0 if kind == "static" else min(int(round(i * speed)), photo.shape[1] - width)
        y = (photo.shape[0] - height) // 2
        frame = photo[y:y + height, x:x + width]
        if kind == "events" and LIGHT_CHANGE_AT * frames <= i < CUT_AT * frames:
            frame = np.clip(frame * LIGHT_FACTOR, 0, 255).astype(np.uint8)
        yield _noisy(frame, rng)


def make_clip(path: str | Path, kind: str, size: tuple[int, int] = (320, 180),
              frames: int = 150, fps: int = 25, audio: bool = False, seed: int = 0,
              crf: int = 20) -> Path:
    """Write one sample clip to `path` (H.264 MP4, BT.709 limited range) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps,
                               options={"preset": "veryfast", "crf": str(crf)})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        cc = video.codec_context
        cc.colorspace, cc.color_range, cc.color_primaries, cc.color_trc = 1, 1, 1, 1
        tone = None
        if audio:
            tone = out.add_stream("aac", rate=48000, layout="mono")
        for i, rgb in enumerate(frames_of(kind, width, height, frames, fps, seed)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame = frame.reformat(format="yuv420p", dst_colorspace=1, dst_color_range=1)
            frame.colorspace, frame.color_range = 1, 1
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if tone is not None:
            _write_tone(out, tone, frames / fps)
    return path


def _write_tone(out: av.container.OutputContainer, stream: av.AudioStream,
                seconds: float) -> None:
    rate, n = 48000, 1024
    total = int(seconds * rate)
    for start in range(0, total, n):
        t = (np.arange(start, min(start + n, total)) / rate).astype(np.float32)
        samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, start
        out.mux(stream.encode(frame))
    out.mux(stream.encode())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "clips")
    ap.add_argument("--size", default="320x180", help="WIDTHxHEIGHT (default 320x180)")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--audio", action="store_true", help="add a 440 Hz AAC tone")
    ap.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    for kind in args.kinds:
        path = make_clip(args.out / f"{kind}_{width}x{height}.mp4", kind, (width, height),
                         args.frames, args.fps, args.audio)
        print(f"{path}\t{path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
