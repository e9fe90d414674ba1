"""Video benchmark: speed, flicker and responsiveness of `excnet.video.restore_video`.

Makes its own clips with scripts/make_clips.py (150 frames, 25 fps, sensor noise) in a
temporary folder, then prints three tables:

speed      median fps over --repeats runs (decode + restore + encode, libx264 veryfast CRF 20)
           at 1280x720 and 1920x1080 for: passthrough (decode + encode only, the ceiling),
           guided (the default: direct solver every 3rd frame, smoothing, cut detection),
           independent (every frame estimated on its own, no smoothing) and fixed (one phi);
           and the first size's clip converted to 10 bits (restored and encoded at 10 bits).
flicker    on the 720p pan clip: frame-to-frame std of the output's mean luma (Y') for guided,
           fixed phi (the median phi of the guided run) and independent, with the ratio to fixed
           (target: guided <= 1.1); the frame-to-frame std of phi_s and phi_h; and on the static
           clip the range of phi (target < 0.01).
settle     on the 720p events clip (one-stop lighting drop at 40 %, cut at 70 %): seconds of
           video after each event until the guided output's mean luma stays within 2 % of the
           independent restore of the same frames (target <= 0.5 s).

With --guided-only only the speed of the default (guided) restore and of passthrough is timed.
With --network the excnet solver (warm network, --frame-iters per estimated frame) is timed
on the 720p pan clip too. Usage:
    python benchmarks/video.py [--repeats 3] [--frames 150] [--network] [--guided-only]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from excnet import Restorer
from excnet.video import restore_video

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("make_clips", ROOT / "scripts" / "make_clips.py")
make_clips = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_clips)
FPS = 25


def passthrough(src: Path, dst: Path, pix_fmt: str = "yuv420p") -> float:
    """Decode + encode with the same settings (pix_fmt) and no restoration; returns fps."""
    start = time.perf_counter()
    n = 0
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        vout = out.add_stream("libx264", rate=vin.average_rate,
                              options={"preset": "veryfast", "crf": "20"})
        vout.width, vout.height, vout.pix_fmt = vin.width, vin.height, pix_fmt
        for frame in inp.decode(vin):
            out.mux(vout.encode(frame if frame.format.name == pix_fmt
                                else frame.reformat(format=pix_fmt)))
            n += 1
        out.mux(vout.encode())
    return n / (time.perf_counter() - start)


def mean_luma(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.array([f.to_ndarray()[: f.height].mean() for f in c.decode(c.streams.video[0])])


def flicker(path: Path) -> float:
    return float(np.diff(mean_luma(path)).std())


def settle_seconds(guided: np.ndarray, indep: np.ndarray, start: int, end: int) -> float:
    """Seconds after frame `start` until |guided - indep| / indep <= 2 % for all frames to `end`."""
    ok = np.abs(guided[start:end] - indep[start:end]) <= 0.02 * indep[start:end]
    bad = np.flatnonzero(~ok)
    return 0.0 if not len(bad) else (bad[-1] + 1) / FPS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--network", action="store_true", help="also time --solver excnet")
    ap.add_argument("--sizes", default="1280x720,1920x1080")
    ap.add_argument("--guided-only", action="store_true",
                    help="time the default (guided) restore only, beside passthrough, and stop "
                         "there: to compare two trees, run this script with PYTHONPATH set to "
                         "each tree's src/ in turn")
    args = ap.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    print(f"cpu cores: {os.cpu_count()}, load average at start: "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        clips = {}
        for w, h in sizes:
            clips[("pan", w)] = make_clips.make_clip(d / f"pan{w}.mp4", "pan", (w, h),
                                                     args.frames, FPS)
        w0, h0 = sizes[0]
        for kind in () if args.guided_only else ("static", "events"):
            clips[(kind, w0)] = make_clips.make_clip(d / f"{kind}{w0}.mp4", kind, (w0, h0),
                                                     args.frames, FPS)

        print("\nspeed (fps, median of", args.repeats, "runs; end to end)")
        print(f"{'size':>10} {'passthrough':>12} {'guided':>8} {'independent':>12} "
              f"{'fixed':>8} {'guided/indep':>13} {'guided/pass':>12}")
        guided_phi = {}
        for w, h in sizes:
            src = clips[("pan", w)]
            runs: dict[str, list[float]] = {k: [] for k in ("pass", "g", "i", "f")}
            for _ in range(args.repeats):
                runs["pass"].append(passthrough(src, d / "p.mp4"))
                s = restore_video(src, d / f"g{w}.mp4")
                runs["g"].append(s.fps)
                guided_phi[w] = np.array(s.phi)
                if args.guided_only:
                    continue
                runs["i"].append(restore_video(src, d / f"i{w}.mp4", guided=False).fps)
                fixed = Restorer().curve_for(*np.median(guided_phi[w], axis=0))
                runs["f"].append(restore_video(src, d / f"f{w}.mp4", curve=fixed).fps)
            m = {k: statistics.median(v) if v else math.nan for k, v in runs.items()}
            print(f"{w}x{h:<5} {m['pass']:12.1f} {m['g']:8.1f} {m['i']:12.1f} {m['f']:8.1f} "
                  f"{m['g'] / m['i']:13.2f} {m['g'] / m['pass']:12.2f}")
        if args.guided_only:
            return
        # the first size's clip at 10 bits: restored and encoded at 10 bits (yuv420p10le)
        deep = d / f"pan{w0}-10bit.mp4"
        passthrough(clips[("pan", w0)], deep, "yuv420p10le")
        runs = {k: [] for k in ("pass", "g", "i", "f")}
        for _ in range(args.repeats):
            runs["pass"].append(passthrough(deep, d / "p10.mp4", "yuv420p10le"))
            runs["g"].append(restore_video(deep, d / "g10.mp4").fps)
            runs["i"].append(restore_video(deep, d / "i10.mp4", guided=False).fps)
            fixed = Restorer().curve_for(*np.median(guided_phi[w0], axis=0))
            runs["f"].append(restore_video(deep, d / "f10.mp4", curve=fixed).fps)
        m = {k: statistics.median(v) for k, v in runs.items()}
        print(f"{w0}x{h0} 10-bit {m['pass']:5.1f} {m['g']:8.1f} {m['i']:12.1f} {m['f']:8.1f} "
              f"{m['g'] / m['i']:13.2f} {m['g'] / m['pass']:12.2f}")

        if args.network:
            src = clips[("pan", w0)]
            r = Restorer("excnet", max_iters=10)
            s = restore_video(src, d / "n.mp4", restorer=r, fresh_iters=1000)
            print(f"excnet solver (warm network, 10 iterations every 3rd frame), {w0}x{h0}: "
                  f"{s.fps:.1f} fps, phi_s {np.mean([p[0] for p in s.phi]):.3f}")

        print(f"\nflicker on the {w0}x{h0} pan clip ({args.frames} frames, sensor noise)")
        fl = {k: flicker(d / f"{k}{w0}.mp4") for k in ("g", "f", "i")}
        indep_phi = np.array(restore_video(clips[("pan", w0)], d / "i2.mp4", guided=False).phi)
        jit = {"g": np.diff(guided_phi[w0], axis=0).std(0), "i": np.diff(indep_phi, axis=0).std(0)}
        print(f"{'run':>12} {'mean-luma flicker':>18} {'ratio to fixed':>15} "
              f"{'phi_s jitter':>13} {'phi_h jitter':>13}")
        for k, name in (("f", "fixed phi"), ("g", "guided"), ("i", "independent")):
            j = jit.get(k, (0.0, 0.0))
            print(f"{name:>12} {fl[k]:18.4f} {fl[k] / fl['f']:15.3f} {j[0]:13.5f} {j[1]:13.5f}")
        static_g = np.array(restore_video(clips[("static", w0)], d / "s.mp4").phi)
        static_i = np.array(restore_video(clips[("static", w0)], d / "si.mp4",
                                          guided=False).phi)
        print(f"static clip, range of phi_s / phi_h: guided {np.ptp(static_g[:, 0]):.4f} / "
              f"{np.ptp(static_g[:, 1]):.4f}, independent {np.ptp(static_i[:, 0]):.4f} / "
              f"{np.ptp(static_i[:, 1]):.4f}  (target < 0.01)")

        print(f"\nsettle on the {w0}x{h0} events clip (within 2 % of an independent restore)")
        ev = clips[("events", w0)]
        sg = restore_video(ev, d / "eg.mp4")
        restore_video(ev, d / "ei.mp4", guided=False)
        lg, li = mean_luma(d / "eg.mp4"), mean_luma(d / "ei.mp4")
        n = args.frames
        change = int(np.ceil(make_clips.LIGHT_CHANGE_AT * n))
        cut = int(np.ceil(make_clips.CUT_AT * n))
        print(f"cuts detected at {sg.cuts} s (events at {change / FPS:.2f} s and "
              f"{cut / FPS:.2f} s)")
        for name, a, b in (("lighting change", change, cut), ("cut", cut, n)):
            worst = float(np.max(np.abs(lg[a:b] - li[a:b]) / li[a:b]))
            print(f"{name:>16}: settles in {settle_seconds(lg, li, a, b):.2f} s "
                  f"(worst deviation after the event {100 * worst:.2f} %)")
        smooth_only = restore_video(ev, d / "es.mp4", cut_threshold=1e9)
        ls = mean_luma(d / "es.mp4")
        print(f"{'no cut detection':>16}: lighting change settles in "
              f"{settle_seconds(ls, li, change, cut):.2f} s, cut in "
              f"{settle_seconds(ls, li, cut, n):.2f} s ({len(smooth_only.cuts)} cuts)")


if __name__ == "__main__":
    main()
