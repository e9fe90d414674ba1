"""Restoring a folder tree into a mirror tree: file jobs, the per-file step, the local engine.

A batch is a stream of jobs (source, destination), each turned into one record with the
fields of `excnet restore --json`. Sources and destinations are local paths or fsspec URIs
(``s3://bucket/prefix/...``). The local engine restores several files at once in threads of
this process (`excnet.conveyor`), each thread keeping one warm `Restorer` for all the files it
is given (warm start: later images converge in fewer iterations). `excnet.batch_ray` runs the
same jobs on a Ray cluster.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .conveyor import convey
from .curve import Curve
from .imageio import (
    ImageError,
    ImageFile,
    RawOptions,
    decode_image,
    encode_image,
    format_from_path,
    read_image,
    write_bytes,
)
from .imageio.formats import IMAGE_SUFFIXES, OUTPUT_TAG, output_name
from .manifest import DoneSet, finite_or_none
from .pipeline import Restorer, Result

# The hidden temp files of imageio's atomic writes: .NAME.XXXXXXXX.tmp
_TEMP_FILE = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")

Job = tuple[str, str]
#: The largest object S3 takes in one PUT.
_S3_PUT_LIMIT = 5 * 2**30


@dataclass(frozen=True)
class BatchConfig:
    """What every worker needs: Restorer keyword options, a fixed curve (or None to estimate),
    the output quality, fsspec storage options, the torch/OpenCV thread count (None: leave
    the libraries' defaults) and how camera RAW files are developed."""

    options: dict = field(default_factory=dict)
    curve: Curve | None = None
    quality: int = 95
    storage_options: dict = field(default_factory=dict)
    threads: int | None = None
    raw: RawOptions = field(default_factory=RawOptions)


def is_uri(path: str) -> bool:
    """Whether a path is an fsspec URL (``s3://...``, ``gs://...``) rather than a local path."""
    return "://" in path and not path.startswith("file://")


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def set_threads(n: int, torch: bool = False) -> None:
    """Limit OpenCV (and torch, when the network solver is used) to n threads, so that
    workers do not oversubscribe the cores."""
    import cv2

    cv2.setNumThreads(max(1, n))
    if torch:
        import torch as _torch

        _torch.set_num_threads(max(1, n))


def _filesystem(url: str, storage_options: dict):
    import fsspec

    return fsspec.core.url_to_fs(url, **storage_options)


@dataclass
class Skipped:
    """How many of excnet's own earlier outputs a folder walk left out (`list_images`)."""

    outputs: int = 0

    def note(self, quiet: bool = False) -> None:
        """One line on stderr when any were left out (nothing when quiet)."""
        if self.outputs and not quiet:
            n = self.outputs
            print(f"excnet: skipped {n} earlier excnet output{'s' if n != 1 else ''} "
                  f"(NAME{OUTPUT_TAG}.EXT beside its source; --include-outputs takes them)",
                  file=sys.stderr)


def is_earlier_output(name: str, stems: set[str]) -> bool:
    """Whether file `name` is excnet's output NAME.excnet.EXT beside its source NAME.* (any
    format: a RAW file, a video, another image), given the stems of its folder's files."""
    stem = os.path.splitext(name)[0]
    return stem.endswith(OUTPUT_TAG) and stem[:-len(OUTPUT_TAG)] in stems


def list_images(root: str, storage_options: dict | None = None, include_outputs: bool = False,
                skipped: Skipped | None = None) -> Iterator[str]:
    """Paths of the image files under root, relative to it with "/" separators, sorted.

    Hidden files and folders (names starting with ".") are left out, and so are excnet's own
    earlier outputs beside their sources (`is_earlier_output`) unless include_outputs; those
    are counted in `skipped`. Streams: a huge tree is never held in memory (one folder's
    names at a time).
    """
    if is_uri(root):
        fs, base = _filesystem(root, storage_options or {})
        base = base.rstrip("/")
        walk = fs.walk(base)
        strip = len(base) + 1
    else:
        base = os.path.normpath(root)
        walk = os.walk(base)
        strip = len(base) + 1
    for folder, dirs, files in walk:
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = folder[strip:].replace(os.sep, "/") if len(folder) > len(base) else ""
        visible = sorted(name for name in files if not name.startswith("."))
        stems = set() if include_outputs else {os.path.splitext(n)[0] for n in visible}
        for name in visible:
            if os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
                continue
            if stems and is_earlier_output(name, stems):
                if skipped is not None:
                    skipped.outputs += 1
                continue
            yield f"{rel}/{name}" if rel else name


def join(root: str, rel: str) -> str:
    """root + "/" + rel for URIs, the local path join otherwise."""
    if is_uri(root):
        return f"{root.rstrip('/')}/{rel}"
    return os.path.join(root, *rel.split("/"))


def plan(src_root: str, dst_root: str, done: DoneSet, storage_options: dict | None = None,
         conflicts: list[dict] | None = None, include_outputs: bool = False) -> Iterator[Job]:
    """The jobs still to do: each image under src_root, mirrored under dst_root, not in done.

    A RAW file's mirror is NAME.tif. A file whose mirror another input of its folder already
    claims (IMG.NEF and IMG.tif, or IMG.NEF and IMG.DNG; names compared ignoring case) gets
    no job: an error record for it is appended to ``conflicts``. excnet's earlier outputs
    beside their sources are left out unless include_outputs (`list_images`).
    """
    claimed: dict[str, str] = {}  # mirror name (lower case) → input, for the current folder
    folder = None
    for rel in list_images(src_root, storage_options, include_outputs):
        parent, _, name = rel.rpartition("/")
        if parent != folder:
            folder, claimed = parent, {}
        out_rel = f"{parent}/{output_name(name)}" if parent else output_name(name)
        src, dst = join(src_root, rel), join(dst_root, out_rel)
        first = claimed.setdefault(out_rel.lower(), src)
        if first != src:
            if conflicts is not None:
                rec = new_record(src, dst)
                rec["error"] = f"{src}: output {dst} is already the output of {first} (skipped)"
                conflicts.append(rec)
        elif src not in done:
            yield src, dst


def sweep_temp_files(root: str | os.PathLike[str]) -> int:
    """Remove the hidden temp files a killed run left in a local output tree; returns how many.

    Outputs are written to a temp file and renamed, so a crash can leave a temp file behind but
    never a half-written output.
    """
    removed = 0
    for folder, _, files in os.walk(root):
        for name in files:
            if _TEMP_FILE.match(name):
                try:
                    os.unlink(os.path.join(folder, name))
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


def sweep_leftovers(root: str, storage_options: dict | None = None) -> int:
    """Remove what killed writes left under an output root; returns how many.

    A local tree: the hidden temp files of its atomic writes (`sweep_temp_files`). An S3
    prefix: its unfinished multipart uploads (only outputs over 5 GB are sent in parts; a
    smaller one is a single PUT, whole or absent). Other stores: nothing to remove.
    """
    if not is_uri(root):
        return sweep_temp_files(root) if os.path.isdir(root) else 0
    fs, path = _filesystem(root, storage_options or {})
    if not _is_s3(fs):
        return 0
    bucket, _, prefix = path.strip("/").partition("/")
    prefix = f"{prefix}/" if prefix else ""
    removed, marker = 0, {}
    while True:
        page = fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix, **marker)
        for upload in page.get("Uploads", []):
            fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=upload["Key"],
                       UploadId=upload["UploadId"])
            removed += 1
        if not page.get("IsTruncated"):
            return removed
        marker = {"KeyMarker": page["NextKeyMarker"],
                  "UploadIdMarker": page["NextUploadIdMarker"]}


