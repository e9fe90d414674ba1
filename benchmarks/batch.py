"""Batch throughput: images per second for the local engine (1 and 2 workers) and Ray, and
mean ExCNet iterations per image cold (a fresh network per image) versus warm (one network
carried through the batch).

    .venv/bin/python benchmarks/batch.py [--images 200] [--repeats 3] [--solver S]

Prints a table of medians over --repeats runs with ratios against the 1-worker local run
(all in this process, on the same images). Ray start-up is done once, outside the timings.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import make_backlit  # noqa: E402

from excnet.cli import main  # noqa: E402
from excnet.imageio import read_image, write_image  # noqa: E402
from excnet.pipeline import Restorer  # noqa: E402


def _make_images(folder: Path, n: int, h: int, w: int) -> list[Path]:
    base = [make_backlit(h, w, seed=s) for s in range(8)]
    paths = []
    for i in range(n):
        p = folder / f"{i // 50:02d}" / f"img{i:04d}.jpg"
        write_image(p, base[i % 8] if i < 8 else _vary(base[i % 8], i))
        paths.append(p)
    return paths


def _vary(img, i):
    """A different exposure of a base scene, so no two files are the same image."""
    return (img.astype("float32") * (0.8 + 0.4 * ((i * 37) % 100) / 100)).clip(0, 255).astype(
        img.dtype)


def _time_batch(src: Path, work: Path, engine: str, workers: int, solver: str) -> float:
    out = work / f"out-{engine}-{workers}"
    shutil.rmtree(out, ignore_errors=True)
    args = ["batch", str(src), str(out), "--engine", engine, "-j", str(workers),
            "--solver", solver]
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        rc = main(args)
    seconds = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"batch failed ({engine}, {workers} workers)")
    return seconds


def _iterations(paths: list[Path]) -> tuple[float, float]:
    """Mean iterations per image with a fresh network each time and with one warm network."""
    xs = [read_image(p).pixels for p in paths]
    cold = [Restorer("excnet").estimate(x)[0].iterations for x in xs]
    warm_restorer = Restorer("excnet")
    warm = [warm_restorer.estimate(x)[0].iterations for x in xs]
    return statistics.mean(cold), statistics.mean(warm)


def run() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--height", type=int, default=864)
    ap.add_argument("--width", type=int, default=1152)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--solver", default=None, help="solver for the throughput runs "
                    "(default: excnet's default)")
    ap.add_argument("--iteration-images", type=int, default=20,
                    help="images for the cold/warm iteration count (--solver excnet); 0 skips it")
    ap.add_argument("--no-ray", action="store_true")
    opts = ap.parse_args()
    from excnet.pipeline import DEFAULT_SOLVER

    solver = opts.solver or DEFAULT_SOLVER
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = _make_images(work / "in", opts.images, opts.height, opts.width)
        mp = opts.height * opts.width / 1e6
        print(f"{opts.images} images of {mp:.2f} MP (JPEG), solver {solver}, "
              f"median of {opts.repeats} runs")
        configs = [("local", 1), ("local", 2)]
        if not opts.no_ray:
            import ray

            ray.init(include_dashboard=False, log_to_driver=False)
            configs.append(("ray", 2))
        rows = []
        for engine, workers in configs:
            times = [_time_batch(work / "in", work, engine, workers, solver)
                     for _ in range(opts.repeats)]
            rows.append((engine, workers, statistics.median(times)))
        base = rows[0][2]
        print(f"{'engine':<8}{'workers':>8}{'median s':>10}{'images/s':>10}{'vs local-1':>12}")
        for engine, workers, t in rows:
            print(f"{engine:<8}{workers:>8}{t:>10.2f}{opts.images / t:>10.2f}{base / t:>11.2f}x")
        if not opts.no_ray:
            ray.shutdown()
        k = min(opts.iteration_images, len(paths))
        if k == 0:
            return
        cold, warm = _iterations(paths[:k])
        print(f"mean iterations per image (--solver excnet, {k} images): "
              f"cold {cold:.1f}, warm {warm:.1f} ({cold / warm:.2f}x fewer warm)")


if __name__ == "__main__":
    run()
