"""`excnet video`: restore a back-lit video file, frame by frame, guided by the previous frames."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

from ..defaults import DEFAULT_CUT_THRESHOLD, DEFAULT_EVERY, DEFAULT_TAU
from .common import (
    OUTPUT_TAG,
    UsageError,
    add_curve_options,
    given_curve,
    make_restorer,
    print_json,
    progress,
)

VIDEO_SOLVER = "direct"
FRAME_ITERS = 10


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "video", help="restore a back-lit video",
        description="Restore a back-lit video. Each frame starts from the previous frames' "
                    "curve: phi is estimated every k-th frame, smoothed over time and reset "
                    "at scene cuts. Timestamps, rotation, colour tags, audio, subtitles and "
                    "tags are kept; 10-bit input stays 10-bit where the encoder takes it.")
    p.add_argument("input", type=Path, metavar="INPUT")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="OUT",
                   help=f"output file; its suffix picks the container (default "
                        f"NAME{OUTPUT_TAG}.mp4 beside the input)")
    p.add_argument("--codec", default=None,
                   help="video encoder (default libx264; libvpx-vp9 for .webm)")
    p.add_argument("--preset", default=None,
                   help="encoder preset for x264/x265/SVT-AV1 (default veryfast; 10 for "
                        "SVT-AV1, whose presets are numbers 0-13)")
    p.add_argument("--crf", type=int, default=20,
                   help="constant rate factor, lower is better quality (default 20)")
    p.add_argument("--every", type=int, default=DEFAULT_EVERY, metavar="K",
                   help=f"estimate phi on every K-th frame (default {DEFAULT_EVERY})")
    p.add_argument("--smooth", type=float, default=DEFAULT_TAU, metavar="SECONDS",
                   help=f"time constant of the phi smoothing (default {DEFAULT_TAU}; 0 = off)")
    p.add_argument("--cut-threshold", type=float, default=DEFAULT_CUT_THRESHOLD, metavar="T",
                   help="block-mean change that counts as a scene cut or sudden lighting "
                        f"change (default {DEFAULT_CUT_THRESHOLD})")
    p.add_argument("--independent", action="store_true",
                   help="no temporal guidance: estimate every frame on its own (for comparison)")
    p.add_argument("--frame-iters", type=int, default=FRAME_ITERS, metavar="N",
                   help=f"--solver excnet: training iterations of the warm network per "
                        f"estimated frame (default {FRAME_ITERS}; first frame and cuts train "
                        "up to --max-iters)")
    p.add_argument("--overwrite", action="store_true", help="allow OUT to replace INPUT")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    add_curve_options(p, default_solver=VIDEO_SOLVER)
    p.set_defaults(run=run_video)


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C, so the temporary output is removed."""


@contextlib.contextmanager
def _sigterm_unwinds():
    """Turn SIGTERM into `Terminated` while restoring (main thread only; handler restored)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_video(args: argparse.Namespace) -> int:
    from ..video import VideoError, expected_frames, restore_video  # PyAV: only here

    if (min(args.every, args.frame_iters, args.max_iters) < 1 or args.smooth < 0
            or args.cut_threshold <= 0):
        raise UsageError("--every, --frame-iters and --max-iters must be >= 1, --smooth >= 0, "
                         "--cut-threshold > 0")
    if args.denoise not in (None, "off"):
        raise UsageError("--denoise is for photos: video frames are not denoised (it would "
                         "cost about a third of the 25 fps frame budget at 720p)")
    curve = given_curve(args)
    fresh_iters = args.max_iters
    args.max_iters = args.frame_iters
    restorer = make_restorer(args)
    dst = args.output or args.input.with_name(f"{args.input.stem}{OUTPUT_TAG}.mp4")
    try:
        with _sigterm_unwinds(), progress(expected_frames(args.input) or None,
                                          enabled=not args.json,
                                          label="restoring video") as advance:
            summary = restore_video(
                args.input, dst, restorer=restorer, curve=curve, every=args.every,
                tau=args.smooth, cut_threshold=args.cut_threshold, guided=not args.independent,
                fresh_iters=fresh_iters, codec=args.codec, preset=args.preset, crf=args.crf,
                overwrite=args.overwrite, on_frame=lambda done, total: advance())
    except (VideoError, OSError) as exc:
        error = str(exc) if isinstance(exc, VideoError) else f"{dst}: {exc.strerror or exc}"
        if args.json:  # as `excnet restore --json` reports a failed input
            print_json({"input": os.fspath(args.input), "output": os.fspath(dst),
                        "status": "error", "error": error})
        print(f"excnet: {error}", file=sys.stderr)
        return 1
    except Terminated:
        print("excnet: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    if args.json:
        print_json(summary.to_dict())
    elif sys.stderr.isatty():
        notes = "".join(f"; {kind} {', '.join(done)}" for kind, done in (
            ("audio", summary.audio), ("subtitles", summary.subtitles), ("data", summary.data))
            if done)
        if summary.input_bits > 8 and summary.bits == 8:
            notes += (f"; {summary.input_bits}-bit input written at {summary.bits} bits "
                      f"({summary.codec} takes no 10-bit format)")
        print(f"excnet: {os.fspath(dst)}: {summary.frames} frames at {summary.fps:.1f} fps, "
              f"{len(summary.cuts)} cuts{notes}", file=sys.stderr)
    return 0