def _is_s3(fs) -> bool:
    protocol = fs.protocol
    return "s3" in ((protocol,) if isinstance(protocol, str) else protocol)


def read_file(src: str, storage_options: dict | None = None,
              raw: RawOptions | None = None) -> ImageFile:
    """Read a local file or fsspec URI with excnet's decoder (metadata and 16 bits kept)."""
    if not is_uri(src):
        return read_image(src, raw=raw)
    fs, path = _filesystem(src, storage_options or {})
    try:
        data = fs.cat_file(path)
    except FileNotFoundError:
        raise ImageError(f"{src}: missing file (no such object)") from None
    except OSError as exc:
        raise ImageError(f"{src}: cannot read ({exc})") from None
    return decode_image(data, name=src, raw=raw)


def encode_file(dst: str, pixels: np.ndarray, like: ImageFile, quality: int = 95,
                threads: int = 1) -> bytes:
    """The file's bytes in dst's format (from its suffix), metadata carried from like;
    a JPEG encoded on `threads` cores."""
    fmt = format_from_path(dst)  # its error names the file already
    try:
        return encode_image(pixels, fmt, like=like, quality=quality, threads=threads)
    except ImageError as exc:  # named like write_image's errors: by the file's name
        raise ImageError(f"{_file_name(dst)}: {exc}") from None


