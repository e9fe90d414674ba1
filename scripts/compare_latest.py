"""What moved between the locked install and the newest releases (run by `make test-latest`).

Prints the packages whose version in this interpreter's environment differs from the locks,
and the largest difference, in output levels, between two folders of restored images with
the same names (the samples restored by the locked and by the newest install).

    python scripts/compare_latest.py LOCKED_DIR LATEST_DIR
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ("requirements.lock", "requirements-ray.lock", "requirements-dev.lock")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, str]:
    pins = {}
    for lock in LOCKS:
        for line in (ROOT / lock).read_text().splitlines():
            m = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
            if m:
                pins[_norm(m[1])] = m[2]
    return pins


def installed() -> dict[str, str]:
    out = subprocess.run([sys.executable, "-m", "pip", "freeze", "--all", "--exclude-editable"],
                         capture_output=True, text=True, check=True).stdout
    pairs = (line.partition("==") for line in out.splitlines())
    return {_norm(n): v for n, _, v in pairs if v and _norm(n) != "pip"}


def max_level_difference(a: Path, b: Path) -> tuple[int, int]:
    """(largest absolute difference over every pixel, images compared)."""
    from excnet.imageio import read_image

    worst, n = 0, 0
    for fa in sorted(p for p in a.rglob("*") if p.is_file()):
        fb = b / fa.relative_to(a)
        if not fb.is_file() or fa.suffix.lower() == ".jsonl":
            continue
        pa, pb = read_image(fa).pixels, read_image(fb).pixels
        if pa.shape != pb.shape:
            raise SystemExit(f"{fa.name}: shapes differ ({pa.shape} vs {pb.shape})")
        worst = max(worst, int(abs(pa.astype(int) - pb.astype(int)).max()))
        n += 1
    return worst, n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("locked_dir", type=Path)
    p.add_argument("latest_dir", type=Path)
    args = p.parse_args()
    pins, have = locked(), installed()
    moved = [f"{n} {pins[n]} -> {v}" for n, v in sorted(have.items()) if pins.get(n, v) != v]
    new = [f"{n} {have[n]} (not in the locks)" for n in sorted(have) if n not in pins]
    gone = [f"{n} {pins[n]} (no longer installed)" for n in sorted(pins) if n not in have]
    print(f"packages moved against the locks: {len(moved)}")
    for line in moved + new + gone:
        print(f"  {line}")
    worst, n = max_level_difference(args.locked_dir, args.latest_dir)
    print(f"restored samples: {n} images compared, largest difference {worst} levels")


if __name__ == "__main__":
    main()
