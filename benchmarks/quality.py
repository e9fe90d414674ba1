"""Restoration quality against ground truth and baselines, and trials of rendering options.

    python benchmarks/quality.py                 # table on the synthetic set + contact sheet
    python benchmarks/quality.py --trials        # every ToneOptions trial, tuning vs held-out
    python benchmarks/quality.py --folder DIR    # your own back-lit photos: no-reference table

The synthetic set is made from photos that ship inside installed packages (scikit-image,
and scikit-learn and matplotlib when installed; nothing is downloaded). Each photo, in linear
light, gets a soft mask (subject, horizon or gradient): inside it is darkened by 2 to 4
stops, outside brightened by 0.5 to 1.5 stops with highlight clipping; then signal-dependent
shadow noise, sRGB encoding and 8 bits. The original photo is the truth. Photos are split by
name, alternately, into a tuning half and a held-out half, so no held-out photo is seen while
choosing option values.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from excnet import Curve, Restorer
from excnet.base import network_input
from excnet.colour import luminance
from excnet.imageio import ImageError, read_image, write_image
from excnet.metrics import (
    delta_e,
    lightness_order_error,
    linear_to_srgb,
    luma,
    no_reference,
    psnr,
    shadow_mask,
    srgb_to_linear,
    ssim,
)
from excnet.solvers import Estimate, solve_direct
from excnet.tone import FAITHFUL, IMPROVED, ToneOptions, apply_tone_gain, base_for, gain_for

SIZE = 480
MASKS = ("subject", "horizon", "gradient")
HERE = Path(__file__).resolve().parent



@dataclass(frozen=True)
class Sample:
    name: str
    backlit: np.ndarray
    truth: np.ndarray
    held_out: bool


def _fit(img: np.ndarray, size: int) -> np.ndarray:
    img = img[..., :3]
    s = size / max(img.shape[:2])
    if s < 1:
        img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)),
                         interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img, dtype=np.uint8)


def photos(size: int = SIZE) -> dict[str, np.ndarray]:
    """Natural colour photos bundled with the installed packages, long side <= size."""
    from skimage import data

    found = {n: getattr(data, n)() for n in ("astronaut", "coffee", "chelsea", "rocket")}
    try:
        from sklearn.datasets import load_sample_image
        found.update({n: load_sample_image(f"{n}.jpg") for n in ("china", "flower")})
    except ImportError:
        pass
    try:
        from matplotlib import cbook
        with cbook.get_sample_data("grace_hopper.jpg") as f:
            found["grace_hopper"] = cv2.cvtColor(
                cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR),
                cv2.COLOR_BGR2RGB)
    except (ImportError, OSError):
        pass
    return {n: _fit(img, size) for n, img in sorted(found.items())}


def make_mask(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Soft mask (H, W) in [0, 1]: 1 where the scene is back-lit (dark)."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    cy, cx = rng.uniform(0.35, 0.65) * h / max(h, w), rng.uniform(0.35, 0.65) * w / max(h, w)
    if kind == "subject":
        ry, rx = rng.uniform(0.2, 0.35), rng.uniform(0.15, 0.3)
        d = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
        m = 1 / (1 + np.exp((d - 1) / 0.12))
    elif kind == "horizon":
        slope = rng.uniform(-0.3, 0.3)
        m = 1 / (1 + np.exp(-(yy - cy - slope * (xx - cx)) / 0.03))
    else:
        angle = rng.uniform(0, 2 * np.pi)
        t = (yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle)
        m = np.clip(0.5 + t / 0.6, 0, 1)
    return m


def degrade(truth: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A back-lit version of an sRGB uint8 photo (see the module docstring)."""
    lin = srgb_to_linear(truth / 255.0)
    m = make_mask(kind, *truth.shape[:2], rng)[..., None]
    dark, bright = rng.uniform(2, 4), rng.uniform(0.5, 1.5)
    lin = np.clip(lin * (m * 2.0**-dark + (1 - m) * 2.0**bright), 0, 1)
    lin = lin + rng.standard_normal(lin.shape) * np.sqrt(2e-5 * lin + 1e-7)
    return np.rint(linear_to_srgb(np.clip(lin, 0, 1)) * 255).astype(np.uint8)