def store_file(dst: str, data: bytes, overwrite: bool = True,
               storage_options: dict | None = None) -> None:
    """Write encoded bytes atomically: a temp file renamed into place locally, a single PUT to
    object stores (an object appears whole or not at all; on S3 up to 5 GB)."""
    if not is_uri(dst):
        write_bytes(dst, data, overwrite=overwrite)
        return
    fs, path = _filesystem(dst, storage_options or {})
    if not overwrite and fs.exists(path):
        raise ImageError(f"{dst}: file exists (not overwriting)")
    # s3fs sends over 100 MB in parts, which a killed writer leaves unfinished: one PUT
    # (up to S3's 5 GB) appears whole or not at all.
    whole = {"chunksize": _S3_PUT_LIMIT} if _is_s3(fs) else {}
    try:
        fs.pipe_file(path, data, **whole)
    except OSError as exc:
        raise ImageError(f"{dst}: cannot write ({exc})") from None


def new_record(src: str | os.PathLike[str], dst: str | os.PathLike[str] | None) -> dict:
    """A record in the `restore --json` layout, marked as an error until filled in."""
    return {"input": str(src), "output": None if dst is None else str(dst), "status": "error",
            "error": None, "phi_s": None, "phi_h": None, "iterations": None, "loss": None,
            "exposure": None, "amount": None, "needs_correction": None, "mean_gain": None,
            "seconds": None, "denoise": None}


def _file_name(path: str) -> str:
    """The last part of a local path or URI (what imageio's messages name a file by)."""
    return path.rsplit("/", 1)[-1].rsplit(os.sep, 1)[-1]


def error_naming(src: str, message: str) -> str:
    """The message with the full source path in front (imageio names only the file)."""
    name = _file_name(src)
    if message.startswith(f"{name}:"):
        return src + message[len(name):]
    return message if src in message else f"{src}: {message}"


def restore_file(restorer: Restorer, src: str | os.PathLike[str], dst: str | os.PathLike[str],
                 curve: Curve | None = None, quality: int = 95, overwrite: bool = True,
                 storage_options: dict | None = None, raw: RawOptions | None = None,
                 compute: AbstractContextManager | None = None,
                 image: Future[ImageFile] | None = None, cores: int = 1) -> dict:
    """Read src, restore it (estimating the curve unless given), write dst; return the record.

    Bad input is recorded (status "error", a one-line message naming the file), not raised.
    compute: held from reading to encoding and released for the write, which mostly waits for
    the disk (a `threading.Semaphore` shared by more threads than it admits: one file is
    written while the others compute). image: src already being decoded (the CLI starts its
    first file while it loads the restorer); "decode" then counts the wait for it.
    cores: how many cores the restoration and the encoding (a JPEG's or a 16-bit TIFF's
    strips) run on (`cores_per_file`).
    """
    rec = new_record(src, dst)
    src, dst = str(src), str(dst)
    try:
        with compute or nullcontext():
            t0 = time.perf_counter()  # not counting a wait for a compute slot
            img = read_file(src, storage_options, raw) if image is None else image.result()
            t1 = time.perf_counter()
            # The file's pixels are ours to restore in place.
            res = restorer.restore(img.pixels, curve, in_place=True, threads=cores)
            t2 = time.perf_counter()
            data = encode_file(dst, res.image, img, quality, cores)
        store_file(dst, data, overwrite, storage_options)
        t3 = time.perf_counter()
    except (ImageError, ValueError, OSError) as exc:
        rec["error"] = error_naming(src, str(exc))
        return rec
    return finish_record(rec, res, decode=t1 - t0, encode=t3 - t2, total=t3 - t0)


