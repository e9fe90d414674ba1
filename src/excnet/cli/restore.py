"""`excnet restore` and `excnet estimate`: photos in, restored photos or curve parameters out."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from ..batch import error_naming, new_record, restore_file
from ..curve import Curve
from ..imageio import ImageError, read_image
from ..pipeline import Restorer
from .common import (
    OUTPUT_TAG,
    UsageError,
    add_curve_options,
    find_images,
    given_curve,
    make_restorer,
    print_json,
    progress,
)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("restore", help="restore back-lit photos",
                       description="Restore back-lit photos (files or folders).")
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="OUT",
                   help="output file (one input file) or folder (mirrors input folders); "
                        f"default: NAME{OUTPUT_TAG}.EXT beside each input")
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP/HEIC quality (default 95)")
    p.add_argument("--overwrite", action="store_true",
                   help="allow an output to replace an input file")
    p.add_argument("--json", action="store_true", help="print one JSON record per input")
    add_curve_options(p)
    p.set_defaults(run=run_restore)

    e = sub.add_parser("estimate", help="estimate curve parameters without writing images",
                       description="Estimate phi for photos; save one curve for a series.")
    e.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    e.add_argument("--save", type=Path, default=None, metavar="FILE",
                   help="write the curve (the median phi over all inputs) as JSON to FILE")
    e.add_argument("--json", action="store_true", help="print one JSON record per input")
    add_curve_options(e)
    e.set_defaults(run=run_estimate)


def _output_path(src: Path, root: Path | None, out: Path | None, single_file: bool,
                 one_folder: bool) -> Path:
    """Where src goes: beside it, at OUT, or mirrored under OUT (one input folder's contents go
    straight into OUT; with several inputs each folder keeps its name under OUT)."""
    if out is None:
        return src.with_name(f"{src.stem}{OUTPUT_TAG}{src.suffix}")
    if single_file:
        return out
    if root is None:
        return out / src.name
    rel = src.relative_to(root)
    return out / rel if one_folder else out / root.resolve().name / rel


def run_restore(args: argparse.Namespace) -> int:
    if args.quality < 1 or args.quality > 100:
        raise UsageError("--quality must be between 1 and 100")
    curve = given_curve(args)
    restorer = make_restorer(args)
    jobs = list(find_images(args.inputs, skip_outputs=args.output is None))
    single_file = (len(args.inputs) == 1 and len(jobs) == 1 and jobs[0][1] is None
                   and args.output is not None and not args.output.is_dir())
    one_folder = len(args.inputs) == 1 and args.inputs[0].is_dir()
    inputs = {os.path.realpath(src) for src, _ in jobs}
    written: set[str] = set()
    empty = _empty_folders(args.inputs, jobs)
    failures = list(empty)
    with progress(len(jobs), enabled=not args.json) as advance:
        for src, root in jobs:
            dst = _output_path(src, root, args.output, single_file, one_folder)
            rec = _restore_one(restorer, src, dst, curve, args, inputs, written)
            if rec["status"] != "ok":
                failures.append(rec["error"])
                print(f"excnet: {rec['error']}", file=sys.stderr)
            if args.json:
                print_json(rec)
            advance()
    return _summary("restored", len(jobs) + len(empty), failures, args.json)


def _empty_folders(inputs: list[Path], jobs: list[tuple[Path, Path | None]]) -> list[str]:
    """One error, printed now, per input folder that holds no image file."""
    used = {root for _, root in jobs}
    errors = [f"{p}: no image files found in this folder" for p in inputs
              if p.is_dir() and p not in used]
    for e in errors:
        print(f"excnet: {e}", file=sys.stderr)
    return errors


def _restore_one(restorer: Restorer, src: Path, dst: Path, curve: Curve | None,
                 args: argparse.Namespace, inputs: set[str], written: set[str]) -> dict:
    """Restore src to dst, unless dst is an input (without --overwrite) or an earlier output."""
    target = os.path.realpath(dst)
    error = None
    if target in inputs and not args.overwrite:
        error = f"{dst}: output would replace an input (use --overwrite)"
    elif target in written:
        error = f"{src}: output {dst} would replace the output of another input of this run"
    if error is not None:
        rec = new_record(src, dst)
        rec["error"] = error
        return rec
    rec = restore_file(restorer, src, dst, curve, quality=args.quality)
    if rec["status"] == "ok":
        written.add(target)
    return rec


def _summary(verb: str, total: int, failures: list[str], quiet: bool) -> int:
    """Exit status; with several inputs, a count of failures and each one again at the end
    (each was printed as it happened; one input's single line is enough)."""
    if failures:
        if total > 1:
            print(f"excnet: {verb} {total - len(failures)} of {total}; "
                  f"{len(failures)} failed:", file=sys.stderr)
            for f in failures:
                print(f"  {f}", file=sys.stderr)
        return 1
    if total == 0:
        print("excnet: no image files found", file=sys.stderr)
        return 1
    if not quiet and sys.stderr.isatty():
        print(f"excnet: {verb} {total} file{'s' if total != 1 else ''}", file=sys.stderr)
    return 0


def run_estimate(args: argparse.Namespace) -> int:
    if given_curve(args) is not None:
        raise UsageError("estimate computes phi; --params/--phi-s/--phi-h/--exposure make no "
                         "sense here")
    restorer = make_restorer(args)
    jobs = list(find_images(args.inputs, skip_outputs=True))
    empty = _empty_folders(args.inputs, jobs)
    failures = list(empty)
    curves: list[Curve] = []
    with progress(len(jobs), enabled=not args.json, label="estimating") as advance:
        for src, _ in jobs:
            rec = new_record(src, None)
            t0 = time.perf_counter()
            try:
                img = read_image(src)
                (curve, est), _ = restorer.estimate_curve(img.pixels)
            except (ImageError, ValueError, OSError) as exc:
                rec["error"] = error_naming(str(src), str(exc))
                failures.append(rec["error"])
                print(f"excnet: {rec['error']}", file=sys.stderr)
            else:
                curves.append(curve)
                rec.update(status="ok", phi_s=est.phi_s, phi_h=est.phi_h,
                           exposure=curve.exposure, amount=curve.amount,
                           iterations=est.iterations, loss=est.loss,
                           seconds={"total": time.perf_counter() - t0})
                if not args.json:
                    print(f"{src}\tphi_s={est.phi_s:.4f}\tphi_h={est.phi_h:.4f}\t"
                          f"iterations={est.iterations}")
            if args.json:
                print_json(rec)
            advance()
    if args.save is not None and curves:
        def median(name: str) -> float:
            return statistics.median(getattr(c, name) for c in curves)
        replace(curves[0], phi_s=median("phi_s"), phi_h=median("phi_h"),
                exposure=median("exposure"), amount=median("amount")).save(args.save)
    return _summary("estimated", len(jobs) + len(empty), failures, args.json)