def synthetic_set(size: int = SIZE, seed: int = 7) -> list[Sample]:
    rng = np.random.default_rng(seed)
    out = []
    for i, (name, truth) in enumerate(photos(size).items()):
        for kind in MASKS:
            out.append(Sample(f"{name}/{kind}", degrade(truth, kind, rng), truth, i % 2 == 1))
    return out


# Baselines -------------------------------------------------------------------------------

def _on_luma(img: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    ycc = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb)
    ycc[..., 0] = fn(np.ascontiguousarray(ycc[..., 0]))
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


def hist_eq(img: np.ndarray) -> np.ndarray:
    """OpenCV histogram equalisation of Y (YCrCb)."""
    return _on_luma(img, cv2.equalizeHist)


def clahe(img: np.ndarray) -> np.ndarray:
    """OpenCV CLAHE (clip 2, 8 x 8 tiles) on Y (YCrCb)."""
    return _on_luma(img, cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply)


def gamma_to_mean(img: np.ndarray, target: float = 0.5) -> np.ndarray:
    """One gamma on all channels, chosen by bisection so mean luma becomes `target` (0..1)."""
    v = img / 255.0
    lo, hi = -6.0, 6.0  # log2 of gamma
    for _ in range(40):
        mid = (lo + hi) / 2
        if luma(np.rint(v ** 2.0**mid * 255).astype(np.uint8)).mean() / 255 > target:
            lo = mid
        else:
            hi = mid
    return np.rint(v ** 2.0 ** ((lo + hi) / 2) * 255).astype(np.uint8)


def restore_with(pixels: np.ndarray, options: ToneOptions = FAITHFUL, *,
                 estimator: Callable[[np.ndarray], Estimate] = solve_direct,
                 ) -> tuple[np.ndarray, Curve]:
    """Restore end to end on the exact path (exact guided filter, float64 gain) with the given
    options; returns (image, curve). `estimator` maps the 128 x 128 network input to phi."""
    base = base_for(luminance(pixels), options)
    est = estimator(network_input(base))
    curve = options.curve(est.phi_s, est.phi_h)
    return apply_tone_gain(pixels, gain_for(base, curve, options), options), curve


def methods(cnn: Restorer | None) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    out: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "identity": lambda im: im,
        "hist-eq": hist_eq,
        "clahe": clahe,
        "gamma->0.5": gamma_to_mean,
    }
    if cnn is not None:
        out["excnet (faithful)"] = lambda im: restore_with(im, estimator=cnn.estimate_input)[0]
    out["direct (faithful)"] = lambda im: restore_with(im, FAITHFUL)[0]
    if IMPROVED != FAITHFUL:
        out["direct (improved)"] = lambda im: restore_with(im, IMPROVED)[0]
    return out


# Scoring ---------------------------------------------------------------------------------

METRICS = {"PSNR": psnr, "SSIM": ssim, "dE00": delta_e, "LOE": lightness_order_error}
BETTER = {"PSNR": 1, "SSIM": 1, "dE00": -1, "LOE": -1}


def score(outputs: list[np.ndarray], samples: list[Sample]) -> dict[str, float]:
    """Mean of each metric over the samples."""
    return {k: float(np.mean([fn(o, s.truth) for o, s in zip(outputs, samples, strict=True)]))
            for k, fn in METRICS.items()}


def table(rows: dict[str, dict[str, float]], first: str = "method") -> str:
    keys = list(next(iter(rows.values())))
    width = max(len(first), *map(len, rows))
    lines = [f"| {first:<{width}} | " + " | ".join(f"{k:>8}" for k in keys) + " |",
             f"|{'-' * (width + 2)}|" + "|".join("-" * 9 + ":" for _ in keys) + "|"]
    for name, vals in rows.items():
        lines.append(f"| {name:<{width}} | "
                     + " | ".join(f"{_fmt(k, v):>8}" for k, v in vals.items()) + " |")
    return "\n".join(lines)


