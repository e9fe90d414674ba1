"""The two solvers side by side: agreement of the CNN with the exact minimiser, and warm start.

Prints, for the bundled sample photos and for the frames of a slow pan over one back-lit scene:
phi from `solve_direct` and from the CNN trained at test time (small and reference networks),
the iterations used, and the mean iterations cold (a fresh network per image) versus warm (one
network carried through the set, in both orders).

    python benchmarks/solvers.py            # about two minutes on 2 cores
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from excnet.base import base_layer, network_input
from excnet.colour import luminance
from excnet.imageio import read_image
from excnet.solvers import NetworkSolver, solve_direct

ROOT = Path(__file__).resolve().parent.parent


def net_input(pixels: np.ndarray) -> np.ndarray:
    return network_input(base_layer(luminance(pixels)))


def pan(n: int = 10, step: int = 4) -> list[np.ndarray]:
    """Frames of a slow pan (step px per frame) across a sample photo, with sensor noise."""
    scene = read_image(ROOT / "examples" / "backlit_astronaut.jpg").pixels.astype(np.float64)
    rng = np.random.default_rng(0)
    size = scene.shape[0] - 40
    frames = []
    for k in range(n):
        crop = scene[20:20 + size, k * step: k * step + size] + rng.normal(0, 2.0, (size, size, 3))
        frames.append(np.clip(np.rint(crop), 0, 255).astype(np.uint8))
    return frames


def agreement(names: list[str], xs: list[np.ndarray], arch: str) -> None:
    print(f"\nCNN ({arch}) vs direct, cold (fresh network per image):")
    print(f"{'image':<28}{'direct phi_s':>13}{'phi_h':>8}{'CNN phi_s':>11}{'phi_h':>8}"
          f"{'|dphi|':>8}{'iters':>7}{'s':>7}")
    worst = 0.0
    for name, x in zip(names, xs, strict=True):
        d = solve_direct(x)
        t = time.perf_counter()
        c = NetworkSolver(arch).solve(x)
        err = max(abs(c.phi_s - d.phi_s), abs(c.phi_h - d.phi_h))
        worst = max(worst, err)
        print(f"{name:<28}{d.phi_s:>13.4f}{d.phi_h:>8.4f}{c.phi_s:>11.4f}{c.phi_h:>8.4f}"
              f"{err:>8.4f}{c.iterations:>7}{time.perf_counter() - t:>7.2f}")
    print(f"largest |dphi|: {worst:.4f}")


def warm_start(label: str, xs: list[np.ndarray]) -> None:
    cold = [NetworkSolver().solve(x) for x in xs]
    fwd = NetworkSolver()
    warm = [fwd.solve(x) for x in xs]
    rev = NetworkSolver()
    back = [rev.solve(x) for x in reversed(xs)][::-1]
    c = statistics.mean(e.iterations for e in cold)
    w = statistics.mean(e.iterations for e in warm)
    order = max(max(abs(a.phi_s - b.phi_s), abs(a.phi_h - b.phi_h))
                for a, b in zip(warm, back, strict=True))
    print(f"{label:<34} cold {c:6.1f}  warm {w:6.1f}  warm/cold {w / c:.2f}  "
          f"forward vs reversed |dphi| <= {order:.4f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-reference", action="store_true", help="skip the 8.3 M network")
    args = ap.parse_args()
    photos = sorted((ROOT / "examples").glob("*.jpg")) + [ROOT / "examples" / "backlit16.png"]
    names = [p.name for p in photos]
    xs = [net_input(read_image(p).pixels) for p in photos]
    agreement(names, xs, "small")
    if not args.no_reference:
        agreement(names[:2], xs[:2], "reference")
    print("\nwarm start, mean iterations per image (small network):")
    for step in (2, 4):
        warm_start(f"related: 10 frames of a {step} px pan", [net_input(f) for f in pan(step=step)])
    warm_start("unrelated: the sample photos", xs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
