"""Speed of `excnet restore`: per-stage medians, iterations and peak memory, cold and warm.

    python benchmarks/speed.py                    # the full table (includes the reference recipe)
    python benchmarks/speed.py --no-reference     # skip the 1000-iteration reference recipe
    python benchmarks/speed.py --sizes 1 12       # only some sizes (megapixels)
    python benchmarks/speed.py --configs "default (direct)" "excnet small"
    python benchmarks/speed.py --starts-only      # only the process-start table (quick)
    python benchmarks/speed.py --starts 5         # fewer fresh processes per start figure
    python benchmarks/speed.py --starts-only --no-raw   # without the 24 MP DNG rows

Every figure comes from the real command line, `excnet restore FILES... --json`, one process
per (size, solver, architecture): its first image is the cold figure; the warm figures are the
medians over later images that did not warm the restorer. Peak RSS is the whole process's
(imports included), from /usr/bin/time. The test photos are made here, in a temporary folder, from
photos that ship with scikit-image: scaled up, made back-lit in linear light, given fine
texture and sensor noise, and saved as JPEG quality 95 with 4:2:0 chroma as phones and most
cameras write them (`--sampling 4:4:4` for full chroma), so that a 12 MP file is 3.5 MB or
more like a real camera JPEG. The same run also times the reference recipe (reference
network and initialisation, exact base layer, 1000 Adam iterations, no convergence test) once
at 12 MP, in process, and checks that the default fast path gives the same phi and pixels as
the exact one.

Process start: what a user waits for, from launching `excnet` to its exit (imports included),
as the median of --starts fresh processes: the help, one photo at 1 and 12 MP and a 24 MP
camera DNG, lossless-JPEG compressed and uncompressed (`benchmarks/raw.py`'s files), each
restored to a JPEG file, and a batch of an empty folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage import data as skdata

from excnet import Restorer
from excnet.imageio import read_image, write_image

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
SIZES = {1: (866, 1155), 12: (3000, 4000), 24: (4240, 5656)}
#: (label, CLI arguments) of the solver configurations timed through the CLI.
CONFIGS = (
    ("default (direct)", []),
    ("default, --denoise off", ["--denoise", "off"]),
    ("excnet small", ["--solver", "excnet", "--arch", "small"]),
    ("excnet reference", ["--solver", "excnet", "--arch", "reference"]),
)
STAGES = ("decode", "base", "estimate", "apply", "encode", "total")


def make_photo(name: str, shape: tuple[int, int], seed: int) -> np.ndarray:
    """A back-lit, camera-like RGB photo (uint8) of `shape` from a scikit-image photo."""
    h, w = shape
    rng = np.random.default_rng(seed)
    src = getattr(skdata, name)()[..., :3]
    if rng.random() < 0.5:
        src = src[:, ::-1]
    img = cv2.resize(np.ascontiguousarray(src), (w, h), interpolation=cv2.INTER_CUBIC)
    lin = (img.astype(np.float32) / 255) ** 2.2
    yy, xx = np.ogrid[0:h, 0:w]
    cy, cx = h * rng.uniform(0.4, 0.7), w * rng.uniform(0.3, 0.7)
    mask = np.exp(-(((yy - cy) / (0.35 * h)) ** 2 + ((xx - cx) / (0.3 * w)) ** 2)).astype(
        np.float32)
    lin *= (mask * 2.0 ** -rng.uniform(2, 3.5) + (1 - mask) * 1.6)[..., None]
    srgb = np.clip(lin, 0, 1) ** (1 / 2.2) * 255
    detail = np.zeros((h, w), np.float32)
    for cell, amp in ((1, 3.0), (2, 3.0), (5, 4.0)):  # fine texture, in percent
        noise = rng.standard_normal((h // cell + 1, w // cell + 1), dtype=np.float32)
        detail += amp * cv2.resize(noise, (w, h), interpolation=cv2.INTER_LINEAR)
    srgb *= (1 + detail / 100)[..., None]
    srgb += rng.standard_normal((h, w, 3), dtype=np.float32) * 2.0  # sensor noise
    return np.clip(srgb, 0, 255).astype(np.uint8)


#: Pillow's codes for the JPEG chroma subsamplings the test photos can have.
SAMPLINGS = {"4:2:0": 2, "4:4:4": 0}


def make_files(folder: Path, mp: int, count: int, first_seed: int,
               sampling: str = "4:2:0") -> list[Path]:
    """count camera-like JPEGs (quality 95, this chroma subsampling) of mp megapixels."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        seed = first_seed + i
        path = folder / f"{mp}mp_{i:03d}.jpg"
        photo = make_photo(PHOTOS[seed % len(PHOTOS)], SIZES[mp], seed)
        Image.fromarray(photo).save(path, quality=95, subsampling=SAMPLINGS[sampling])
        files.append(path)
    return files


