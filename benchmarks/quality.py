"""Restoration quality on ground-truth sets, against baselines, and trials of rendering options.

    python benchmarks/quality.py                          # every set, every row but the CNN
    python benchmarks/quality.py --sets lol mild --rows default clahe
    python benchmarks/quality.py --rows all               # adds the CNN solver (slow)
    python benchmarks/quality.py --lol PATH               # LOL eval15 elsewhere
    python benchmarks/quality.py --adapt-trials           # adaptive-rule constants, tuning halves
    python benchmarks/quality.py --trials                 # rendering (ToneOptions) trials
    python benchmarks/quality.py --folder DIR             # your own photos: no-reference table
    python benchmarks/quality.py --examples               # contact sheet of examples/
    python benchmarks/quality.py --backlit-dev            # real back-lit photos, no truth
    python benchmarks/quality.py --backlit-bounds         # what the synthetic back-lit set allows

The sets are in `quality_sets.py` (built from photos shipped in packages; nothing is
downloaded) plus the real LOL eval15 pairs, by default at ../shared/data/lol_eval15 from the
repository root. Scores are those of ../shared/tools/score_pairs.py: mean PSNR (dB, RGB
uint8), SSIM (scikit-image structural_similarity, channel_axis=2, default 7 x 7 window) and
CIEDE2000 (scikit-image deltaE_ciede2000 of rgb2lab); "min" is the worst image's PSNR. On the
`well` and `lowkey` sets the truth is the input itself: higher PSNR = less harm.
"""

from __future__ import annotations

import argparse
import inspect
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from quality_sets import (
    LOL_DEFAULT,
    SETS,
    VERSUS_INPUT,
    Backlight,
    Sample,
    backlit_set,
    encode_srgb,
    lol_set,
)

from excnet import Curve, Restorer, adapt
from excnet.base import network_input
from excnet.colour import luminance
from excnet.imageio import ImageError, read_image, write_image
from excnet.metrics import (
    delta_e,
    lightness_order_error,
    no_reference,
    psnr,
    shadow_mask,
    ssim,
)
from excnet.solvers import Estimate, solve_direct
from excnet.tone import FAITHFUL, IMPROVED, ToneOptions, apply_tone_gain, base_for, gain_for

HERE = Path(__file__).resolve().parent
SIZE = 480


def _fit(img: np.ndarray, size: int) -> np.ndarray:
    img = img[..., :3]
    s = size / max(img.shape[:2])
    if s < 1:
        img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)),
                         interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img, dtype=np.uint8)


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


def gamma_to_mean(img: np.ndarray, target: float = 0.45) -> np.ndarray:
    """One gamma on all channels, chosen by bisection so mean luma becomes `target` (0..1).

    The mean luma of the rounded result is computed from per-channel histograms, so each
    bisection step costs 3 x 256 operations.
    """
    levels = np.arange(256) / 255.0
    hists = [np.bincount(img[..., c].ravel(), minlength=256) / img[..., c].size
             for c in range(3)]
    weights = (0.299, 0.587, 0.114)

    def lut(g: float) -> np.ndarray:
        return np.rint(levels ** g * 255)

    def mean_luma(g: float) -> float:
        table = lut(g)
        return sum(w * float(h @ table) for w, h in zip(weights, hists, strict=True)) / 255

    lo, hi = -6.0, 6.0  # log2 of gamma
    for _ in range(40):
        mid = (lo + hi) / 2
        if mean_luma(2.0**mid) > target:
            lo = mid
        else:
            hi = mid
    return lut(2.0 ** ((lo + hi) / 2)).astype(np.uint8)[img[..., :3]]


def restore_with(pixels: np.ndarray, options: ToneOptions = FAITHFUL, *,
                 estimator: Callable[[np.ndarray], Estimate] = solve_direct,
                 ) -> tuple[np.ndarray, Curve]:
    """Restore end to end on the exact path (exact guided filter, float64 gain) with the given
    options and no adaptive rule; returns (image, curve). `estimator` maps the 128 x 128
    network input to phi. Used by the rendering trials."""
    base = base_for(luminance(pixels), options)
    est = estimator(network_input(base))
    curve = options.curve(est.phi_s, est.phi_h)
    return apply_tone_gain(pixels, gain_for(base, curve, options), options, base), curve


def _restorer_row(**options) -> Callable[[np.ndarray], np.ndarray]:
    restorer = Restorer(**options)
    return lambda im: restorer.restore(im).image


