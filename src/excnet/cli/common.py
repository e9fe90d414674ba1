"""Pieces shared by the commands: curve options, JSON Lines records, progress, input discovery."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ..defaults import (
    ARCHS,
    DEFAULT_SOLVER,
    DENOISE_MODES,
    FAITHFUL_HIGHLIGHT_SCALE,
    IMPROVED_HIGHLIGHT_SCALE,
    SOLVERS,
)
from ..imageio.formats import OUTPUT_TAG
from ..imageio.rawoptions import COLORSPACES, DEMOSAIC, EXPOSURE_RANGE, HIGHLIGHT_MODES, RawOptions

if TYPE_CHECKING:  # the parsers are built without NumPy; the commands import what they run
    from ..batch import Skipped
    from ..curve import Curve
    from ..pipeline import Restorer
    from ..tone import ToneOptions

class UsageError(Exception):
    """A wrong combination of arguments: reported in one line, exit status 2."""


def add_curve_options(p: argparse.ArgumentParser, default_solver: str = DEFAULT_SOLVER) -> None:
    """Options that choose the curve: estimated (solver settings) or given (manual / saved)."""
    g = p.add_argument_group("curve")
    g.add_argument("--solver", choices=SOLVERS, default=default_solver,
                   help=f"how phi is estimated (default {default_solver}; excnet is the paper's "
                        "CNN trained on the image, direct the exact minimiser it converges to)")
    g.add_argument("--arch", choices=ARCHS, default="small",
                   help="network width for --solver excnet (default small)")
    g.add_argument("--max-iters", type=int, default=1000, metavar="N",
                   help="safety cap on training iterations per image (default 1000)")
    g.add_argument("--seed", type=int, default=0, help="network initialisation seed")
    g.add_argument("--strength", "-s", type=float, default=None,
                   help="scale the correction: both phi and the adaptive exposure (default 1)")
    # adaptive default (issue 10): keep these together
    g.add_argument("--adapt", choices=("on", "off"), default=None,
                   help="adaptive default: lift dark frames by exposure, apply as much of the "
                        "curve as the photo looks back-lit, leave good and low-key photos "
                        "alone (default on; off with --faithful)")
    g.add_argument("--exposure", type=float, default=None, metavar="EV",
                   help="with --phi-s/--phi-h: the adaptive exposure to apply (as recorded)")
    g.add_argument("--amount", type=float, default=None, metavar="A",
                   help="with --phi-s/--phi-h: the adaptive fraction of phi (as recorded)")
    g.add_argument("--highlight-scale", type=float, default=None, metavar="H",
                   help=f"fraction of phi_h applied (default {IMPROVED_HIGHLIGHT_SCALE}; "
                        f"{FAITHFUL_HIGHLIGHT_SCALE} with --faithful, as the reference)")
    g.add_argument("--faithful", action="store_true",
                   help="render as the paper does (guided-filter eps 800, highlight scale 0.2, "
                        "curve not kept monotonic) instead of our measured improvements")
    g.add_argument("--phi-s", type=float, default=None, help="use this phi_s, skip estimation")
    g.add_argument("--phi-h", type=float, default=None, help="use this phi_h, skip estimation")
    g.add_argument("--params", type=Path, default=None, metavar="FILE",
                   help="apply the curve saved in FILE (JSON from `excnet estimate --save`)")
    g.add_argument("--denoise", choices=DENOISE_MODES, default=None,
                   help="clean the noise, JPEG blocks and 8-bit steps that lifting amplifies, "
                        "where it lifts (default auto; off with --faithful)")


def add_raw_options(p: argparse.ArgumentParser) -> None:
    """How camera RAW inputs are developed before restoration."""
    g = p.add_argument_group("camera RAW",
                             f"RAW files are developed by LibRaw: {DEMOSAIC} demosaic at full "
                             "resolution, camera white balance and colour matrix, no automatic "
                             "brightening, 16 bits")
    low, high = EXPOSURE_RANGE
    g.add_argument("--raw-exposure", type=float, default=0.0, metavar="EV",
                   help=f"exposure compensation in stops, {low:+g}..{high:+g} (default 0; "
                        "highlights are preserved)")
    g.add_argument("--colorspace", choices=tuple(COLORSPACES), default="srgb",
                   help="output colour space, its ICC profile embedded (default srgb)")
    g.add_argument("--highlights", choices=tuple(HIGHLIGHT_MODES), default="blend",
                   help="clipped highlights: blend rolls clipped skies off to neutral white "
                        "(default), reconstruct rebuilds them (keeps a little colour), clip cuts "
                        "every channel at white")


def raw_options(args: argparse.Namespace) -> RawOptions:
    """The RAW development settings from the command line (checked)."""
    try:
        return RawOptions(exposure=args.raw_exposure, colorspace=args.colorspace,
                          highlights=args.highlights)
    except ValueError as exc:
        raise UsageError(f"--raw-exposure: {exc}") from None


def given_curve(args: argparse.Namespace) -> Curve | None:
    """The curve fixed on the command line (--params or --phi-s/--phi-h), or None to estimate."""
    from dataclasses import replace

    from ..curve import Curve
    from ..tone import BothGiven
    from ..tone import given_curve as fixed

    try:
        saved = None if args.params is None else (lambda: Curve.load(args.params))
        curve = fixed(saved, args.phi_s, args.phi_h, tone_options(args), args.exposure,
                      args.amount)
        if curve is None:
            return None
        return replace(curve,
                       strength=curve.strength if args.strength is None else args.strength,
                       highlight_scale=curve.highlight_scale if args.highlight_scale is None
                       else args.highlight_scale)
    except BothGiven:
        raise UsageError("give either --params or --phi-s/--phi-h, not both") from None
    except ValueError as exc:  # a bad file or a non-finite number
        raise UsageError(str(exc)) from None


def tone_options(args: argparse.Namespace) -> ToneOptions:
    from ..tone import FAITHFUL, IMPROVED

    return FAITHFUL if args.faithful else IMPROVED


def restorer_options(args: argparse.Namespace) -> dict:
    """`Restorer` keyword arguments from the curve options (checked)."""
    if args.max_iters < 1:
        raise UsageError("--max-iters must be at least 1")
    for option in ("strength", "highlight_scale", "exposure", "amount"):
        value = getattr(args, option)
        if value is not None and not math.isfinite(value):
            raise UsageError(f"--{option.replace('_', '-')} must be a finite number")
    return {"solver": args.solver, "arch": args.arch, "max_iters": args.max_iters,
            "seed": args.seed, "strength": 1.0 if args.strength is None else args.strength,
            "highlight_scale": args.highlight_scale, "tone": tone_options(args),
            "adapt": None if args.adapt is None else args.adapt == "on",
            "denoise": args.denoise}


def make_restorer(args: argparse.Namespace) -> Restorer:
    from ..pipeline import Restorer

    return Restorer(**restorer_options(args))


def print_json(record: dict) -> None:
    sys.stdout.write(json.dumps(record, allow_nan=False) + "\n")
    sys.stdout.flush()


def find_images(paths: Iterable[Path], include_outputs: bool = False,
                skipped: Skipped | None = None) -> Iterator[tuple[Path, Path | None]]:
    """Yield (file, root) for each input: a file itself (root None) or the images under a folder.

    A folder is walked as `excnet batch` walks it (`batch.list_images`: sorted, hidden files
    and folders such as macOS's ._NAME left out, links to folders not followed, excnet's own
    NAME.excnet.EXT outputs beside their sources left out unless include_outputs and counted
    in skipped). Paths that do not exist are yielded, so that they are reported as failures.
    """
    from ..batch import list_images

    for p in paths:
        if p.is_dir():
            for rel in list_images(str(p), include_outputs=include_outputs, skipped=skipped):
                yield p.joinpath(*rel.split("/")), p
        else:
            yield p, None


def add_include_outputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--include-outputs", action="store_true",
                   help=f"in folders, also take excnet's earlier outputs (NAME{OUTPUT_TAG}.EXT "
                        "beside a NAME.* source), which are skipped by default")


@contextmanager
def progress(total: int, enabled: bool, label: str = "restoring") -> Iterator:
    """Done/total, rate and ETA on stderr when it is a terminal; yields the advance function
    (a no-op when there is no bar)."""
    if not enabled or not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            return Text("" if task.speed is None else f"{task.speed:.2f}/s")

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), Rate(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)