def run_cli(files: list[Path], out: Path, extra: list[str]) -> tuple[list[dict], float, float]:
    """Run `excnet restore` on files; (JSON records, peak RSS in MB, wall seconds)."""
    exe = shutil.which("excnet", path=str(Path(sys.executable).parent)) or "excnet"
    cmd = [exe, "restore", *map(str, files), "--json", "-o", str(out), *extra]
    # Through /usr/bin/time: a child forked from this (large) process would count our pages.
    cmd = ["/usr/bin/time", "-f", "excnet-speed-rss-kb %M", *cmd]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"speed.py: {' '.join(cmd[4:7])}... failed:\n{proc.stderr}")
    rss_kb = next(int(line.split()[1]) for line in proc.stderr.splitlines()
                  if line.startswith("excnet-speed-rss-kb"))
    stdout = proc.stdout
    records = [json.loads(line) for line in stdout.splitlines()]
    return records, rss_kb / 1024, wall


#: (label, target seconds) of the process-start figures.
START_TARGETS = {"excnet --help": 0.3, "excnet restore --help": 0.3,
                 "restore one 1 MP photo": None, "restore one 12 MP photo": 1.0,
                 "24 MP DNG, lossless JPEG": 3.5, "24 MP DNG, uncompressed": 3.5,
                 "batch of an empty folder": 1.0}
#: The camera RAW rows: `benchmarks/raw.py`'s 24 MP DNGs (label there -> label here).
RAW_STARTS = {"DNG 14-bit lossless JPEG": "24 MP DNG, lossless JPEG",
              "DNG 14-bit uncompressed": "24 MP DNG, uncompressed"}


def process_starts(folder: Path, photos: dict[int, Path], repeats: int,
                   raws: dict[str, Path] | None = None) -> list[tuple]:
    """(label, median, min, max seconds, target) of fresh `excnet` processes, start to exit.
    raws: camera RAW files (label -> path) restored to JPEG as the photos are."""
    exe = shutil.which("excnet", path=str(Path(sys.executable).parent)) or "excnet"
    (folder / "empty").mkdir(exist_ok=True)
    commands = {"excnet --help": ["--help"], "excnet restore --help": ["restore", "--help"]}
    for mp in (1, 12):
        if mp in photos:
            commands[f"restore one {mp} MP photo"] = [
                "restore", str(photos[mp]), "-o", str(folder / f"start-{mp}.jpg")]
    for label, path in (raws or {}).items():
        commands[label] = ["restore", str(path), "-o", str(folder / "start-raw.jpg"),
                           "--overwrite"]
    commands["batch of an empty folder"] = ["batch", str(folder / "empty"),
                                            str(folder / "empty-out")]
    rows = []
    for label, argv in commands.items():
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            proc = subprocess.run([exe, *argv], capture_output=True)
            times.append(time.perf_counter() - start)
            if proc.returncode not in (0, 1) or b"Traceback" in proc.stderr:
                sys.exit(f"speed.py: excnet {' '.join(argv)} failed:\n{proc.stderr.decode()}")
        rows.append((label, statistics.median(times), min(times), max(times),
                     START_TARGETS[label]))
    return rows