#: Rows in table order. "0.1 default" is the default before the adaptive rule (adapt off).
ROWS: dict[str, Callable[[], Callable[[np.ndarray], np.ndarray]]] = {
    "input": lambda: (lambda im: im),
    "hist-eq": lambda: hist_eq,
    "clahe": lambda: clahe,
    "gamma->0.45": lambda: gamma_to_mean,
    "faithful": lambda: _restorer_row(faithful=True),
    "cnn faithful": lambda: _restorer_row(solver="excnet", faithful=True),
    "0.1 default": lambda: _restorer_row(adapt=False, tone=replace(IMPROVED, chroma="faithful"),
                                          **_denoise("off")),
    "adapt only": lambda: _restorer_row(**_denoise("off")),
    "cnn default": lambda: _restorer_row(solver="excnet"),
    "default": lambda: _restorer_row(),
}
SLOW_ROWS = ("cnn faithful", "cnn default")


def _denoise(mode: str) -> dict:
    """The denoise option where the Restorer has one (issue 10, item 2), else nothing."""
    return {"denoise": mode} if "denoise" in inspect.signature(Restorer).parameters else {}


# Scoring ---------------------------------------------------------------------------------

#: PSNR of an unchanged image (and the cap of any): RMS error below a quarter of a level.
PSNR_CAP = 60.0

