"""Two versions of excnet timed alternately, so that a slow spell of a shared machine falls on
both alike: process start to exit of one `excnet restore` command per run.

    python benchmarks/alternate.py HEAD~1 HEAD PHOTO [--runs 7] [--suffix .heic] [-- EXTRA ARGS]
    python benchmarks/alternate.py HEAD~1 HEAD FOLDER [--runs 4] [-- -j 2]   # excnet batch
    python benchmarks/alternate.py HEAD~1 HEAD CLIP.mp4 [--runs 5]            # excnet video

Each REV (a git revision, or a folder holding an excnet `src/`) runs from its own source tree
(revisions are checked out into temporary git worktrees) with this virtual environment's
packages; the runs interleave A, B, A, B, ... Prints every wall time, the medians, and whether
the two outputs are byte-identical. A folder instead of a photo times `excnet batch FOLDER OUT`
(each run into a fresh OUT; the outputs compared file by file); a video (by its suffix) times
`excnet video CLIP -o OUT` and also prints frames per second (frames over the whole run, start
included: compare versions, not with `benchmarks/video.py`'s in-process figures).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The `excnet` program's own entry point (`run`; revisions before it have only `main`).
RUN = "import sys, excnet.cli as c; c.run() if hasattr(c, 'run') else sys.exit(c.main())"
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi"}


def frame_count(clip: Path) -> int:
    import av

    with av.open(str(clip)) as c:
        return sum(1 for packet in c.demux(c.streams.video[0]) if packet.size)


def source_tree(rev: str, scratch: Path) -> tuple[Path, bool]:
    """(the src/ folder of rev, whether a worktree was made for it)."""
    if (Path(rev) / "src" / "excnet").is_dir():
        return Path(rev) / "src", False
    tree = scratch / rev.replace("/", "_").replace("~", "-")
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), rev],
                   check=True)
    return tree / "src", True


def same_outputs(a: Path, b: Path) -> bool:
    """Whether two output files (or two batch output folders, file by file) are identical."""
    if not a.is_dir():
        return filecmp.cmp(a, b, shallow=False)
    names = sorted(p.name for p in a.iterdir() if p.suffix != ".jsonl")
    if names != sorted(p.name for p in b.iterdir() if p.suffix != ".jsonl"):
        return False
    return all(filecmp.cmp(a / n, b / n, shallow=False) for n in names)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("photo", type=Path)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--suffix", default=".jpg", help="output format of a photo (default .jpg)")
    ap.add_argument("extra", nargs="*", help="more `excnet restore` arguments (after --)")
    args, more = ap.parse_known_args()  # excnet's own options pass through
    args.extra = [a for a in [*args.extra, *more] if a != "--"]
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        made = []
        trees = {}
        try:
            for rev in (args.a, args.b):
                trees[rev], new = source_tree(rev, scratch)
                if new:
                    made.append(trees[rev].parent)
            times: dict[str, list[float]] = {rev: [] for rev in trees}
            video = args.photo.suffix.lower() in VIDEO_SUFFIXES
            suffix = "" if args.photo.is_dir() else args.photo.suffix if video else args.suffix
            outs = {rev: scratch / f"out-{i}{suffix}" for i, rev in enumerate(trees)}
            for _ in range(args.runs):
                for rev, src in trees.items():
                    if args.photo.is_dir():
                        shutil.rmtree(outs[rev], ignore_errors=True)
                        cmd = [sys.executable, "-c", RUN, "batch", str(args.photo),
                               str(outs[rev]), *args.extra]
                    else:
                        cmd = [sys.executable, "-c", RUN, "video" if video else "restore",
                               str(args.photo), "-o", str(outs[rev]), "--overwrite",
                               *args.extra]
                    t0 = time.perf_counter()
                    subprocess.run(cmd, check=True, env={"PYTHONPATH": str(src), "PATH": ""})
                    times[rev].append(time.perf_counter() - t0)
            frames = frame_count(args.photo) if video else 0
            for rev, ts in times.items():
                rate = f" ({frames / statistics.median(ts):.1f} fps)" if frames else ""
                print(f"{rev:>12s}: median {statistics.median(ts):.3f} s{rate}, min "
                      f"{min(ts):.3f} s  " + " ".join(f"{t:.3f}" for t in ts))
            same = same_outputs(*outs.values())
            print("outputs byte-identical" if same else "outputs differ")
        finally:
            for tree in made:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(tree)], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
