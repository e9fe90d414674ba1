"""Two versions of excnet timed alternately, so that a slow spell of a shared machine falls on
both alike: process start to exit of one `excnet restore` command per run.

    python benchmarks/alternate.py HEAD~1 HEAD PHOTO [--runs 7] [-- EXTRA EXCNET ARGS]

Each REV (a git revision, or a folder holding an excnet `src/`) runs from its own source tree
(revisions are checked out into temporary git worktrees) with this virtual environment's
packages; the runs interleave A, B, A, B, ... Prints every wall time, the medians, and whether
the two outputs are byte-identical.
"""

from __future__ import annotations

import argparse
import filecmp
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The `excnet` program's own entry point (`run`; revisions before it have only `main`).
RUN = "import sys, excnet.cli as c; c.run() if hasattr(c, 'run') else sys.exit(c.main())"


def source_tree(rev: str, scratch: Path) -> tuple[Path, bool]:
    """(the src/ folder of rev, whether a worktree was made for it)."""
    if (Path(rev) / "src" / "excnet").is_dir():
        return Path(rev) / "src", False
    tree = scratch / rev.replace("/", "_").replace("~", "-")
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), rev],
                   check=True)
    return tree / "src", True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("photo", type=Path)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("extra", nargs="*", help="more `excnet restore` arguments (after --)")
    args = ap.parse_args()
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
            outs = {rev: scratch / f"out-{i}.jpg" for i, rev in enumerate(trees)}
            for _ in range(args.runs):
                for rev, src in trees.items():
                    cmd = [sys.executable, "-c", RUN, "restore", str(args.photo), "-o",
                           str(outs[rev]), "--overwrite", *args.extra]
                    t0 = time.perf_counter()
                    subprocess.run(cmd, check=True, env={"PYTHONPATH": str(src), "PATH": ""})
                    times[rev].append(time.perf_counter() - t0)
            for rev, ts in times.items():
                print(f"{rev:>12s}: median {statistics.median(ts):.3f} s, min {min(ts):.3f} s  "
                      + " ".join(f"{t:.3f}" for t in ts))
            same = filecmp.cmp(*outs.values(), shallow=False)
            print("outputs byte-identical" if same else "outputs differ")
        finally:
            for tree in made:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(tree)], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