def score_pair(out: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """(PSNR, SSIM, CIEDE2000) exactly as ../shared/tools/score_pairs.py computes them."""
    from skimage.color import deltaE_ciede2000, rgb2lab
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    out, truth = _rgb8(out), _rgb8(truth)
    if np.array_equal(out, truth):
        p = PSNR_CAP  # identical: skimage gives inf
    else:
        p = min(peak_signal_noise_ratio(truth, out, data_range=255), PSNR_CAP)
    return (float(p), float(structural_similarity(truth, out, channel_axis=2, data_range=255)),
            float(deltaE_ciede2000(rgb2lab(truth), rgb2lab(out)).mean()))


def _rgb8(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3]
    return img if img.dtype == np.uint8 else np.rint(img / 257).astype(np.uint8)


def mean_scores(outputs: list[np.ndarray], samples: list[Sample]) -> dict[str, float]:
    rows = np.array([score_pair(o, s.truth) for o, s in zip(outputs, samples, strict=True)])
    return {"PSNR": rows[:, 0].mean(), "SSIM": rows[:, 1].mean(), "dE00": rows[:, 2].mean(),
            "min": rows[:, 0].min()}


#: The project's own metrics (Gaussian SSIM, lightness-order error), for the rendering trials.
METRICS = {"PSNR": psnr, "SSIM": ssim, "dE00": delta_e, "LOE": lightness_order_error}
BETTER = {"PSNR": 1, "SSIM": 1, "dE00": -1, "LOE": -1}


def score(outputs: list[np.ndarray], samples: list[Sample]) -> dict[str, float]:
    """Mean of each project metric over the samples."""
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
            results[half][name] = score([restore_with(s.input, opts)[0] for s in sub], sub)
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
    fns = {n: ROWS[n]() for n in ROWS if n not in SLOW_ROWS}
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
            rows.append([img, *(o for n, o in outs.items() if n != "input")])
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
    print(f"{len(figures['input'])} images from {path}; shadow = the input's darkest "
          f"quarter (luma 0..255)\n{table(table_rows)}")
    contact_sheet(rows, ["input", *(n for n in fns if n != "input")], sheet)
    print(f"\ncontact sheet: {sheet}")
    return 1 if failed else 0


# Modes -----------------------------------------------------------------------------------

def load_sets(names: list[str], lol: Path, size: int) -> dict[str, list[Sample]]:
    out = {}
    for name in names:
        samples = lol_set(lol) if name == "lol" else SETS[name](size)
        if not samples:
            print(f"{name}: no images (LOL expected at {lol}); skipped", file=sys.stderr)
            continue
        out[name] = samples
    return out


def compare(sets: dict[str, list[Sample]], rows: list[str], sheets: Path | None,
            sheet_rows: int) -> None:
    for set_name, samples in sets.items():
        outputs: dict[str, list[np.ndarray]] = {}
        seconds: dict[str, float] = {}
        for name in rows:
            fn = ROWS[name]()
            t = time.perf_counter()
            outputs[name] = [fn(s.input) for s in samples]
            seconds[name] = (time.perf_counter() - t) / len(samples)
        versus = " vs input (higher = less harm)" if set_name in VERSUS_INPUT else ""
        halves = [("all", samples)]
        if set_name != "lol":
            halves += [("tuning", [s for s in samples if not s.held_out]),
                       ("held-out", [s for s in samples if s.held_out])]
        for title, sub in halves:
            idx = [samples.index(s) for s in sub]
            table_rows = {n: {**mean_scores([o[i] for i in idx], sub), "s/img": seconds[n]}
                          for n, o in outputs.items()}
            print(f"\n{set_name} ({title}): {len(sub)} images{versus}\n{table(table_rows)}")
        if sheets is not None:
            shown = [n for n in rows if n not in ("input", "hist-eq", "gamma->0.45")]
            picked = _sheet_samples(samples, sheet_rows)
            truth = set_name not in VERSUS_INPUT
            cells = [[s.input, *(outputs[n][samples.index(s)] for n in shown),
                      *([s.truth] if truth else [])] for s in picked]
            path = sheets / f"{set_name}.jpg"
            contact_sheet(cells, ["input", *shown, *(["truth"] if truth else [])], path)
            print(f"contact sheet: {path}")


def _sheet_samples(samples: list[Sample], n: int) -> list[Sample]:
    """Up to n samples, held-out first, spread over the set."""
    ordered = [s for s in samples if s.held_out] + [s for s in samples if not s.held_out]
    step = max(1, len(ordered) // n)
    return ordered[::step][:n]


#: Adaptive-rule candidates tried by --adapt-trials: label -> constants of excnet.adapt that
#: differ from the module's values. Round 1 varied one constant at a time around
#: (HIGH_TARGET 0.9, KEY_TARGET 0.5, DEAD_ZONE 0.5, LOWKEY_SPREAD 2.5, BACKLIT 0.15..0.3);
#: round 2 combined the tuning-half winners (the module's values are its pick); round 3
#: tried a dead zone that fades on large deficits (dropped); round 5 the low-key gate's
#: headroom (LOWKEY_HEADROOM; 99 = no gate); round 6 (the twelfth session: the exposure read
#: from `base.normalised_input`) the dead zone and its deep hedge again. benchmarks/RESULTS.md
#: has every table; these rows re-check the pick against its neighbours.
ADAPT_TRIALS: dict[str, dict[str, float]] = {
    "round-1 start": {"HIGH_TARGET": 0.9, "KEY_TARGET": 0.5, "DEAD_ZONE": 0.5,
                      "DEEP_HEDGE": 0.5, "LOWKEY_SPREAD": 2.5, "BACKLIT_LOW": 0.15,
                      "BACKLIT_HIGH": 0.3},
    "H.85 K.45": {"KEY_TARGET": 0.45},
    "DZ.25": {"DEAD_ZONE": 0.25},
    "DZ.5": {"DEAD_ZONE": 0.5},
    "DEEP.05": {"DEEP_HEDGE": 0.05},
    "DEEP.25": {"DEEP_HEDGE": 0.25},
    "H.8": {"HIGH_TARGET": 0.8},
    "LKH 1.5": {"LOWKEY_HEADROOM": 1.5},
    "LKH 2.5": {"LOWKEY_HEADROOM": 2.5},
    "no low-key gate": {"LOWKEY_HEADROOM": 99.0},
}


def adapt_trials(sets: dict[str, list[Sample]], half: str) -> None:
    """Each candidate set of excnet.adapt constants; PSNR / SSIM / dE00 per set on one half."""
    pick = {"tuning": lambda s: not s.held_out, "held-out": lambda s: s.held_out}[half]
    subsets = {n: [s for s in ss if pick(s)] for n, ss in sets.items() if n != "lol"}
    restorer = Restorer(**_denoise("off"))
    rows = {}
    for label, constants in {"current": {}, **ADAPT_TRIALS}.items():
        old = {k: getattr(adapt, k) for k in constants}
        for k, v in constants.items():
            setattr(adapt, k, v)
        try:
            row = {}
            for n, sub in subsets.items():
                m = mean_scores([restorer.restore(s.input).image for s in sub], sub)
                row.update({f"{n} P": m["PSNR"], f"{n} S": m["SSIM"], f"{n} dE": m["dE00"]})
                if n in VERSUS_INPUT:
                    row[f"{n} min"] = m["min"]
            rows[label] = row
        finally:
            for k, v in old.items():
                setattr(adapt, k, v)
    print(f"\nadaptive-rule trials, {half} halves (P = PSNR, S = SSIM, dE = CIEDE2000; "
          f"well/lowkey vs input; denoise off)\n{table(rows, 'trial')}")


def examples(sheet: Path, size: int) -> None:
    """Contact sheet of the real back-lit samples in examples/."""
    files = sorted(p for p in (HERE.parent / "examples").iterdir() if p.is_file())
    rows = ["faithful", "0.1 default", "default"]
    fns = {n: ROWS[n]() for n in rows}
    cells = []
    for p in files:
        img = _fit(_rgb8(read_image(p).pixels), size)
        cells.append([img, *(fns[n](img) for n in rows)])
    contact_sheet(cells, ["input", *rows], sheet, height=160)
    print(f"contact sheet: {sheet}")


# The real back-lit photos (no truth) -------------------------------------------------------

BACKLIT_DEV = HERE.parent / ".." / "shared" / "data" / "backlit_dev"
BACKLIT_PROXY = HERE.parent / ".." / "shared" / "tools" / "backlit_proxy.py"
#: Rows of the back-lit section: the CLI option each stands for, and how it is made.
BACKLIT_ROWS: dict[str, Callable[[], Callable[[np.ndarray], np.ndarray]]] = {
    "default": lambda: _restorer_row(),
    "faithful": lambda: _restorer_row(faithful=True),
    "adapt-off": lambda: _restorer_row(adapt=False),
    "denoise-off": lambda: _restorer_row(**_denoise("off")),
    "clahe": lambda: clahe,
}
CROP = 128  # side of a 100 % crop on the 0.5-1 MP photos (256 on the 12 MP one)


def shadow_crop(img: np.ndarray, side: int) -> tuple[int, int]:
    """(top, left) of the side x side window of img that is in the darkest 30 % (blurred luma)
    and holds the most fine texture there: where clean lifting would show smearing or grain."""
    y = luminance(img).astype(np.float32)
    blur = cv2.GaussianBlur(y, (0, 0), 8)
    dark = (blur <= np.percentile(blur, 30)).astype(np.float32)
    texture = np.abs(y - cv2.GaussianBlur(y, (0, 0), 1.5)) * dark
    k = (side, side)
    score = cv2.boxFilter(texture, -1, k, normalize=True) * (cv2.boxFilter(dark, -1, k) > 0.9)
    h, w = y.shape
    half = side // 2
    inner = score[half:h - half, half:w - half]
    r, c = np.unravel_index(int(np.argmax(inner)), inner.shape)
    return int(r), int(c)


def _crop(img: np.ndarray, at: tuple[int, int], side: int, zoom: int) -> np.ndarray:
    r, c = at
    part = np.ascontiguousarray(img[r:r + side, c:c + side, :3])
    return cv2.resize(part, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)


def backlit_dev(root: Path, out: Path, sheets: Path | None) -> int:
    """Every BACKLIT_ROWS rendering of root/input at full size into out/ROW, scored with
    backlit_proxy.py beside CLIP-LIT's (root/cliplit); contact sheet and 100 % crops of the
    lifted shadows (also of a 12 MP back-lit photo of benchmarks/speed.py)."""
    files = sorted(p for p in (root / "input").iterdir() if p.is_file())
    fns = {n: make() for n, make in BACKLIT_ROWS.items()}
    cliplit = root / "cliplit"
    sheet_rows, crop_rows = [], []
    for p in files:
        img = _rgb8(read_image(p).pixels)
        outs = {}
        for name, fn in fns.items():
            outs[name] = fn(img)
            write_image(out / name / f"{p.stem}.png", outs[name], overwrite=True)
        ref = next(iter(sorted(cliplit.glob(p.stem + ".*"))), None)
        clip = _rgb8(read_image(ref).pixels) if ref else np.zeros_like(img)
        if clip.shape != img.shape:
            clip = cv2.resize(clip, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_AREA)
        shown = [img, clip, outs["default"], outs["faithful"], outs["denoise-off"]]
        sheet_rows.append(shown)
        at = shadow_crop(img, CROP)
        crop_rows.append([_crop(v, at, CROP, 2) for v in shown])
    labels = ["input", "CLIP-LIT", "default", "faithful", "denoise off"]
    args = [sys.executable, str(BACKLIT_PROXY), str(root / "input"),
            *(f"{n}={out / n}" for n in fns), f"cliplit={cliplit}", "--per-image"]
    proxy = subprocess.run(args, capture_output=True, text=True)
    print(proxy.stdout + proxy.stderr)
    if sheets is not None:
        contact_sheet(sheet_rows, labels, sheets / "backlit_dev.jpg", height=150)
        contact_sheet(crop_rows, labels, sheets / "backlit_dev_crops.jpg", height=2 * CROP)
        big = big_backlit_crops()
        contact_sheet([big], ["input", "default", "faithful", "denoise off"],
                      sheets / "backlit_12mp_crop.jpg", height=512)
        print(f"contact sheets: {sheets}/backlit_dev.jpg, backlit_dev_crops.jpg (100 % crops "
              f"of the lifted shadows, shown 2x), backlit_12mp_crop.jpg")
    return proxy.returncode


def big_backlit_crops() -> list[np.ndarray]:
    """100 % crops (256 px, shown 2x) of the lifted shadow of the first 12 MP back-lit photo
    of benchmarks/speed.py (seed 0): input, default, faithful, denoise off."""
    from speed import PHOTOS, SIZES, make_photo

    img = make_photo(PHOTOS[0], SIZES[12], 0)
    at = shadow_crop(cv2.resize(img, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA),
                     64)
    at = (at[0] * 4, at[1] * 4)
    shown = [img, *(BACKLIT_ROWS[n]()(img) for n in ("default", "faithful", "denoise-off"))]
    return [_crop(v, at, 256, 2) for v in shown]


def backlit_bounds(size: int) -> None:
    """What the synthetic back-lit set allows: scores of renderings that know how each photo
    was lit (the mask and the stops), beside doing nothing. A restoration that holds the
    highlights leaves the brightened outside as it is; the best it can do inside is undo the
    darkening, a uniform linear gain of 2-4 stops over the darkened region."""
    from excnet.colour import srgb_to_linear

    lit: list[Backlight] = []
    samples = backlit_set(size, lit=lit)

    def undo(s: Sample, gain: np.ndarray) -> np.ndarray:
        return encode_srgb(srgb_to_linear(s.input / 255.0) / gain)

    rows = {
        "input (doing nothing)": [s.input for s in samples],
        "outside as shot, inside the truth": [
            np.where(light.mask > 0.5, s.truth, s.input).astype(np.uint8)
            for s, light in zip(samples, lit, strict=True)],
        "outside as shot, inside undone": [
            undo(s, light.gain(outside=False)) for s, light in zip(samples, lit, strict=True)],
        "both undone": [undo(s, light.gain()) for s, light in zip(samples, lit, strict=True)],
    }
    print(table({k: mean_scores(v, samples) for k, v in rows.items()}, "rendering"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    ap.add_argument("--rows", nargs="+", choices=[*ROWS, "all"],
                    default=[r for r in ROWS if r not in SLOW_ROWS],
                    help="rows to run (default: all but the CNN ones; 'all' adds them)")
    ap.add_argument("--lol", type=Path, default=LOL_DEFAULT,
                    help="LOL eval15 folder, input/ and gt/ (default ../shared/data/lol_eval15)")
    ap.add_argument("--adapt-trials", choices=("tuning", "held-out"), nargs="?",
                    const="tuning", help="vary the adaptive rule's constants one at a time")
    ap.add_argument("--trials", action="store_true", help="the rendering (ToneOptions) trials")
    ap.add_argument("--folder", type=Path, help="no-reference figures for your own photos")
    ap.add_argument("--examples", action="store_true", help="contact sheet of examples/")
    ap.add_argument("--backlit-dev", type=Path, nargs="?", const=BACKLIT_DEV,
                    help="real back-lit photos (input/, cliplit/) through backlit_proxy.py "
                         "(default ../shared/data/backlit_dev)")
    ap.add_argument("--backlit-bounds", action="store_true",
                    help="scores on the synthetic back-lit set of renderings that know how "
                         "each photo was lit")
    ap.add_argument("--backlit-out", type=Path, default=Path("/tmp/excnet_backlit_dev"),
                    help="where --backlit-dev writes its renderings")
    ap.add_argument("--size", type=int, default=SIZE, help="long side of the package photos")
    ap.add_argument("--sheets", type=Path, default=HERE / "sheets",
                    help="folder for the contact sheets (one per set)")
    ap.add_argument("--no-sheets", action="store_true")
    ap.add_argument("--sheet-rows", type=int, default=6)
    args = ap.parse_args()
    if args.folder:
        return folder(args.folder, args.sheets / "folder.jpg", args.sheet_rows, args.size)
    if args.examples:
        examples(args.sheets / "examples.jpg", args.size)
        return 0
    if args.backlit_dev:
        return backlit_dev(args.backlit_dev, args.backlit_out,
                           None if args.no_sheets else args.sheets)
    if args.backlit_bounds:
        backlit_bounds(args.size)
        return 0
    if args.trials:
        trials(SETS["backlit"](args.size))
        return 0
    sets = load_sets(args.sets, args.lol, args.size)
    if args.adapt_trials:
        adapt_trials(sets, args.adapt_trials)
        return 0
    rows = list(ROWS) if "all" in args.rows else [r for r in ROWS if r in args.rows]
    if not args.no_sheets:
        args.sheets.mkdir(parents=True, exist_ok=True)
    compare(sets, rows, None if args.no_sheets else args.sheets, args.sheet_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
