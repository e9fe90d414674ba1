"""Regenerate the dependency locks from pyproject.toml's ranges (run by `make lock`).

Resolves, in a fresh virtual environment with pip's own resolver, the newest releases that
pyproject.toml allows, and writes two locks of exact versions with their sha256 hashes:

* requirements.lock: what excnet needs to run (its core dependencies);
* requirements-ray.lock: what the Ray engine and object stores add (the `ray` extra), for
  cluster nodes;
* requirements-dev.lock: what the tests and benchmarks add on top (the `dev` extra).

All three come from one resolution of everything, so they agree and install together.

The indexes come from the machine's pip configuration; no index URL is written to the locks.
The locks are for CPython 3.11 on x86-64 Linux (the wheels pip picks here). Refuses to write
a lock that holds a CUDA package (`nvidia-*`, `triton`, a `torch` that is not a `+cpu` build).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = "dev,ray"
HEADER = """\
# {what}
# Exact versions and sha256 hashes for CPython 3.11 on x86-64 Linux, resolved by `make lock`
# (scripts/lock.py) from the ranges in pyproject.toml. Do not edit by hand.
# Install: pip install --no-deps --require-hashes -r {name}
"""


def resolve(python: Path, target: str, constraints: Path | None, report: Path) -> list[dict]:
    """pip's resolution of target (a requirement) as its --report's install list."""
    cmd = [str(python), "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed",
           "--only-binary", ":all:", "--no-binary", "excnet", "--report", str(report), target]
    if constraints is not None:
        cmd[4:4] = ["-c", str(constraints)]
    subprocess.run(cmd, cwd=ROOT, check=True)
    return [item for item in json.loads(report.read_text())["install"]
            if item["metadata"]["name"] != "excnet"]


def pins(items: list[dict]) -> dict[str, tuple[str, str]]:
    """{normalised name: (version, sha256)} of a resolution."""
    out = {}
    for item in items:
        name = item["metadata"]["name"].lower().replace("_", "-").replace(".", "-")
        sha = item["download_info"].get("archive_info", {}).get("hashes", {}).get("sha256")
        if not sha:
            raise SystemExit(f"lock: pip gave no sha256 for {name}; refusing to lock it")
        out[name] = (item["metadata"]["version"], sha)
    return out


def check_cpu_only(locked: dict[str, tuple[str, str]]) -> None:
    bad = [n for n in locked if n.startswith(("nvidia-", "cuda-")) or n == "triton"]
    torch = locked.get("torch")
    if torch is not None and not torch[0].endswith("+cpu"):
        bad.append(f"torch=={torch[0]} (not the CPU build)")
    if bad:
        raise SystemExit("lock: CUDA packages resolved: " + ", ".join(bad) + ". Point pip at "
                         "PyTorch's CPU wheel index (its install page) and run it again.")


def write(path: Path, what: str, locked: dict[str, tuple[str, str]]) -> None:
    lines = [HEADER.format(what=what, name=path.name)]
    for name in sorted(locked):
        version, sha = locked[name]
        lines.append(f"{name}=={version} \\\n    --hash=sha256:{sha}\n")
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(lines))
    tmp.replace(path)


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    if sys.version_info[:2] != (3, 11) or platform.machine() != "x86_64":
        raise SystemExit("lock: the locks are made for CPython 3.11 on x86-64 Linux")
    with tempfile.TemporaryDirectory(prefix="excnet-lock-") as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True)
        python = tmp / "venv" / "bin" / "python"
        full = pins(resolve(python, f".[{EXTRAS}]", None, tmp / "full.json"))
        check_cpu_only(full)
        pinned = tmp / "pins.txt"
        pinned.write_text("".join(f"{n}=={v}\n" for n, (v, _) in full.items()))
        core = pins(resolve(python, ".", pinned, tmp / "core.json"))
        ray = pins(resolve(python, ".[ray]", pinned, tmp / "ray.json"))
    if any(full.get(n) != pin for n, pin in (core | ray).items()):
        raise SystemExit("lock: a partial resolution differs from the full one")
    ray = {n: p for n, p in ray.items() if n not in core}
    dev = {n: p for n, p in full.items() if n not in core and n not in ray}
    write(ROOT / "requirements.lock", "excnet's runtime dependencies", core)
    write(ROOT / "requirements-ray.lock", "added for the Ray engine and object stores "
          "(install requirements.lock too)", ray)
    write(ROOT / "requirements-dev.lock", "added for the tests and benchmarks (install "
          "requirements.lock and requirements-ray.lock too)", dev)
    print(f"lock: {len(core)} runtime + {len(ray)} Ray + {len(dev)} dev packages locked")


if __name__ == "__main__":
    main()