def _fmt(key: str, v: float) -> str:
    if key == "SSIM":
        return f"{v:.4f}"
    if key in ("PSNR", "dE00"):
        return f"{v:.2f}"
    if key == "wins":
        return "yes" if v else "no"
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.3f}"


def contact_sheet(rows: list[list[np.ndarray]], labels: list[str], path: Path,
                  height: int = 112) -> None:
    """Grid of thumbnails (one row per image, one column per label) with a label strip."""
    def thumb(img: np.ndarray) -> np.ndarray:
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        img = img[..., :3]
        if img.dtype != np.uint8:
            img = (img / 257).astype(np.uint8)
        w = round(img.shape[1] * height / img.shape[0])
        return cv2.resize(img, (w, height), interpolation=cv2.INTER_AREA)

    cell = max(round(r.shape[1] * height / r.shape[0]) for row in rows for r in row)
    strip = np.full((22, cell * len(labels), 3), 255, np.uint8)
    for i, label in enumerate(labels):
        cv2.putText(strip, label, (i * cell + 4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                    (0, 0, 0), 1, cv2.LINE_AA)
    body = []
    for row in rows:
        line = np.full((height, cell * len(labels), 3), 255, np.uint8)
        for i, img in enumerate(row):
            t = thumb(img)
            line[:, i * cell:i * cell + t.shape[1]] = t
        body.append(line)
    write_image(path, np.concatenate([strip, *body]), format="jpeg", quality=82, overwrite=True)


# Modes -----------------------------------------------------------------------------------

def compare(samples: list[Sample], cnn: bool, sheet: Path, sheet_rows: int) -> None:
    fns = methods(Restorer(solver="excnet") if cnn else None)
    outputs: dict[str, list[np.ndarray]] = {}
    seconds: dict[str, float] = {}
    for name, fn in fns.items():
        t = time.perf_counter()
        outputs[name] = [fn(s.backlit) for s in samples]
        seconds[name] = (time.perf_counter() - t) / len(samples)
    for title, pick in (("all", lambda s: True), ("tuning half", lambda s: not s.held_out),
                        ("held-out half", lambda s: s.held_out)):
        idx = [i for i, s in enumerate(samples) if pick(s)]
        sub = [samples[i] for i in idx]
        rows = {n: {**score([o[i] for i in idx], sub), "s/img": seconds[n]}
                for n, o in outputs.items()}
        print(f"\n{title}: {len(sub)} images, mean over images\n{table(rows)}")
    held = [i for i, s in enumerate(samples) if s.held_out][:sheet_rows]
    shown = [n for n in outputs if n != "identity"]
    contact_sheet([[samples[i].backlit, *(outputs[n][i] for n in shown), samples[i].truth]
                   for i in held], ["input", *shown, "truth"], sheet)
    print(f"\ncontact sheet: {sheet} ({sheet.stat().st_size // 1024} kB)")


def trial_options() -> dict[str, ToneOptions]:
    """Every named trial: one option at a time, then combinations of the tuning-half winners."""
    f = FAITHFUL
    trials = {"faithful": f,
              "chroma=linear": replace(f, chroma="linear")}
    trials.update({f"chroma=damped k={k}": replace(f, chroma="damped", chroma_damping=k)
                   for k in (0.3, 0.5, 0.7, 1.0)})
    trials["clip=hue"] = replace(f, clip="hue")
    trials["monotonic=scale"] = replace(f, monotonic="scale")
    trials["monotonic=envelope"] = replace(f, monotonic="envelope")
    trials.update({f"highlight_scale={h}": replace(f, highlight_scale=h) for h in (0.0, 0.5, 1.0)})
    trials.update({f"radius={r}": replace(f, radius_fraction=r) for r in (0.02, 0.08)})
    trials.update({f"eps={e:g}": replace(f, eps=e) for e in (200.0, 3200.0, 12800.0)})
    combo = replace(f, monotonic="scale", eps=3200.0)
    trials["scale+eps3200"] = combo
    trials["scale+eps3200+h0.5"] = replace(combo, highlight_scale=0.5)
    trials["scale+eps3200+linear"] = replace(combo, chroma="linear")
    trials.update({f"scale+eps3200+damped{k}": replace(combo, chroma="damped", chroma_damping=k)
                   for k in (0.3, 0.5)})
    best = replace(combo, highlight_scale=0.5)
    trials["scale+eps3200+h0.5+linear"] = replace(best, chroma="linear")
    trials["scale+eps3200+h0.5+damped0.5"] = replace(best, chroma="damped", chroma_damping=0.5)
    trials["scale+eps3200+damped0.5+hue"] = replace(combo, chroma="damped", chroma_damping=0.5,
                                                    clip="hue")
    return trials


def trials(samples: list[Sample]) -> None:
    halves = {"tuning": [s for s in samples if not s.held_out],
              "held-out": [s for s in samples if s.held_out]}
    results = {h: {} for h in halves}
    for name, opts in trial_options().items():
        for half, sub in halves.items():
            results[half][name] = score([restore_with(s.backlit, opts)[0] for s in sub], sub)
    for half, rows in results.items():
        base = rows["faithful"]
        wins = {n: _wins(r, base) for n, r in rows.items()}
        shown = {n: {**r, "wins": float(wins[n])} for n, r in rows.items()}
        print(f"\n{half} half: {len(halves[half])} images (wins = 1 when dE00 and PSNR are "
              f"better and SSIM, LOE no worse than faithful)\n{table(shown, 'trial')}")


def _wins(r: dict[str, float], base: dict[str, float]) -> bool:
    strict = all(BETTER[k] * (r[k] - base[k]) > 0 for k in ("dE00", "PSNR"))
    return strict and all(BETTER[k] * (r[k] - base[k]) >= 0 for k in ("SSIM", "LOE"))


def folder(path: Path, sheet: Path, sheet_rows: int, size: int) -> int:
    files = sorted(p for p in path.iterdir() if p.is_file())
    fns = methods(None)
    figures: dict[str, list] = {n: [] for n in fns}
    rows, failed = [], []
    for p in files:
        try:
            img = read_image(p).pixels
        except ImageError as exc:
            failed.append(str(exc))
            continue
        if img.dtype != np.uint8:
            img = (img / 257).round().astype(np.uint8)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        img = _fit(img, size)
        mask = shadow_mask(img)
        outs = {n: fn(img) for n, fn in fns.items()}
        for n, o in outs.items():
            figures[n].append(no_reference(o, mask))
        if len(rows) < sheet_rows:
            rows.append([img, *(o for n, o in outs.items() if n != "identity")])
    for line in failed:
        print(f"skipped: {line}", file=sys.stderr)
    if not rows:
        print(f"{path}: no readable images", file=sys.stderr)
        return 1
    table_rows = {n: {"shadow": np.mean([f.shadow_mean for f in fs]),
                      "spread": np.mean([f.shadow_spread for f in fs]),
                      "clipped%": 100 * np.mean([f.clipped for f in fs]),
                      "entropy": np.mean([f.entropy for f in fs])}
                  for n, fs in figures.items()}
    print(f"{len(figures['identity'])} images from {path}; shadow = the input's darkest "
          f"quarter (luma 0..255)\n{table(table_rows)}")
    contact_sheet(rows, ["input", *(n for n in fns if n != "identity")], sheet)
    print(f"\ncontact sheet: {sheet}")
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", action="store_true", help="run the ToneOptions trials")
    ap.add_argument("--folder", type=Path, help="no-reference figures for your own photos")
    ap.add_argument("--no-cnn", action="store_true", help="skip the CNN solver row")
    ap.add_argument("--size", type=int, default=SIZE, help="long side of the images (px)")
    ap.add_argument("--sheet", type=Path, default=HERE / "contact_sheet.jpg")
    ap.add_argument("--sheet-rows", type=int, default=6)
    args = ap.parse_args()
    if args.folder:
        return folder(args.folder, args.sheet, args.sheet_rows, args.size)
    samples = synthetic_set(args.size)
    print(f"{len(samples)} synthetic back-lit images ({len(samples) // len(MASKS)} photos x "
          f"{len(MASKS)} masks), long side {args.size} px")
    if args.trials:
        trials(samples)
    else:
        compare(samples, not args.no_cnn, args.sheet, args.sheet_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
