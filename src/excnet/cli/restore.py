"""`excnet restore` and `excnet estimate`: photos in, restored photos or curve parameters out."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..imageio.formats import ImageError, format_from_path, output_name, output_suffix
from .common import (
    OUTPUT_TAG,
    UsageError,
    add_curve_options,
    add_include_outputs,
    add_raw_options,
    find_images,
    given_curve,
    make_restorer,
    print_json,
    progress,
    raw_options,
    restorer_options,
)

if TYPE_CHECKING:
    from ..curve import Curve
    from ..imageio import ImageFile, RawOptions

#: The input or output `-`: standard input or output; their names in messages and records.
STDIO = Path("-")
STDIN_NAME, STDOUT_NAME = "<stdin>", "<stdout>"
#: Formats `--format` can choose for standard output.
STDOUT_FORMATS = ("jpeg", "png", "tiff", "webp", "heic")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("restore", help="restore back-lit photos",
                       description="Restore back-lit photos (files or folders).")
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                   help="photos or folders; - reads one photo from standard input")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="OUT",
                   help="output file (one input file) or folder (mirrors input folders); "
                        "- writes to standard output; "
                        f"default: NAME{OUTPUT_TAG}.EXT beside each input (.tif for RAW), "
                        "standard output for standard input")
    p.add_argument("--format", choices=STDOUT_FORMATS, default=None,
                   help="format written to standard output (default: the input's; TIFF for "
                        "RAW); a file's format comes from its suffix")
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP/HEIC quality (default 95)")
    p.add_argument("--overwrite", action="store_true",
                   help="allow an output to replace an input file")
    add_include_outputs(p)
    p.add_argument("--json", action="store_true", help="print one JSON record per input")
    p.add_argument("--workers", "-j", type=int, default=None, metavar="N",
                   help="files restored at once, in threads (default: one per core; 1 with "
                        "--solver excnet, whose network learns from one image to the next)")
    add_curve_options(p)
    add_raw_options(p)
    p.set_defaults(run=run_restore)

    e = sub.add_parser("estimate", help="estimate curve parameters without writing images",
                       description="Estimate phi for photos; save one curve for a series.")
    e.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                   help="photos or folders; - reads one photo from standard input")
    e.add_argument("--save", type=Path, default=None, metavar="FILE",
                   help="write the curve (the median phi over all inputs) as JSON to FILE")
    e.add_argument("--json", action="store_true", help="print one JSON record per input")
    add_include_outputs(e)
    add_curve_options(e)
    add_raw_options(e)
    e.set_defaults(run=run_estimate)


def _output_path(src: Path, root: Path | None, out: Path | None, single_file: bool,
                 one_folder: bool) -> Path:
    """Where src goes: beside it, at OUT, or mirrored under OUT (one input folder's contents go
    straight into OUT; with several inputs each folder keeps its name under OUT). A RAW file
    becomes a TIFF."""
    if out is None:
        return src.with_name(f"{src.stem}{OUTPUT_TAG}{output_suffix(src)}")
    if single_file:
        return out
    if root is None:
        return out / output_name(src.name)
    rel = src.relative_to(root).with_name(output_name(src.name))
    return out / rel if one_folder else out / root.resolve().name / rel


def run_restore(args: argparse.Namespace) -> int:
    if args.quality < 1 or args.quality > 100:
        raise UsageError("--quality must be between 1 and 100")
    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    raw = raw_options(args)
    to_stdout = args.output == STDIO or (args.output is None and STDIO in args.inputs)
    if args.format is not None and not to_stdout:
        raise UsageError("--format is for standard output (-o -); a file's format comes from "
                         "its suffix")
    if STDIO in args.inputs or to_stdout:
        return _restore_stdio(args, raw, to_stdout)
    from ..batch import Skipped

    skipped = Skipped()
    jobs = list(find_images(args.inputs, args.include_outputs, skipped))
    skipped.note()
    first = _read_ahead(jobs[0][0], raw) if jobs else None

    from ..batch import compute_slots, cores_per_file, default_workers, new_record, restore_file
    from ..conveyor import convey
    from ..pipeline import Restorer

    curve = given_curve(args)
    options = restorer_options(args)
    single_file = (len(args.inputs) == 1 and len(jobs) == 1 and jobs[0][1] is None
                   and args.output is not None and not args.output.is_dir())
    if single_file:
        try:
            format_from_path(args.output)
        except ImageError as exc:  # before any work: the photo could not be written
            raise UsageError(str(exc)) from None
    one_folder = len(args.inputs) == 1 and args.inputs[0].is_dir()
    empty = _empty_folders(args.inputs, jobs)
    failures = list(empty)
    workers = args.workers or (1 if args.solver == "excnet" else default_workers())
    slots, threads = compute_slots(workers, len(jobs))
    cores = cores_per_file(min(workers, len(jobs)))
    targets = _targets(jobs, args, single_file, one_folder)

    def make_step():
        restorer = Restorer(**options)

        def step(target: tuple[Path, Path, str | None]) -> dict:
            src, dst, refused = target
            if refused is None:
                ahead = first if src == jobs[0][0] else None
                return restore_file(restorer, src, dst, curve, quality=args.quality, raw=raw,
                                    compute=slots, image=ahead, cores=cores)
            rec = new_record(src, dst)
            rec["error"] = refused
            return rec
        return step

    with progress(len(jobs), enabled=not args.json) as advance:
        for rec in convey(targets, make_step, threads, ordered=True):
            if rec["status"] != "ok":
                failures.append(rec["error"])
                print(f"excnet: {rec['error']}", file=sys.stderr)
            if args.json:
                print_json(rec)
            advance()
    return _summary("restored", len(jobs) + len(empty), failures, args.json)


def _restore_stdio(args: argparse.Namespace, raw: RawOptions, to_stdout: bool) -> int:
    """One photo through standard input and/or output (`-`), as a filter in a pipeline:
    `cat a.jpg | excnet restore - > b.jpg`. The image is written in one piece once it is
    encoded; bad input gets the one-line error and exit status 1, as for files."""
    if len(args.inputs) != 1:
        raise UsageError("standard input or output (-) takes exactly one input")
    src = args.inputs[0]
    if to_stdout and args.json:
        raise UsageError("--json prints to standard output, where the image goes; give -o FILE")
    if to_stdout and sys.stdout.isatty():
        raise UsageError("refusing to write image data to a terminal: redirect standard "
                         "output or give -o FILE")
    name = STDIN_NAME if src == STDIO else str(src)
    dst = STDOUT_NAME if to_stdout else args.output
    from ..batch import (
        cores_per_file,
        encode_file,
        error_naming,
        finish_record,
        new_record,
        store_file,
    )
    from ..imageio import ImageError, encode_image
    from ..imageio.formats import default_output_format

    rec = new_record(name, dst)
    try:
        t0 = time.perf_counter()
        img = _read_input(src, raw)
        t1 = time.perf_counter()
        cores = cores_per_file(1)
        res = make_restorer(args).restore(img.pixels, given_curve(args), in_place=True,
                                          threads=cores)
        t2 = time.perf_counter()
        if to_stdout:
            _write_stdout(encode_image(res.image, args.format or default_output_format(
                img.format), like=img, quality=args.quality, threads=cores))
        else:
            store_file(str(dst), encode_file(str(dst), res.image, img, args.quality, cores))
        t3 = time.perf_counter()
    except (ImageError, ValueError, OSError) as exc:
        rec["error"] = error_naming(name, str(exc))
        print(f"excnet: {rec['error']}", file=sys.stderr)
        if args.json:
            print_json(rec)
        return 1
    if args.json:
        print_json(finish_record(rec, res, decode=t1 - t0, encode=t3 - t2, total=t3 - t0))
    return 0


def _read_input(src: Path, raw: RawOptions) -> ImageFile:
    """The photo at src, or the one on standard input for `-`."""
    from ..imageio import decode_image, read_image

    if src == STDIO:
        return decode_image(sys.stdin.buffer.read(), name=STDIN_NAME, raw=raw)
    return read_image(src, raw=raw)


def _write_stdout(data: bytes) -> None:
    """data to standard output; OSError with one clear line if the reader has gone (then
    standard output is pointed at /dev/null, so that the exit has nothing left to flush)."""
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise OSError("standard output was closed before the image was written") from None


def _read_ahead(src: Path, raw: RawOptions) -> Future[ImageFile]:
    """Start decoding `src` on a thread of its own, now: the restorer's modules then load
    (0.2 s of imports) while the file decodes, much of which runs without the GIL. The
    process keeps freed memory first (`keep_freed_memory`), so that the decoder's buffers
    are reused by the restoration instead of page-faulted anew."""
    from ..memory import keep_freed_memory

    keep_freed_memory()
    future: Future[ImageFile] = Future()

    def read() -> None:
        try:
            from ..imageio import read_image

            future.set_result(read_image(src, raw=raw))
        except BaseException as exc:  # noqa: BLE001 - handed to restore_file, which judges it
            future.set_exception(exc)

    threading.Thread(target=read, name="excnet-read-ahead", daemon=True).start()
    return future


def _targets(jobs: list[tuple[Path, Path | None]], args: argparse.Namespace, single_file: bool,
             one_folder: bool) -> Iterator[tuple[Path, Path, str | None]]:
    """(source, output, None) for each job, or a refusal instead of None when the output is
    an input (without --overwrite) or the output of an earlier input of this run."""
    inputs = {os.path.realpath(src) for src, _ in jobs}
    claimed: set[str] = set()
    for src, root in jobs:
        dst = _output_path(src, root, args.output, single_file, one_folder)
        target = os.path.realpath(dst)
        if target in inputs and not args.overwrite:
            yield src, dst, f"{dst}: output would replace an input (use --overwrite)"
        elif target in claimed:
            yield src, dst, f"{src}: output {dst} would replace the output of another input " \
                            "of this run"
        else:
            claimed.add(target)
            yield src, dst, None


def _empty_folders(inputs: list[Path], jobs: list[tuple[Path, Path | None]]) -> list[str]:
    """One error, printed now, per input folder that holds no image file."""
    used = {root for _, root in jobs}
    errors = [f"{p}: no image files found in this folder" for p in inputs
              if p.is_dir() and p not in used]
    for e in errors:
        print(f"excnet: {e}", file=sys.stderr)
    return errors


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
    from ..batch import Skipped, error_naming, new_record
    from ..imageio import ImageError

    if given_curve(args) is not None:
        raise UsageError("estimate computes phi; --params/--phi-s/--phi-h/--exposure make no "
                         "sense here")
    raw = raw_options(args)
    restorer = make_restorer(args)
    skipped = Skipped()
    jobs = list(find_images(args.inputs, args.include_outputs, skipped))
    skipped.note()
    empty = _empty_folders(args.inputs, jobs)
    failures = list(empty)
    curves: list[Curve] = []
    with progress(len(jobs), enabled=not args.json, label="estimating") as advance:
        for src, _ in jobs:
            name = STDIN_NAME if src == STDIO else src
            rec = new_record(name, None)
            t0 = time.perf_counter()
            try:
                img = _read_input(src, raw)
                (curve, est), _ = restorer.estimate_curve(img.pixels)
            except (ImageError, ValueError, OSError) as exc:
                rec["error"] = error_naming(str(name), str(exc))
                failures.append(rec["error"])
                print(f"excnet: {rec['error']}", file=sys.stderr)
            else:
                curves.append(curve)
                rec.update(status="ok", phi_s=est.phi_s, phi_h=est.phi_h,
                           exposure=curve.exposure, amount=curve.amount,
                           iterations=est.iterations, loss=est.loss,
                           seconds={"total": time.perf_counter() - t0})
                if not args.json:
                    print(f"{name}\tphi_s={est.phi_s:.4f}\tphi_h={est.phi_h:.4f}\t"
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
