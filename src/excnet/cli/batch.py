"""`excnet batch IN OUT`: restore a folder tree into a mirror tree, resumably, at any scale."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from itertools import chain
from typing import TYPE_CHECKING

from .common import (
    UsageError,
    add_curve_options,
    add_include_outputs,
    add_raw_options,
    given_curve,
    print_json,
    progress,
    raw_options,
    restorer_options,
)

if TYPE_CHECKING:
    from ..batch_ray import RayStats

MANIFEST_NAME = "excnet-manifest.jsonl"
_MAX_LISTED_FAILURES = 20


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch", help="restore a whole folder tree (resumable; local or Ray)",
        description="Restore every image under IN into the same tree under OUT. A manifest "
                    "(JSON Lines) records each file; re-running skips what is done and "
                    "retries failures. IN and OUT may be local folders or fsspec URIs "
                    "(s3://bucket/prefix).")
    p.add_argument("input", metavar="IN", help="folder (or URI) to read images from")
    p.add_argument("output", metavar="OUT", help="folder (or URI) to write the mirror tree to")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this machine, several files at once in threads (default); "
                        "ray: a Ray cluster")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="Ray cluster address (HOST:6379, or ray://HOST:10001 from another "
                        "machine); default: start a private Ray instance on this machine "
                        "(listening on 127.0.0.1 only). See docs/cluster.md")
    p.add_argument("--workers", "-j", type=int, default=None, metavar="N",
                   help="files restored at once: threads of this process (default: one per "
                        "core); with Ray, actors (default: one per node, each restoring as "
                        "many files at once as the node has CPUs)")
    p.add_argument("--manifest", default=None, metavar="FILE",
                   help=f"JSON Lines record of the batch (default OUT/{MANIFEST_NAME}; required "
                        "when OUT is a URI)")
    p.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                   help="fsspec storage option for URIs, e.g. endpoint_url=http://host:9000 "
                        "(VALUE is parsed as JSON when it can be); repeatable")
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP/HEIC quality (default 95)")
    add_include_outputs(p)
    p.add_argument("--json", action="store_true",
                   help="print one JSON record per processed file")
    add_curve_options(p)
    add_raw_options(p)
    p.set_defaults(run=run_batch)


def _storage_options(items: list[str]) -> dict:
    opts: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--storage-option wants KEY=VALUE, got {item!r}")
        try:
            opts[key] = json.loads(value)
        except ValueError:
            opts[key] = value
    return opts


def _check_paths(src: str, dst: str, manifest: str | None) -> str:
    """Validate IN/OUT and return the manifest path."""
    from ..batch import is_uri, overlaps

    if not is_uri(src) and not os.path.isdir(src):
        raise UsageError(f"{src}: not a folder")
    if not is_uri(src) and not is_uri(dst) and overlaps(src, dst):
        raise UsageError(f"{dst}: OUT must not be IN or lie inside it (or contain it)")
    if manifest is not None:
        return manifest
    if is_uri(dst):
        raise UsageError("OUT is a URI: give --manifest FILE (a local path) for the manifest")
    return os.path.join(dst, MANIFEST_NAME)


def run_batch(args: argparse.Namespace) -> int:
    from ..batch import (
        BatchConfig,
        Skipped,
        default_workers,
        list_images,
        plan,
        run_local,
        sweep_leftovers,
    )
    from ..manifest import DoneSet, ManifestWriter

    if not 1 <= args.quality <= 100:
        raise UsageError("--quality must be between 1 and 100")
    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.address is not None and args.engine != "ray":
        raise UsageError("--address needs --engine ray")
    storage = _storage_options(args.storage_option)
    manifest = _check_paths(args.input, args.output, args.manifest)
    workers = args.workers or (None if args.engine == "ray" else default_workers())
    config = BatchConfig(options=restorer_options(args), curve=given_curve(args),
                         quality=args.quality, storage_options=storage,
                         threads=max(1, default_workers() // (workers or 1)),
                         raw=raw_options(args))

    resuming = os.path.exists(manifest)
    done = DoneSet.from_manifest(manifest) if resuming else DoneSet(iter(()))
    if resuming:
        try:
            sweep_leftovers(args.output, storage)
        except Exception as exc:  # noqa: BLE001 - the store's own errors; the batch goes on
            print(f"excnet: {args.output}: leftovers of an earlier run not removed ({exc})",
                  file=sys.stderr)
    try:
        skipped = Skipped()
        total = sum(1 for _ in list_images(args.input, storage, args.include_outputs, skipped))
        todo = sum(1 for _ in plan(args.input, args.output, done, storage,
                                   include_outputs=args.include_outputs))
    except OSError as exc:
        print(f"excnet: {args.input}: cannot list ({exc})", file=sys.stderr)
        return 1
    conflicts: list[dict] = []  # inputs whose output another input claims, filled by plan
    skipped.note()
    jobs = plan(args.input, args.output, done, storage, conflicts, args.include_outputs)
    stats = None
    engine_errors: tuple[type[Exception], ...] = ()
    if args.engine == "ray":
        try:
            from ..batch_ray import RayEngineError, RayStats, run_ray
        except ModuleNotFoundError as exc:
            raise UsageError(f"--engine ray needs Ray: pip install 'excnet[ray]' ({exc})") from None
        stats, engine_errors = RayStats(), (RayEngineError,)
        records = run_ray(jobs, config, args.workers, args.address, stats,
                          sweep=args.output, resumed=resuming)
    else:
        records = run_local(jobs, config, workers)

    failures: list[str] = []
    ok = 0
    stopped = False  # the engine could not go on (its error is printed)
    start = time.monotonic()
    bar = progress(todo, not args.json, label="batch")
    with ManifestWriter(manifest) as writer, bar as advance:
        try:
            for rec in chain(records, conflicts):
                writer.write(rec)
                if rec["status"] == "ok":
                    ok += 1
                else:
                    failures.append(rec["error"])
                    print(f"excnet: {rec['error']}", file=sys.stderr)
                if args.json:
                    print_json(rec)
                advance()
        except engine_errors as exc:
            stopped = True
            print(f"excnet: {exc}", file=sys.stderr)
        finally:
            records.close()
    code = _summary(total, total - todo, ok, failures, time.monotonic() - start, manifest,
                    stats, stopped)
    return 1 if stopped else code


def _summary(total: int, skipped: int, ok: int, failures: list[str], seconds: float,
             manifest: str, ray: RayStats | None = None, stopped: bool = False) -> int:
    """One line (on a terminal, or always when files failed, the engine stopped or a Ray run
    lost workers), failures listed; exit status."""
    if total == 0:
        print("excnet: no image files found", file=sys.stderr)
        return 1
    lost = ray is not None and (ray.retried or ray.workers_lost)
    if failures or stopped or lost or sys.stderr.isatty():
        rate = ok / seconds if seconds > 0 else 0.0
        print(f"excnet: batch: {ok} restored, {len(failures)} failed, {skipped} already done "
              f"({total} files) in {seconds:.1f} s, {rate:.2f} images/s", file=sys.stderr)
        if ray is not None:
            ready = "never ready" if ray.startup is None else f"ready in {ray.startup:.1f} s"
            print(f"excnet: ray: {ray.actors} workers on {ray.nodes} nodes, {ready}; "
                  f"{ray.retried} photos retried, {ray.workers_lost} workers lost, "
                  f"{ray.nodes_lost} nodes lost", file=sys.stderr)
    for f in failures[:_MAX_LISTED_FAILURES]:
        print(f"  {f}", file=sys.stderr)
    if len(failures) > _MAX_LISTED_FAILURES:
        print(f"  ... and {len(failures) - _MAX_LISTED_FAILURES} more (see {manifest}); "
              "re-run to retry them", file=sys.stderr)
    return 1 if failures else 0

