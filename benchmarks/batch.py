"""Batch throughput of `excnet batch`: photos/s for the whole command, peak memory of the
process tree and per-stage utilisation, at 1 MP and 12 MP; mean ExCNet iterations cold vs warm.

    .venv/bin/python benchmarks/batch.py                      # 200 x 1 MP and 24 x 12 MP
    .venv/bin/python benchmarks/batch.py --sizes 12 --repeats 1 --workers 2
    .venv/bin/python benchmarks/batch.py --photos /tmp/bench  # keep the test photos for re-runs

Every run is the real command in a fresh process (`excnet batch IN OUT -j N`), timed from
process start to exit, so start-up counts. Peak memory is the summed RSS of the process and
all its children, sampled every 10 ms. Utilisation: each stage's summed seconds (from the
manifest's records) over wall time x cores, so "decode 40 %" means decoding kept 40 % of the
machine busy; "cpu" is the command's user + system time over wall x cores, and what is left
to 100 % is idle. Ratios are against `-j 1` in the same run. 1 MP photos are the smooth
synthetic scenes of the tests (as in 0.1); 12 MP photos are camera-like JPEGs of 3.5 to 4 MB
(benchmarks/speed.py: 4:2:0 chroma; `--sampling 4:4:4` makes the 4 to 5 MB full-chroma set).

    .venv/bin/python benchmarks/batch.py --engine ray --photos /tmp/bench   # Ray vs local

`--engine ray` compares the engines instead, in this process, on the same 12 MP photos with
the same threads (the local engine with one thread per core, Ray with its default: one actor
per node, as many photos at once as it has CPUs), run alternately: photos/s of each once
started (Ray: from its first worker ready to the last record; the local engine: the whole
call, its threads start at once) and whole-call photos/s; Ray's start-up apart (the private
local instance once, and each batch's start-up: importing Ray in the driver, joining the
instance, the workers started and warmed up), and the seconds from "started" to the first
record.
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

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import make_backlit  # noqa: E402
from speed import SAMPLINGS, make_files  # noqa: E402

from excnet.imageio import read_image, write_image  # noqa: E402
from excnet.pipeline import Restorer  # noqa: E402

STAGES = ("decode", "base", "estimate", "apply", "encode")
EXCNET = shutil.which("excnet", path=str(Path(sys.executable).parent)) or "excnet"


def _make_1mp(folder: Path, n: int) -> None:
    """n JPEGs of 864 x 1152 in folders of 50: 8 scenes at varied exposures (as 0.1 measured)."""
    base = [make_backlit(864, 1152, seed=s) for s in range(8)]
    for i in range(n):
        img = base[i % 8]
        if i >= 8:  # a different exposure, so no two files are the same image
            img = (img.astype("float32") * (0.8 + 0.4 * ((i * 37) % 100) / 100)).clip(
                0, 255).astype(img.dtype)
        write_image(folder / f"{i // 50:02d}" / f"img{i:04d}.jpg", img)


def photos(root: Path, mp: int, n: int, sampling: str = "4:2:0") -> Path:
    """The folder of n test photos of mp megapixels under root, made unless already there
    (12 MP: JPEGs with this chroma subsampling)."""
    folder = root / (f"{mp}mp-{n}" if mp == 1 else f"{mp}mp-{n}-{sampling.replace(':', '')}")
    if len(list(folder.rglob("*.jpg"))) != n:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        if mp == 1:
            _make_1mp(folder, n)
        else:
            make_files(folder, mp, n, first_seed=7000, sampling=sampling)
    return folder


def run_batch(src: Path, out: Path, argv: list[str]) -> dict:
    """One `excnet batch` process: wall seconds, peak tree RSS (MB), cpu seconds, records."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [EXCNET, "batch", str(src), str(out), *argv]
    start = time.perf_counter()
    proc = psutil.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = cpu = 0.0
    seen: dict[int, float] = {}
    while proc.poll() is None:
        try:
            tree = [proc, *proc.children(recursive=True)]
            rss = 0
            for p in tree:
                with p.oneshot():
                    rss += p.memory_info().rss
                    t = p.cpu_times()
                    seen[p.pid] = t.user + t.system
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.01)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"batch failed: {' '.join(cmd)}\n{proc.stderr.read().decode()}")
    cpu = max(sum(seen.values()), _children_cpu())
    records = [json.loads(line) for line in (out / "excnet-manifest.jsonl").open()]
    return {"wall": wall, "rss": peak / 2**20, "cpu": cpu, "records": records}


