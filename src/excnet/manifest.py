"""The batch manifest: one JSON record per processed file, appended as results arrive.

The records have the fields of `excnet restore --json` (input, output, status, error, phi_s,
phi_h, iterations, loss, seconds). The file is only ever appended to and is read back as a
stream, so it can hold tens of millions of lines: what is kept in memory is an 8-byte hash
per finished input (about 240 MB for 30 million files). A line cut short by a crash is
ignored on reading.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from array import array
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def finite_or_none(v: float | None) -> float | None:
    """A number for a JSON record: NaN and infinities (no loss when a curve is given) as None,
    since JSON has no such numbers."""
    return None if v is None or not math.isfinite(v) else v


def _key(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")


def read_records(path: str | os.PathLike[str]) -> Iterator[dict]:
    """Yield the records of a manifest one at a time; unreadable lines are skipped."""
    try:
        f = open(path, encoding="utf-8")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        return
    with f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("input"), str):
                yield rec


class DoneSet:
    """The inputs a manifest records as restored ("ok"), as a sorted array of 64-bit hashes.

    Errors are not "done": a re-run retries them. Membership is a binary search.
    """

    def __init__(self, names: Iterator[str]) -> None:
        keys = array("Q", (_key(n) for n in names))
        self._keys = np.unique(np.frombuffer(keys, dtype=np.uint64)) if keys else np.empty(
            0, np.uint64)

    @classmethod
    def from_manifest(cls, path: str | os.PathLike[str]) -> DoneSet:
        return cls(r["input"] for r in read_records(path) if r.get("status") == "ok")

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, name: str) -> bool:
        k = np.uint64(_key(name))
        i = int(np.searchsorted(self._keys, k))
        return i < len(self._keys) and self._keys[i] == k


class ManifestWriter:
    """Appends records to a manifest, one flushed line each (a crash loses at most one line).

    A file left without a final newline by an earlier crash gets one first, so the cut line
    stays a single unreadable line instead of corrupting the next record.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(p, "a+b")  # noqa: SIM115 - closed in close()
        if self._file.tell() > 0:
            self._file.seek(-1, os.SEEK_END)
            if self._file.read(1) != b"\n":
                self._file.write(b"\n")

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record, allow_nan=False).encode() + b"\n")
        self._file.flush()

    def close(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