def print_starts(rows: list[tuple], repeats: int) -> None:
    print(f"process start to exit, median of {repeats} fresh processes (seconds):")
    print(f"{'command':<28}{'median':>8}{'min':>8}{'max':>8}{'target':>8}")
    for label, med, lo, hi, target in rows:
        goal = f"{target:>8.1f}" if target else f"{'':>8}"
        print(f"{label:<28}{med:>8.3f}{lo:>8.3f}{hi:>8.3f}{goal}")
    print()


def row(label: str, mp: int, when: str, recs: list[dict], rss: float | None) -> dict:
    med = {s: statistics.median(r["seconds"][s] for r in recs) for s in STAGES}
    iters = statistics.median(r["iterations"] for r in recs)
    return {"config": label, "mp": mp, "when": when, "n": len(recs), **med, "iterations": iters,
            "rss": rss}


def print_table(rows: list[dict], baseline: float | None) -> None:
    head = (f"{'config':<26}{'MP':>4} {'run':<5}{'n':>3}" + "".join(f"{s:>9}" for s in STAGES)
            + f"{'iters':>7}{'RSS MB':>8}{'speed-up':>10}")
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = f"{baseline / r['total']:>9.0f}x" if baseline and r["mp"] == 12 else f"{'':>10}"
        rss = f"{r['rss']:>8.0f}" if r["rss"] is not None else f"{'':>8}"
        print(f"{r['config']:<26}{r['mp']:>4} {r['when']:<5}{r['n']:>3}"
              + "".join(f"{r[s]:>9.3f}" for s in STAGES) + f"{r['iterations']:>7.0f}{rss}{ratio}")