_cpu_before = 0.0


def _children_cpu() -> float:
    """CPU seconds of the finished children of this process since the previous call."""
    global _cpu_before
    t = os.times()
    total = t.children_user + t.children_system
    spent, _cpu_before = total - _cpu_before, total
    return spent


def measure(src: Path, work: Path, n: int, argv: list[str], repeats: int) -> dict:
    runs = [run_batch(src, work / "out", argv) for _ in range(repeats)]
    run = sorted(runs, key=lambda r: r["wall"])[len(runs) // 2]  # the median run
    cores = len(os.sched_getaffinity(0))
    busy = {s: sum(r["seconds"][s] for r in run["records"]) for s in STAGES}
    return {"wall": statistics.median(r["wall"] for r in runs), "rate": n / run["wall"],
            "rss": max(r["rss"] for r in runs), "cpu": run["cpu"] / (run["wall"] * cores),
            "util": {s: busy[s] / (run["wall"] * cores) for s in STAGES}}


def _iterations(paths: list[Path]) -> tuple[float, float]:
    """Mean iterations per image with a fresh network each time and with one warm network."""
    xs = [read_image(p).pixels for p in paths]
    cold = [Restorer("excnet").estimate(x)[0].iterations for x in xs]
    warm_restorer = Restorer("excnet")
    warm = [warm_restorer.estimate(x)[0].iterations for x in xs]
    return statistics.mean(cold), statistics.mean(warm)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 12], choices=(1, 12))
    ap.add_argument("--images", type=int, default=200, help="1 MP photos (default 200)")
    ap.add_argument("--images-12", type=int, default=24, help="12 MP photos (default 24)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3],
                    help="-j values of the local engine (default 1 2 3)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per row; the median is shown")
    ap.add_argument("--solver", default="direct", help="solver for the throughput runs")
    ap.add_argument("--engine", choices=("local", "ray"), default="local",
                    help="ray: the Ray engine against the local one at 12 MP (see above)")
    ap.add_argument("--photos", type=Path, default=None,
                    help="folder to keep the test photos in between runs (default: temporary)")
    ap.add_argument("--sampling", default="4:2:0", choices=sorted(SAMPLINGS),
                    help="chroma subsampling of the 12 MP JPEGs (default 4:2:0, as cameras)")
    ap.add_argument("--iteration-images", type=int, default=20,
                    help="images for the cold/warm iteration count (--solver excnet); 0 skips it")
    ap.add_argument("--one-run", nargs=3, metavar=("ENGINE", "SRC", "ADDRESS"),
                    help=argparse.SUPPRESS)  # compare_ray's runs
    opts = ap.parse_args()
    if opts.one_run:
        engine, src, address = opts.one_run
        one_run(engine, src, address, opts.solver)
        return
    if opts.engine == "ray":
        compare_ray(opts)
        return
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="excnet-batch-") as tmp:
        work = Path(tmp)
        root = opts.photos or work
        print(f"{cores} cores; load average before: {os.getloadavg()[0]:.1f}; solver "
              f"{opts.solver}; median of {opts.repeats} runs; whole command, start-up included\n")
        head = (f"{'MP':>3}{'photos':>7} {'engine':<8}{'-j':>3}{'wall s':>8}{'photos/s':>9}"
                f"{'vs -j 1':>8}{'peak MB':>8}{'cpu':>6}  "
                + " ".join(f"{s:>8}" for s in STAGES))
        print(head)
        print("-" * len(head))
        for mp in opts.sizes:
            n = opts.images if mp == 1 else opts.images_12
            src = photos(root, mp, n, opts.sampling)
            configs = [("local", j, ["-j", str(j)]) for j in opts.workers]
            base = None
            for engine, j, argv in configs:
                row = measure(src, work, n, [*argv, "--solver", opts.solver], opts.repeats)
                base = base or row["rate"]
                print(f"{mp:>3}{n:>7} {engine:<8}{j:>3}{row['wall']:>8.2f}{row['rate']:>9.2f}"
                      f"{row['rate'] / base:>7.2f}x{row['rss']:>8.0f}{row['cpu']:>6.0%}  "
                      + " ".join(f"{row['util'][s]:>8.0%}" for s in STAGES), flush=True)
        print(f"\nload average after: {os.getloadavg()[0]:.1f}")
        k = opts.iteration_images
        if k:
            paths = sorted(photos(root, 1, opts.images).rglob("*.jpg"))[:k]
            cold, warm = _iterations(paths)
            print(f"mean iterations per image (--solver excnet, {k} images of 1 MP): "
                  f"cold {cold:.1f}, warm {warm:.1f} ({cold / warm:.2f}x fewer warm)")


