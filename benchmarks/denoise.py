"""Clean lifting (`excnet.denoise`): quality on a synthetic noisy dark set, LOL, and speed.

    python benchmarks/denoise.py tune              # trials on the synthetic noisy dark set
    python benchmarks/denoise.py tune --stops 4 6  # the same, darker (lifts up to 64x)
    python benchmarks/denoise.py lol DIR [--out F] # noise vs curve shape on LOL-like pairs
    python benchmarks/denoise.py speed             # restore stages at 12 MP, off / auto / strong

The synthetic set: photos that ship inside packages (scikit-image, scikit-learn, matplotlib;
see quality.py's `photos`), darkened 2 to 4 stops in linear light (`--stops`), given
Poisson-Gaussian sensor noise in linear light (shot and read noise drawn per image,
independent per channel),
encoded to sRGB 8 bits and, for half of them, saved as JPEG quality 75 to 90; the truth is the
clean photo. Photos alternate between a tuning half and a held-out half (as in quality.py).
Each image is restored twice over: with the gain the truth asks for (the ratio of the truth's
base layer to the input's: an oracle curve, so only noise is left to judge) and with the
default estimated curve. Scores are the issue's: PSNR (dB), scikit-image SSIM (7 x 7,
channel_axis=2) and mean CIEDE2000 of scikit-image's rgb2lab.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from excnet import Restorer
from excnet.base import fast_base_layer
from excnet.colour import apply_gain, linear_to_srgb, luminance, srgb_to_linear
from excnet.curve import Curve, gain
from excnet.denoise import SETTINGS, Settings, lift, noise_level
from excnet.imageio import read_image, write_image
from excnet.tone import IMPROVED

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_sets import photos  # noqa: E402  (the benchmarks' shared photo loader)

SIZE = 640
#: The package photos of the tuning set (sorted, they alternate into the two halves).
PHOTOS = ("astronaut", "chelsea", "china", "coffee", "flower", "grace_hopper", "rocket")


#: sRGB from camera RGB (a typical daylight matrix, rows summing to 1): it mixes the
#: channels' noise into correlated colour noise, as a camera's colour conversion does.
CAMERA_MATRIX = np.array([[1.75, -0.65, -0.10], [-0.20, 1.55, -0.35], [0.05, -0.55, 1.50]])


def camera_noise(lin: np.ndarray, rng: np.random.Generator, shot: float, read: float
                 ) -> np.ndarray:
    """Linear sRGB (H, W, 3) as a camera would render it from a noisy sensor: back to camera
    RGB, divided by a white balance drawn per image, sampled on an RGGB Bayer mosaic, given
    Poisson-Gaussian noise per photosite, demosaiced (OpenCV's edge-aware), white-balanced and
    converted to sRGB again. The noise comes out spatially correlated and coloured."""
    h, w = (lin.shape[0] // 2) * 2, (lin.shape[1] // 2) * 2
    wb = np.array([rng.uniform(1.8, 2.4), 1.0, rng.uniform(1.3, 1.8)])
    raw_rgb = (lin[:h, :w] @ np.linalg.inv(CAMERA_MATRIX).T) / wb
    mosaic = np.empty((h, w))
    mosaic[0::2, 0::2] = raw_rgb[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = raw_rgb[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = raw_rgb[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = raw_rgb[1::2, 1::2, 2]
    mosaic += rng.standard_normal(mosaic.shape) * np.sqrt(shot * np.maximum(mosaic, 0) + read)
    sensor = np.clip(np.rint(mosaic * 65535), 0, 65535).astype(np.uint16)
    rgb = cv2.demosaicing(sensor, cv2.COLOR_BayerBG2RGB_EA).astype(np.float64) / 65535
    out = lin.copy()
    out[:h, :w] = (rgb * wb) @ CAMERA_MATRIX.T
    return out


def darken(truth: np.ndarray, rng: np.random.Generator, noisy: bool = True,
           camera: bool = False, stops_range: tuple[float, float] = (2.0, 4.0)
           ) -> tuple[np.ndarray, dict]:
    """A dark, noisy (and maybe JPEG) version of an sRGB uint8 photo, and how it was made.
    noisy=False: only darkened and rounded to 8 bits (what is left to clean: the steps).
    camera: the noise made on a Bayer mosaic (`camera_noise`), not per channel."""
    stops = rng.uniform(*stops_range)
    shot, read = 10 ** rng.uniform(-4, -3), 10 ** rng.uniform(-6.5, -5.5)
    if not noisy:
        shot = read = 0.0
    lin = srgb_to_linear(truth / 255.0) * 2.0**-stops
    if camera:
        lin = camera_noise(lin, rng, shot, read)
    else:
        lin = lin + rng.standard_normal(lin.shape) * np.sqrt(shot * lin + read)
    img = np.rint(linear_to_srgb(np.clip(lin, 0, 1)) * 255).astype(np.uint8)
    quality = int(rng.integers(75, 91)) if rng.random() < 0.5 and noisy else None
    if quality is not None:
        ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()
    return img, {"stops": stops, "shot": shot, "read": read, "jpeg": quality}


def noisy_dark_set(size: int = SIZE, seed: int = 11, per_photo: int = 2,
                   upscale: bool = False, noisy: bool = True, camera: bool = False,
                   stops_range: tuple[float, float] = (2.0, 4.0)) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i, (name, truth) in enumerate(photos(PHOTOS, size).items()):
        if upscale and max(truth.shape) < size:  # camera-sized: the noise stays per pixel
            f = size / max(truth.shape)
            truth = cv2.resize(truth, None, fx=f, fy=f, interpolation=cv2.INTER_CUBIC)
        for j in range(per_photo):
            dark, info = darken(truth, rng, noisy, camera, stops_range)
            out.append({"name": f"{name}/{j}", "dark": dark, "truth": truth,
                        "held_out": i % 2 == 1, **info})
    return out


def oracle_gain(dark: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The smooth gain that takes the input's base layer to the truth's (float32 (H, W))."""
    b_in = fast_base_layer(luminance(dark), IMPROVED.eps)
    b_gt = fast_base_layer(luminance(truth), IMPROVED.eps)
    return ((b_gt + 0.5) / (b_in + 0.5)).astype(np.float32)


def scores(out: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    from skimage.color import deltaE_ciede2000, rgb2lab
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    return (peak_signal_noise_ratio(truth, out, data_range=255),
            structural_similarity(truth, out, channel_axis=2, data_range=255),
            float(deltaE_ciede2000(rgb2lab(truth), rgb2lab(out)).mean()))


def trial_settings() -> dict[str, Settings | None]:
    """None = no denoise; the rest one constant changed at a time from "auto"."""
    auto = SETTINGS["auto"]
    trials: dict[str, Settings | None] = {"off": None, "auto": auto, "strong": SETTINGS["strong"]}
    trials.update({f"luma={v:g}": replace(auto, luma=v) for v in (2.0, 4.0, 6.0, 12.0, 16.0)})
    trials.update({f"window={v}": replace(auto, window=v) for v in (2, 3, 8)})
    trials.update({f"chroma_blur={v:g}": replace(auto, chroma_blur=v) for v in (1.5, 3.0, 12.0)})
    trials.update({f"steps={v:g}": replace(auto, steps=v) for v in (0.0, 4.0, 64.0)})
    trials.update({f"visible={v:g}": replace(auto, visible=v) for v in (1.5, 6.0)})
    trials.update({f"min_excess={v:g}": replace(auto, min_excess=v) for v in (0.0, 0.3, 0.7)})
    # the grid a 12 MP photo gets (cells of 4 x 4 pixels), and one coarser
    trials.update({f"cell={c}": replace(auto, max_grid=SIZE * SIZE * 2 // 3 // c // c)
                   for c in (2, 4)})
    trials["cell=4 chroma_blur=3"] = replace(trials["cell=4"], chroma_blur=3.0)
    return trials


def render(sample: dict, g: np.ndarray, st: Settings | None) -> np.ndarray:
    dark = sample["dark"]
    if st is None:
        return apply_gain(dark, g)
    return lift(dark, luminance(dark), g, settings=st).image


def tune(args: argparse.Namespace) -> None:
    samples = noisy_dark_set(args.size, upscale=args.upscale, noisy=not args.clean,
                             camera=args.camera, stops_range=tuple(args.stops))
    restorer = Restorer(denoise="off")
    gains = {"oracle gain": [oracle_gain(s["dark"], s["truth"]) for s in samples]}
    gains["default curve"] = []
    for s in samples:
        y = luminance(s["dark"])
        res = restorer.restore(s["dark"])
        base = fast_base_layer(y, IMPROVED.eps)
        gains["default curve"].append(gain(res.curve, base / 255.0).astype(np.float32))
    for s in samples:
        s["sigma"] = noise_level(luminance(s["dark"]), gains["oracle gain"][samples.index(s)])
    print("set:", ", ".join(f"{s['name']} {s['stops']:.1f}st sigma^{s['sigma']:.2f}"
                            f"{' q' + str(s['jpeg']) if s['jpeg'] else ''}" for s in samples))
    trials = trial_settings() if not args.only else {k: v for k, v in trial_settings().items()
                                                     if k in args.only}
    for label, gs in gains.items():
        print(f"\n{label}: mean PSNR / SSIM / dE00 (tuning half | held-out half)")
        print(f"| {'trial':<16} | tuning PSNR | SSIM | dE00 | held-out PSNR | SSIM | dE00 |")
        print(f"|{'-' * 18}|---:|---:|---:|---:|---:|---:|")
        for name, st in trials.items():
            halves = {False: [], True: []}
            for s, g in zip(samples, gs, strict=True):
                halves[s["held_out"]].append(scores(render(s, g, st), s["truth"]))
            cells = [f"{v:.2f} | {w:.4f} | {x:.2f}" for v, w, x in
                     (np.mean(halves[h], axis=0) for h in (False, True))]
            print(f"| {name:<16} | {cells[0]} | {cells[1]} |")
        if args.sheet:
            shown = [s for s in samples if s["held_out"]][:4]
            crops = []
            for s in shown:
                g = gs[samples.index(s)]
                a, b = render(s, g, None), render(s, g, SETTINGS["auto"])
                crops.append(np.concatenate([_crop(a), _crop(b), _crop(s["truth"])], axis=1))
            path = Path(args.sheet).with_suffix(f".{label.split()[0]}.png")
            write_image(path, np.concatenate(crops, axis=0), overwrite=True)
            print(f"crops (off | auto | truth): {path}")


def _crop(img: np.ndarray, size: int = 200) -> np.ndarray:
    h, w = img.shape[:2]
    return img[h // 2 - size // 2:h // 2 + size // 2, w // 2 - size // 2:w // 2 + size // 2]


def fit_curve(dark: np.ndarray, truth: np.ndarray) -> Curve:
    """The faithful-family curve (phi_s, phi_h, no limit, highlight scale 1) closest to the
    truth in mean squared error, by grid search on a quarter-size image (an oracle)."""
    small = cv2.resize(dark, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    gt = cv2.resize(truth, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA).astype(float)
    base = fast_base_layer(luminance(small), IMPROVED.eps) / 255.0
    best = (np.inf, Curve(0.0, 0.0, highlight_scale=1.0))
    for phi_s in np.linspace(0, 4, 81):
        for phi_h in np.linspace(-4, 1, 51):
            c = Curve(float(phi_s), float(phi_h), highlight_scale=1.0)
            err = np.mean((apply_gain(small, gain(c, base).astype(np.float32)) - gt) ** 2)
            best = min(best, (err, c), key=lambda t: t[0])
    return best[1]


def lol(args: argparse.Namespace) -> None:
    pairs = Path(args.pairs)
    out = Path(args.out)
    kinds = ("default-off", "default-auto", "default-strong", "oracle-off", "oracle-auto",
             "oracle-strong", "oraclegain-off", "oraclegain-auto")
    for k in kinds:
        (out / k).mkdir(parents=True, exist_ok=True)
    for p in sorted((pairs / "input").glob("*.png")):
        dark = read_image(p).pixels
        truth = read_image(pairs / "gt" / p.name).pixels
        y = luminance(dark)
        base = fast_base_layer(y, IMPROVED.eps)
        curve = Restorer(denoise="off").restore(dark).curve
        g_default = gain(curve, base / 255.0).astype(np.float32)
        saved = out / "fitted" / f"{p.stem}.json"  # the grid search is slow: reuse it
        if saved.exists():
            fitted = Curve.load(saved)
        else:
            fitted = fit_curve(dark, truth)
            saved.parent.mkdir(exist_ok=True)
            fitted.save(saved)
        g_oracle = gain(fitted, base / 255.0).astype(np.float32)
        g_map = oracle_gain(dark, truth)
        sigma = noise_level(y, g_default)
        print(f"{p.name}: sigma {sigma:.2f}, default phi {curve.applied}, "
              f"oracle phi {fitted.applied}", flush=True)
        for kind, g in (("default", g_default), ("oracle", g_oracle), ("oraclegain", g_map)):
            for mode in ("off", "auto", "strong"):
                if f"{kind}-{mode}" in kinds:
                    write_image(out / f"{kind}-{mode}" / p.name, lift(dark, y, g, mode).image,
                                overwrite=True)
    print(f"score with: python ../shared/tools/score_pairs.py {pairs} "
          + " ".join(str(out / k) for k in kinds))


def speed(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from speed import make_photo

    photos_12 = [make_photo(name, (3000, 4000), seed)
                 for seed, name in enumerate(("astronaut", "chelsea", "coffee"))]
    restorers = {m: Restorer(denoise=m) for m in ("off", "auto", "strong")}
    for r in restorers.values():
        r.restore(photos_12[0])  # warm
    wall: dict[str, list[float]] = {m: [] for m in restorers}
    cpu: dict[str, list[float]] = {m: [] for m in restorers}
    for _ in range(args.repeat):
        for img in photos_12:
            for m, r in restorers.items():  # interleaved, so load changes hit every mode
                c0 = time.process_time()
                res = r.restore(img)
                cpu[m].append(time.process_time() - c0)
                wall[m].append(sum(res.seconds.values()))
    print(f"12 MP back-lit photos (speed.py's), {len(photos_12)} photos x {args.repeat} rounds, "
          f"in process, medians; load average {os.getloadavg()[0]:.1f}. CPU = process CPU "
          "seconds (all threads): the extra CPU is an upper bound of the extra wall time")
    print("| denoise | base+estimate+apply wall (s) | added wall (s) | CPU (s) | added CPU (s) |")
    print("|---|---:|---:|---:|---:|")
    for m in restorers:
        w, c = statistics.median(wall[m]), statistics.median(cpu[m])
        print(f"| {m} | {w:.3f} | {w - statistics.median(wall['off']):+.3f} | {c:.3f} | "
              f"{c - statistics.median(cpu['off']):+.3f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tune")
    t.add_argument("--size", type=int, default=SIZE)
    t.add_argument("--only", nargs="+", default=None)
    t.add_argument("--clean", action="store_true", help="no noise, no JPEG: only 8-bit steps")
    t.add_argument("--upscale", action="store_true",
                   help="enlarge smaller photos to --size before darkening (camera-sized)")
    t.add_argument("--camera", action="store_true",
                   help="noise made on a Bayer mosaic and demosaiced (correlated, coloured)")
    t.add_argument("--stops", nargs=2, type=float, default=(2.0, 4.0), metavar=("LO", "HI"),
                   help="how far the photos are darkened (uniform, in stops; default 2 4)")
    t.add_argument("--sheet", default=None, help="write 100%% crops (off | auto | truth) here")
    t.set_defaults(fn=tune)
    lo = sub.add_parser("lol")
    lo.add_argument("pairs")
    lo.add_argument("--out", default="/tmp/excnet-denoise-lol")
    lo.set_defaults(fn=lol)
    sp = sub.add_parser("speed")
    sp.add_argument("--repeat", type=int, default=3)
    sp.set_defaults(fn=speed)
    args = ap.parse_args()
    t0 = time.perf_counter()
    args.fn(args)
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