def time_in_process(path: Path, restorer: Restorer, label: str) -> tuple[dict, np.ndarray]:
    """One image through read/restore/write in this process, timed like the CLI."""
    t0 = time.perf_counter()
    img = read_image(path)
    t1 = time.perf_counter()
    res = restorer.restore(img.pixels)
    t2 = time.perf_counter()
    write_image(path.with_suffix(".out.jpg"), res.image, like=img, quality=95)
    t3 = time.perf_counter()
    rec = {"seconds": {"decode": t1 - t0, **res.seconds, "encode": t3 - t2, "total": t3 - t0},
           "iterations": res.iterations}
    return row(label, img.pixels.size // 3 // 1_000_000 or 1, "once", [rec], None), res.image


def check_same_result(path: Path) -> None:
    """The default fast path against the exact pipeline and the direct solver's phi."""
    pixels = read_image(path).pixels
    exact = Restorer("direct", exact=True).restore(pixels)
    for label, opts in (("default (direct)", {}),
                        ("excnet small", {"solver": "excnet", "arch": "small"})):
        fast = Restorer(**opts).restore(pixels)
        diff = fast.image.astype(np.float64) - exact.image
        psnr = 10 * np.log10(255**2 / max(float(np.mean(diff * diff)), 1e-12))
        print(f"  {label:<18} phi ({fast.phi_s:.4f}, {fast.phi_h:.4f}) vs exact direct "
              f"({exact.phi_s:.4f}, {exact.phi_h:.4f}): |dphi| <= "
              f"{max(abs(fast.phi_s - exact.phi_s), abs(fast.phi_h - exact.phi_h)):.4f}, "
              f"PSNR vs exact pipeline {psnr:.1f} dB")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 12, 24], choices=sorted(SIZES))
    ap.add_argument("--no-reference", action="store_true",
                    help="skip the reference recipe (1000 iterations of the 8.3 M network)")
    ap.add_argument("--configs", nargs="+", default=[c[0] for c in CONFIGS],
                    choices=[c[0] for c in CONFIGS], help="solver configurations to time")
    ap.add_argument("--batch", type=int, default=100, help="1 MP images in the batch run")
    ap.add_argument("--starts", type=int, default=10,
                    help="fresh processes per process-start figure (default 10; 0 skips them)")
    ap.add_argument("--no-raw", action="store_true",
                    help="leave the 24 MP DNG rows out of the process-start table")
    ap.add_argument("--starts-only", action="store_true",
                    help="only the process-start table")
    ap.add_argument("--sampling", default="4:2:0", choices=sorted(SAMPLINGS),
                    help="chroma subsampling of the test JPEGs (default 4:2:0, as cameras)")
    args = ap.parse_args()
    counts = {1: (3, 7), 12: (2, 3), 24: (1, 2)}  # (warm-up images, measured warm images)
    rows: list[dict] = []
    baseline = None
    with tempfile.TemporaryDirectory(prefix="excnet-speed-") as tmp:
        folder = Path(tmp)
        files = {}
        for mp in [] if args.starts_only else args.sizes:
            warm, measured = counts[mp]
            files[mp] = make_files(folder, mp, warm + measured, first_seed=100 * mp,
                                  sampling=args.sampling)
            sizes = [p.stat().st_size / 1e6 for p in files[mp]]
            print(f"{mp} MP test JPEGs: {len(sizes)}, {min(sizes):.1f} to {max(sizes):.1f} MB")
        print(f"CPU cores: {os.cpu_count()}; load average before: {os.getloadavg()[0]:.1f}\n")
        if args.starts:
            firsts = {mp: make_files(folder / "start", mp, 1, first_seed=900 + mp,
                                     sampling=args.sampling)[0] for mp in (1, 12)}
            raws = None
            if not args.no_raw:  # made once by benchmarks/raw.py and cached in its folder
                sys.path.insert(0, str(Path(__file__).resolve().parent))
                from raw import speed_files

                work = Path(tempfile.gettempdir()) / "excnet-raw-bench"
                work.mkdir(exist_ok=True)
                raws = {RAW_STARTS[k]: p for k, p in speed_files(work).items() if k in RAW_STARTS}
            print_starts(process_starts(folder, firsts, args.starts, raws), args.starts)
        if args.starts_only:
            return 0
        for label, extra in (c for c in CONFIGS if c[0] in args.configs):
            for mp in args.sizes:
                warm = counts[mp][0]
                chosen = files[mp]
                if label == "excnet reference":  # ~0.1 s an iteration: one warm image
                    chosen = files[mp][: warm + 1]
                recs, rss, _ = run_cli(chosen, folder / "out", extra)
                rows.append(row(label, mp, "cold", recs[:1], rss))
                rows.append(row(label, mp, "warm", recs[warm:], None))
        if 12 in args.sizes:
            path = files[12][-1]
            exact = Restorer("direct", exact=True)
            exact_row, _ = time_in_process(path, exact, "exact path, direct")
            rows.append(exact_row)
            if not args.no_reference:
                ref = Restorer("excnet", arch="reference", init="reference", max_iters=1000,
                               tol=0.0, exact=True, faithful=True)
                ref_row, _ = time_in_process(path, ref, "reference recipe (1000 it)")
                rows.append(ref_row)
                baseline = ref_row["total"]
        if 1 in args.sizes and args.batch:
            batch = make_files(folder / "batch", 1, args.batch, first_seed=5000,
                               sampling=args.sampling)
            recs, rss, wall = run_cli(batch, folder / "out", [])
            busy = sum(r["seconds"]["total"] for r in recs)
            print(f"batch of {len(recs)} 1 MP images in one process: "
                  f"{len(recs) / busy:.1f} images/s (per-image totals), "
                  f"{len(recs) / wall:.1f} images/s (process wall time, start-up included), "
                  f"peak RSS {rss:.0f} MB")
        print(f"load average after: {os.getloadavg()[0]:.1f}\n")
        print("seconds are medians; cold = the first image of a process (after imports); warm "
              "= later images,\nnot those that warmed the restorer; speed-up = reference "
              "recipe total / row total (12 MP)\n")
        print_table(rows, baseline)
        if 12 in args.sizes:
            print("\nsame result (12 MP):")
            check_same_result(files[12][-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
