"""Install lock files into this interpreter's environment, fast (run by make).

Exact versions, hashes checked, wheels only, no dependency resolution (`pip install --no-deps
--require-hashes --only-binary :all:`), and no bytecode compiled ahead (Python compiles what
is imported, when it is first imported). The packages are split into `--jobs` groups of about
equal cost (PyTorch and Ray weigh most), installed by that many pip processes at once:
one pip unpacks a wheel on one core while another downloads, so two cores finish in about
half the time. Groups hold different packages, so their files never meet.

    python scripts/install_lock.py requirements.lock [requirements-dev.lock ...]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

#: Rough unpacking cost of the large wheels, in units of a small package's.
WEIGHTS = {"torch": 30, "ray": 20, "pyarrow": 8, "opencv-python-headless": 5, "pandas": 4,
           "scipy": 4, "scikit-image": 3, "matplotlib": 3, "av": 3}
PIP = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
       "--no-deps", "--require-hashes", "--only-binary", ":all:", "--no-compile"]


def entries(lock: Path) -> list[str]:
    """The lock's requirements, each with its hash options, as one line."""
    text = re.sub(r"\\\n\s*", " ", lock.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def groups(reqs: list[str], jobs: int) -> list[list[str]]:
    """reqs in `jobs` groups of about equal cost (`WEIGHTS`), heaviest placed first."""
    def weight(req: str) -> int:
        return WEIGHTS.get(re.split(r"[=<>\s\[]", req, maxsplit=1)[0].lower(), 1)

    out: list[list[str]] = [[] for _ in range(max(1, min(jobs, len(reqs))))]
    load = [0] * len(out)
    for req in sorted(reqs, key=weight, reverse=True):
        i = load.index(min(load))
        out[i].append(req)
        load[i] += weight(req)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("locks", nargs="+", type=Path)
    p.add_argument("--jobs", type=int, default=2, help="pip processes at once (default 2)")
    args = p.parse_args()
    reqs = [r for lock in args.locks for r in entries(lock)]
    with tempfile.TemporaryDirectory(prefix="excnet-install-") as tmp:
        procs = []
        for i, group in enumerate(groups(reqs, args.jobs)):
            part = Path(tmp) / f"part{i}.txt"
            part.write_text("\n".join(group) + "\n")
            log = (Path(tmp) / f"part{i}.log").open("w+")
            procs.append((subprocess.Popen([*PIP, "-r", str(part)], stderr=log), log))
        failed = []
        for proc, log in procs:
            if proc.wait() != 0:
                failed.append(proc.args)
            log.seek(0)
            # A pip that scans the environment while another writes a package's metadata
            # warns that it skips that package: expected here, and not the user's concern.
            sys.stderr.writelines(line for line in log if "due to invalid metadata" not in line)
            log.close()
    if failed:
        raise SystemExit(f"install_lock: {len(failed)} of {len(procs)} pip runs failed")


if __name__ == "__main__":
    main()