def one_run(engine: str, src: str, address: str | None, solver: str) -> None:
    """One batch in this (fresh) process, excnet's imports done first; prints a JSON line:
    seconds from the engine's call to its last record, Ray's start-up (`RayStats.startup`:
    importing Ray, joining the instance, workers ready and warm), seconds from the start (the
    call, or Ray's start-up) to the first record, and the steady rate (photos from the 2nd to
    the last record over their time)."""
    from excnet.batch import BatchConfig, default_workers, plan, run_local
    from excnet.manifest import DoneSet

    out = tempfile.mkdtemp(prefix="excnet-batch-out-")
    jobs = list(plan(src, out, DoneSet(iter(()))))
    config = BatchConfig(options={"solver": solver}, threads=1)
    stats = None
    if engine == "ray":
        from excnet.batch_ray import RayStats, run_ray

        stats = RayStats()
    start = time.perf_counter()
    records = (run_local(iter(jobs), config, default_workers()) if engine == "local"
               else run_ray(iter(jobs), config, address=address, stats=stats))
    times = []
    for rec in records:
        if rec["status"] != "ok":
            raise SystemExit(f"{engine}: {rec['error']}")
        times.append(time.perf_counter() - start)
    shutil.rmtree(out)
    startup = stats.startup if stats else 0.0
    print(json.dumps({"wall": times[-1], "startup": startup, "first": times[0] - startup,
                      "steady": (len(times) - 2) / (times[-1] - times[1])}))


def compare_ray(opts: argparse.Namespace) -> None:
    """The Ray engine against the local one on the same 12 MP photos, alternately, each run
    in a fresh process (`one_run`)."""
    import ray

    from excnet.batch_ray import connect

    cores = len(os.sched_getaffinity(0))
    n = opts.images_12
    with tempfile.TemporaryDirectory(prefix="excnet-batch-") as tmp:
        src = photos(opts.photos or Path(tmp), 12, n, opts.sampling)
        start = time.perf_counter()
        connect(None, num_cpus=cores)  # as `excnet batch --engine ray` starts it
        instance = time.perf_counter() - start
        address = ray.get_runtime_context().gcs_address
        print(f"{cores} cores; {n} photos of 12 MP ({opts.sampling}); solver {opts.solver}; "
              f"each run a fresh process; load average before: {os.getloadavg()[0]:.1f}")
        print(f"Ray's private local instance started in {instance:.1f} s (once)\n")
        print(f"{'run':>4} {'engine':<7}{'call s':>8}{'photos/s':>9}{'started':>9}"
              f"{'steady':>8}{'1st s':>7}{'start-up s':>11}")
        rows: dict[str, list[dict]] = {"local": [], "ray": []}
        try:
            for i in range(opts.repeats):
                for engine in ("local", "ray") if i % 2 == 0 else ("ray", "local"):
                    cmd = [sys.executable, __file__, "--one-run", engine, str(src), address,
                           "--solver", opts.solver]
                    row = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                                    text=True).stdout.splitlines()[-1])
                    row["rate"] = n / row["wall"]
                    row["started"] = n / (row["wall"] - row["startup"])
                    rows[engine].append(row)
                    up = f"{row['startup']:>11.2f}" if engine == "ray" else ""
                    print(f"{i + 1:>4} {engine:<7}{row['wall']:>8.2f}{row['rate']:>9.2f}"
                          f"{row['started']:>9.2f}{row['steady']:>8.2f}{row['first']:>7.2f}{up}",
                          flush=True)
        finally:
            ray.shutdown()

        def med(engine: str, key: str) -> float:
            return statistics.median(r[key] for r in rows[engine])

        print(f"\nmedians, Ray / local: once started {med('ray', 'started'):.2f} / "
              f"{med('local', 'started'):.2f} photos/s = "
              f"{med('ray', 'started') / med('local', 'started'):.0%}; steady "
              f"{med('ray', 'steady') / med('local', 'steady'):.0%}; whole call "
              f"{med('ray', 'rate') / med('local', 'rate'):.0%}; Ray's start-up "
              f"{med('ray', 'startup'):.2f} s per batch (importing Ray, joining, workers up "
              f"and warm); first record {med('ray', 'first'):.2f} s after start-up (local: "
              f"{med('local', 'first'):.2f} s after the call)")
        print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