def finish_record(rec: dict, res: Result, *, decode: float, encode: float,
                  total: float) -> dict:
    """rec (from `new_record`) filled in for a restored photo: what was done and the time of
    each stage (decode, encode and total measured by the caller)."""
    rec.update(status="ok", phi_s=res.curve.phi_s, phi_h=res.curve.phi_h,
               iterations=res.iterations, loss=finite_or_none(res.loss), denoise=res.denoise,
               exposure=res.curve.exposure, amount=res.curve.amount,
               needs_correction=res.needs_correction, mean_gain=res.mean_gain,
               seconds={"decode": decode, "base": res.seconds["base"],
                        "estimate": res.seconds["estimate"], "apply": res.seconds["apply"],
                        "encode": encode, "total": total})
    return rec


def restore_job(restorer: Restorer, job: Job, config: BatchConfig,
                compute: AbstractContextManager | None = None, cores: int = 1) -> dict:
    """restore_file for a worker: even an unexpected failure becomes an error record, so one
    file can never stop a batch."""
    src, dst = job
    try:
        return restore_file(restorer, src, dst, config.curve, config.quality,
                            storage_options=config.storage_options, raw=config.raw,
                            compute=compute, cores=cores)
    except Exception as exc:  # noqa: BLE001 - recorded, and the batch goes on
        rec = new_record(src, dst)
        rec["error"] = f"{src}: internal error ({type(exc).__name__}: {exc})"
        return rec


def run_local(jobs: Iterable[Job], config: BatchConfig, workers: int) -> Iterator[dict]:
    """Restore the jobs, `workers` files at once in threads of this process (each with its own
    warm Restorer), and one more thread so that a file is written while `workers` compute
    (`compute_slots`); yield the records in the order they finish. Closing the iterator (or
    Ctrl-C) lets the files being written finish and starts no more."""
    if config.threads is not None:
        set_threads(config.threads, torch=config.options.get("solver") == "excnet")
    slots, threads = compute_slots(workers)

    cores = cores_per_file(workers)

    def make_step():
        restorer = Restorer(**config.options)
        return lambda job: restore_job(restorer, job, config, slots, cores)

    return convey(jobs, make_step, threads)


def cores_per_file(workers: int) -> int:
    """Cores each of `workers` files restored at once may use on its own: a single photo
    is restored and its JPEG encoded on all of them, a batch that fills every core with files
    on one (strips on busy cores cost a -j 2 batch 6 %, measured)."""
    return max(1, default_workers() // max(1, workers))


def compute_slots(workers: int, jobs: int | None = None) -> tuple[threading.Semaphore, int]:
    """(a semaphore admitting `workers` files to reading, restoring and encoding at once, the
    number of threads to run): one thread more than that when there are more files than
    workers, so a thread waiting for its file to reach the disk (fsync: about 15 ms per
    12 MP JPEG here) leaves its core to another file (6 % more photos/s at 12 MP, measured)."""
    workers = max(1, workers if jobs is None else min(workers, jobs))
    spare = 1 if jobs is None or jobs > workers else 0
    return threading.Semaphore(workers), workers + spare


def overlaps(a: str, b: str) -> bool:
    """Whether two local folders are the same or one lies inside the other."""
    ra, rb = Path(os.path.realpath(a)), Path(os.path.realpath(b))
    return ra == rb or ra in rb.parents or rb in ra.parents
