"""Pieces shared by the commands: curve options, JSON Lines records, progress, input discovery."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..curve import DEFAULT_HIGHLIGHT_SCALE, Curve
from ..pipeline import DEFAULT_SOLVER, SOLVERS, Restorer

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".heic", ".heif"}
OUTPUT_TAG = ".excnet"


class UsageError(Exception):
    """A wrong combination of arguments: reported in one line, exit status 2."""


def add_curve_options(p: argparse.ArgumentParser) -> None:
    """Options that choose the curve: estimated (solver settings) or given (manual / saved)."""
    g = p.add_argument_group("curve")
    g.add_argument("--solver", choices=SOLVERS, default=DEFAULT_SOLVER,
                   help=f"how phi is estimated (default {DEFAULT_SOLVER})")
    g.add_argument("--arch", choices=("small", "reference"), default="small",
                   help="network width for --solver excnet (default small)")
    g.add_argument("--max-iters", type=int, default=1000, metavar="N",
                   help="safety cap on training iterations per image (default 1000)")
    g.add_argument("--seed", type=int, default=0, help="network initialisation seed")
    g.add_argument("--strength", "-s", type=float, default=None,
                   help="scale both phi (default 1)")
    g.add_argument("--highlight-scale", type=float, default=None, metavar="H",
                   help=f"fraction of phi_h applied (default {DEFAULT_HIGHLIGHT_SCALE}, as the "
                        "reference)")
    g.add_argument("--phi-s", type=float, default=None, help="use this phi_s, skip estimation")
    g.add_argument("--phi-h", type=float, default=None, help="use this phi_h, skip estimation")
    g.add_argument("--params", type=Path, default=None, metavar="FILE",
                   help="apply the curve saved in FILE (JSON from `excnet estimate --save`)")


def given_curve(args: argparse.Namespace) -> Curve | None:
    """The curve fixed on the command line (--params or --phi-s/--phi-h), or None to estimate."""
    manual = args.phi_s is not None or args.phi_h is not None
    if manual and args.params is not None:
        raise UsageError("give either --params or --phi-s/--phi-h, not both")
    try:
        if args.params is not None:
            curve = Curve.load(args.params)
        elif manual:
            curve = Curve(args.phi_s or 0.0, args.phi_h or 0.0)
        else:
            return None
        return Curve(curve.phi_s, curve.phi_h,
                     curve.strength if args.strength is None else args.strength,
                     curve.highlight_scale if args.highlight_scale is None
                     else args.highlight_scale)
    except ValueError as exc:  # a bad file or a non-finite number
        raise UsageError(str(exc)) from None


def make_restorer(args: argparse.Namespace) -> Restorer:
    if args.max_iters < 1:
        raise UsageError("--max-iters must be at least 1")
    for option in ("strength", "highlight_scale"):
        value = getattr(args, option)
        if value is not None and not math.isfinite(value):
            raise UsageError(f"--{option.replace('_', '-')} must be a finite number")
    return Restorer(
        args.solver, arch=args.arch, max_iters=args.max_iters, seed=args.seed,
        strength=1.0 if args.strength is None else args.strength,
        highlight_scale=DEFAULT_HIGHLIGHT_SCALE if args.highlight_scale is None
        else args.highlight_scale,
    )


def finite_or_none(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else v


def print_json(record: dict) -> None:
    sys.stdout.write(json.dumps(record, allow_nan=False) + "\n")
    sys.stdout.flush()


def find_images(paths: Iterable[Path], skip_outputs: bool) -> Iterator[tuple[Path, Path | None]]:
    """Yield (file, root) for each input: a file itself (root None) or the images under a folder.

    Folder walks are sorted, and with skip_outputs leave out our own NAME.excnet.EXT results.
    Paths that do not exist are yielded too, so that they are reported as failures.
    """
    for p in paths:
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if not f.is_file() or f.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                if skip_outputs and f.stem.endswith(OUTPUT_TAG):
                    continue
                yield f, p
        else:
            yield p, None


@contextmanager
def progress(total: int, enabled: bool, label: str = "restoring"):
    """A progress bar on stderr when it is a terminal; a no-op advance function otherwise."""
    if not enabled or not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)
