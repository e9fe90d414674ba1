"""Restoring a folder tree into a mirror tree: file jobs, the per-file step, the local engine.

A batch is a stream of jobs (source, destination), each turned into one record with the
fields of `excnet restore --json`. Sources and destinations are local paths or fsspec URIs
(``s3://bucket/prefix/...``). The local engine runs a pool of worker processes, each keeping
one warm `Restorer` for all the files it is given (warm start: later images converge in
fewer iterations). `excnet.batch_ray` runs the same jobs on a Ray cluster.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import queue
import re
import signal
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .curve import Curve
from .imageio import (
    ImageError,
    ImageFile,
    decode_image,
    encode_image,
    format_from_path,
    read_image,
    write_image,
)
from .manifest import DoneSet
from .pipeline import Restorer

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".heic", ".heif"})
# The hidden temp files of imageio's atomic writes: .NAME.XXXXXXXX.tmp
_TEMP_FILE = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")

Job = tuple[str, str]


@dataclass(frozen=True)
class BatchConfig:
    """What every worker needs: Restorer keyword options, a fixed curve (or None to estimate),
    the output quality, fsspec storage options and the torch/OpenCV thread count."""

    options: dict = field(default_factory=dict)
    curve: Curve | None = None
    quality: int = 95
    storage_options: dict = field(default_factory=dict)
    threads: int = 1


def is_uri(path: str) -> bool:
    """Whether a path is an fsspec URL (``s3://...``, ``gs://...``) rather than a local path."""
    return "://" in path and not path.startswith("file://")


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def set_threads(n: int) -> None:
    """Limit torch and OpenCV to n threads (so that workers do not oversubscribe the cores)."""
    import cv2
    import torch

    torch.set_num_threads(max(1, n))
    cv2.setNumThreads(max(1, n))


def _filesystem(url: str, storage_options: dict):
    import fsspec

    return fsspec.core.url_to_fs(url, **storage_options)


def list_images(root: str, storage_options: dict | None = None) -> Iterator[str]:
    """Paths of the image files under root, relative to it with "/" separators, sorted.

    Hidden files and folders (names starting with ".") are left out. Streams: a huge tree is
    never held in memory.
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
        for name in sorted(files):
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
                continue
            yield f"{rel}/{name}" if rel else name


def join(root: str, rel: str) -> str:
    """root + "/" + rel for URIs, the local path join otherwise."""
    if is_uri(root):
        return f"{root.rstrip('/')}/{rel}"
    return os.path.join(root, *rel.split("/"))


def plan(src_root: str, dst_root: str, done: DoneSet,
         storage_options: dict | None = None) -> Iterator[Job]:
    """The jobs still to do: each image under src_root, mirrored under dst_root, not in done."""
    for rel in list_images(src_root, storage_options):
        src = join(src_root, rel)
        if src not in done:
            yield src, join(dst_root, rel)


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


def read_file(src: str, storage_options: dict | None = None) -> ImageFile:
    """Read a local file or fsspec URI with excnet's decoder (EXIF, ICC and 16 bits kept)."""
    if not is_uri(src):
        return read_image(src)
    fs, path = _filesystem(src, storage_options or {})
    try:
        data = fs.cat_file(path)
    except FileNotFoundError:
        raise ImageError(f"{src}: missing file (no such object)") from None
    except OSError as exc:
        raise ImageError(f"{src}: cannot read ({exc})") from None
    return decode_image(data, name=src)


def write_file(dst: str, pixels: np.ndarray, like: ImageFile, quality: int = 95,
               overwrite: bool = True, storage_options: dict | None = None) -> None:
    """Write atomically: a temp file renamed into place locally, a single PUT to object stores
    (an object appears whole or not at all)."""
    if not is_uri(dst):
        write_image(dst, pixels, like=like, quality=quality, overwrite=overwrite)
        return
    fs, path = _filesystem(dst, storage_options or {})
    data = encode_image(pixels, format_from_path(dst), like=like, quality=quality)
    if not overwrite and fs.exists(path):
        raise ImageError(f"{dst}: file exists (not overwriting)")
    try:
        fs.pipe_file(path, data)
    except OSError as exc:
        raise ImageError(f"{dst}: cannot write ({exc})") from None


def new_record(src: str | os.PathLike[str], dst: str | os.PathLike[str] | None) -> dict:
    """A record in the `restore --json` layout, marked as an error until filled in."""
    return {"input": str(src), "output": None if dst is None else str(dst), "status": "error",
            "error": None, "phi_s": None, "phi_h": None, "iterations": None, "loss": None,
            "exposure": None, "amount": None, "needs_correction": None, "mean_gain": None,
            "seconds": None, "denoise": None}


def _finite_or_none(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else v


def error_naming(src: str, message: str) -> str:
    """The message with the full source path in front (imageio names only the file)."""
    name = src.rsplit("/", 1)[-1].rsplit(os.sep, 1)[-1]
    if message.startswith(f"{name}:"):
        return src + message[len(name):]
    return message if src in message else f"{src}: {message}"


def restore_file(restorer: Restorer, src: str | os.PathLike[str], dst: str | os.PathLike[str],
                 curve: Curve | None = None, quality: int = 95, overwrite: bool = True,
                 storage_options: dict | None = None) -> dict:
    """Read src, restore it (estimating the curve unless given), write dst; return the record.

    Bad input is recorded (status "error", a one-line message naming the file), not raised.
    """
    rec = new_record(src, dst)
    src, dst = str(src), str(dst)
    t0 = time.perf_counter()
    try:
        img = read_file(src, storage_options)
        t1 = time.perf_counter()
        res = restorer.restore(img.pixels, curve)
        t2 = time.perf_counter()
        write_file(dst, res.image, img, quality, overwrite, storage_options)
        t3 = time.perf_counter()
    except (ImageError, ValueError, OSError) as exc:
        rec["error"] = error_naming(src, str(exc))
        return rec
    rec.update(status="ok", phi_s=res.curve.phi_s, phi_h=res.curve.phi_h,
               iterations=res.iterations, loss=_finite_or_none(res.loss), denoise=res.denoise,
               exposure=res.curve.exposure, amount=res.curve.amount,
               needs_correction=res.needs_correction, mean_gain=res.mean_gain,
               seconds={"decode": t1 - t0, "base": res.seconds["base"],
                        "estimate": res.seconds["estimate"], "apply": res.seconds["apply"],
                        "encode": t3 - t2, "total": t3 - t0})
    return rec


def restore_job(restorer: Restorer, job: Job, config: BatchConfig) -> dict:
    """restore_file for a worker: even an unexpected failure becomes an error record, so one
    file can never stop a batch."""
    src, dst = job
    try:
        return restore_file(restorer, src, dst, config.curve, config.quality,
                            storage_options=config.storage_options)
    except Exception as exc:  # noqa: BLE001 - recorded, and the batch goes on
        rec = new_record(src, dst)
        rec["error"] = f"{src}: internal error ({type(exc).__name__}: {exc})"
        return rec


def _worker(config: BatchConfig, tasks, results) -> None:
    """A pool process: one warm Restorer for every job it takes, until the None sentinel or
    until its parent is gone (a killed batch must not leave workers running on)."""
    parent = os.getppid()
    try:
        set_threads(config.threads)
        restorer = Restorer(**config.options)
        while os.getppid() == parent:
            try:
                job = tasks.get(timeout=1.0)
            except queue.Empty:
                continue
            if job is None or os.getppid() != parent:
                return
            results.put(restore_job(restorer, job, config))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the parent reports it
        pass


class WorkerDied(RuntimeError):
    """A pool process ended without finishing (killed, out of memory)."""


def run_local(jobs: Iterable[Job], config: BatchConfig, workers: int) -> Iterator[dict]:
    """Restore the jobs in `workers` processes (in this process for one); yield the records in
    the order they finish. Closing the iterator (or Ctrl-C) stops the workers."""
    if workers <= 1:
        restorer = Restorer(**config.options)
        for job in jobs:
            yield restore_job(restorer, job, config)
        return
    ctx = multiprocessing.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(config, tasks, results), daemon=True)
             for _ in range(workers)]
    for p in procs:
        p.start()
    jobs = iter(jobs)
    in_flight, exhausted = 0, False
    try:
        while True:
            while not exhausted and in_flight < 2 * workers:  # a short queue: jobs stream
                job = next(jobs, None)
                if job is None:
                    exhausted = True
                else:
                    tasks.put(job)
                    in_flight += 1
            if in_flight == 0:
                break
            try:
                rec = results.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in procs if not p.is_alive()]
                if dead:
                    raise WorkerDied(
                        f"a worker process died (exit code {dead[0].exitcode})") from None
                continue
            in_flight -= 1
            yield rec
        for _ in procs:
            tasks.put(None)
        for p in procs:
            p.join()
    finally:
        _stop(procs)


def _stop(procs: list) -> None:
    """Ask live workers to stop (SIGINT: a write in progress removes its temp file), then
    terminate any that do not."""
    for p in procs:
        if p.is_alive():
            try:
                os.kill(p.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 5.0
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.terminate()
            p.join()


def overlaps(a: str, b: str) -> bool:
    """Whether two local folders are the same or one lies inside the other."""
    ra, rb = Path(os.path.realpath(a)), Path(os.path.realpath(b))
    return ra == rb or ra in rb.parents or rb in ra.parents
