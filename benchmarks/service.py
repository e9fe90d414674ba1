"""Soak and load test of `excnet serve` on loopback: mixed requests from concurrent clients.

    python benchmarks/service.py                          # 2000 requests from 8 clients
    python benchmarks/service.py --requests 300           # a shorter run
    python benchmarks/service.py --workers 2 --queue 8 --clients 8

Starts `excnet serve` (direct solver, a token, JSON request log to a file, its own TMPDIR),
warms it up with a few requests of every kind, then sends the mix below in a shuffled order
from `--clients` threads, each with its own keep-alive connection:

    kind          share  request                                         expected
    photo-1mp      55 %  restore, 1 MP JPEG (camera-like, from skimage)   200 image/jpeg
    estimate-1mp   10 %  estimate with a 512 px preview                   200 JSON
    photo-12mp      5 %  restore, 12 MP JPEG                              200 image/jpeg
    truncated       5 %  a JPEG cut in half                               422 JSON
    not-an-image    5 %  a text file named .jpg                           415 JSON
    empty           3 %  an empty file                                    400 JSON
    over-size       7 %  9 MiB against the 8 MiB limit                    413 JSON
    no-token       10 %  a 1 MP photo without the token                   401 JSON

It prints the status counts per kind, throughput, latency percentiles (p50/p95/p99 per kind
and overall), the server's RSS sampled over the run, its threads and open files before and
after, the temp files it left, and checks that the /metrics counters equal the statuses the
clients saw. Exit status 1 if any check fails: a 5xx, an unexpected status, an error without
a JSON body, RSS growth after warm-up above --max-growth-mb, leaked threads or temp files, or
metrics that disagree. All traffic is to 127.0.0.1; the run stops after --requests requests.

`soak()`, `check()` and `report()` are also used by the short soak in tests/test_service_load.py.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil
from prometheus_client.parser import text_string_to_metric_families

API = "/api/v1"
MIB = 1024 * 1024
UPLOAD_LIMIT = 8 * MIB
#: Idle seconds before the server's threads are counted (anyio's helpers live 10 s idle).
SETTLE = 12.0
#: Warm-up requests (the mix, all clients at once): until memory and threads are in use.
WARMUP = 100
#: (kind, share of the requests) of the default mix.
MIX = (("photo-1mp", 0.55), ("estimate-1mp", 0.10), ("photo-12mp", 0.05), ("truncated", 0.05),
       ("not-an-image", 0.05), ("empty", 0.03), ("over-size", 0.07), ("no-token", 0.10))


@dataclass(frozen=True)
class Kind:
    """One kind of request of the mix and the status it must get."""

    name: str
    endpoint: str
    data: bytes
    expect: int
    token: bool = True
    filename: str = "photo.jpg"
    query: str = ""


def kinds(photo_1mp: bytes, photo_12mp: bytes, upload_limit: int) -> dict[str, Kind]:
    """The kinds of the mix, built around two good JPEGs."""
    return {k.name: k for k in (
        Kind("photo-1mp", "restore", photo_1mp, 200),
        Kind("estimate-1mp", "estimate", photo_1mp, 200, query="?preview=512"),
        Kind("photo-12mp", "restore", photo_12mp, 200),
        Kind("truncated", "restore", photo_1mp[: len(photo_1mp) // 2], 422, filename="cut.jpg"),
        Kind("not-an-image", "restore", b"these are my holiday notes\n" * 40, 415,
             filename="notes.jpg"),
        Kind("empty", "estimate", b"", 400, filename="empty.jpg"),
        Kind("over-size", "restore", b"\xff\xd8" + bytes(upload_limit + MIB), 413,
             filename="huge.jpg"),
        Kind("no-token", "restore", photo_1mp, 401, token=False),
    )}


def schedule(total: int, mix: tuple[tuple[str, float], ...], seed: int = 0) -> list[str]:
    """`total` kind names in the mix's proportions (largest remainders), shuffled."""
    exact = [(name, share * total) for name, share in mix]
    counts = {name: int(x) for name, x in exact}
    by_remainder = sorted(exact, key=lambda e: int(e[1]) - e[1])
    for name, _ in by_remainder[: total - sum(counts.values())]:
        counts[name] += 1
    order = [name for name, n in counts.items() for _ in range(n)]
    random.Random(seed).shuffle(order)
    return order


@dataclass
class Outcome:
    kind: str
    status: int | None
    seconds: float
    json_error: str | None = None
    content_type: str = ""
    exception: str | None = None


@dataclass
class ProcessSample:
    t: float
    done: int
    rss: int
    threads: int
    fds: int


@dataclass
class SoakResult:
    outcomes: list[Outcome]
    wall: float
    samples: list[ProcessSample]
    before: ProcessSample
    after: ProcessSample
    metrics: dict[tuple[str, str], float]
    temp_files: list[str]
    warmup_counts: Counter = field(default_factory=Counter)


def send(client: httpx.Client, url: str, kind: Kind, token: str) -> Outcome:
    headers = {"Authorization": f"Bearer {token}"} if kind.token else {}
    t0 = time.perf_counter()
    try:
        r = client.post(f"{url}{API}/{kind.endpoint}{kind.query}", headers=headers,
                        files={"file": (kind.filename, kind.data, "image/jpeg")})
    except httpx.HTTPError as exc:
        return Outcome(kind.name, None, time.perf_counter() - t0,
                       exception=f"{type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - t0
    error = None
    if r.status_code >= 400:
        try:
            error = r.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            error = None
    return Outcome(kind.name, r.status_code, seconds, error,
                   r.headers.get("content-type", ""))


def sample(proc: psutil.Process, t0: float, done: int) -> ProcessSample:
    return ProcessSample(time.perf_counter() - t0, done, proc.memory_info().rss,
                         proc.num_threads(), proc.num_fds())


def soak(url: str, pid: int, token: str, by_name: dict[str, Kind], order: list[str],
         warmup: list[str], clients: int = 8, temp_dir: Path | None = None,
         every: float = 0.5, settle: float = SETTLE) -> SoakResult:
    """Warm up with `warmup`, then send `order`, each from `clients` threads; sample the
    server as it goes.

    The baseline is taken `settle` seconds after the warm-up, and the end state as long after
    the run, when the helper threads that spool large uploads to disk (anyio's, which live
    10 s idle) are gone.
    """
    proc = psutil.Process(pid)
    warm = Counter((by_name[o.kind].endpoint, o.status)
                   for o in send_all(url, token, by_name, warmup, clients))
    time.sleep(settle)
    t0 = time.perf_counter()
    before = sample(proc, t0, 0)
    samples = [before]
    outcomes: list[Outcome] = []
    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(every):
            samples.append(sample(proc, t0, len(outcomes)))

    watcher = threading.Thread(target=sampler, daemon=True)
    watcher.start()
    send_all(url, token, by_name, order, clients, outcomes)
    wall = time.perf_counter() - t0
    stop.set()
    watcher.join()
    time.sleep(settle)
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"},
                     trust_env=False, timeout=30).text
    after = sample(proc, t0, len(outcomes))
    samples.append(after)
    temp = sorted(p.name for p in temp_dir.iterdir()) if temp_dir else []
    return SoakResult(outcomes, wall, samples, before, after, request_counts(text), temp, warm)


def send_all(url: str, token: str, by_name: dict[str, Kind], order: list[str], clients: int,
             outcomes: list[Outcome] | None = None) -> list[Outcome]:
    """Send `order` from `clients` threads (each takes the next request when it is free)."""
    outcomes = [] if outcomes is None else outcomes
    lock = threading.Lock()
    queue = iter(order)

    def client() -> None:
        with httpx.Client(trust_env=False, timeout=300) as c:
            while True:
                with lock:
                    name = next(queue, None)
                if name is None:
                    return
                outcome = send(c, url, by_name[name], token)
                with lock:
                    outcomes.append(outcome)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def request_counts(metrics_text: str) -> dict[tuple[str, str], float]:
    """{(endpoint, status): count} of excnet_requests_total in a /metrics page."""
    counts: dict[tuple[str, str], float] = defaultdict(float)
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.name == "excnet_requests_total":
                counts[(s.labels["endpoint"].rsplit("/", 1)[-1], s.labels["status"])] += s.value
    return dict(counts)


def check(result: SoakResult, by_name: dict[str, Kind], max_growth_mb: float) -> list[str]:
    """What went wrong, in words (empty when all is well)."""
    problems = []
    for o in result.outcomes:
        kind = by_name[o.kind]
        if o.exception:
            problems.append(f"{o.kind}: no answer ({o.exception})")
            continue
        elif o.status >= 500:
            problems.append(f"{o.kind}: server error {o.status}")
        elif o.status != kind.expect:
            problems.append(f"{o.kind}: status {o.status}, expected {kind.expect}")
        elif o.status >= 400 and not (o.json_error and o.content_type == "application/json"):
            problems.append(f"{o.kind}: {o.status} without a JSON error body")
    growth = (result.after.rss - result.before.rss) / MIB
    if growth > max_growth_mb:
        problems.append(f"server RSS grew by {growth:.0f} MB after warm-up (> {max_growth_mb})")
    if result.after.threads > result.before.threads:  # fewer: an idle helper thread ended
        problems.append(f"server threads {result.before.threads} -> {result.after.threads}")
    if result.after.fds > result.before.fds + 2:
        problems.append(f"server open files {result.before.fds} -> {result.after.fds}")
    if result.temp_files:
        problems.append(f"temp files left: {result.temp_files[:5]}")
    seen = Counter((by_name[o.kind].endpoint, str(o.status)) for o in result.outcomes)
    seen.update({(e, str(s)): n for (e, s), n in result.warmup_counts.items()})
    work = {k: v for k, v in result.metrics.items() if k[0] in ("restore", "estimate")}
    if work != {k: float(v) for k, v in seen.items()}:
        problems.append(f"/metrics {sorted(work.items())} != clients {sorted(seen.items())}")
    return problems


def report(result: SoakResult, by_name: dict[str, Kind]) -> str:
    """Tables: per kind (count, statuses, latency percentiles), overall, and the server."""
    rows = ["| kind | requests | statuses | p50 s | p95 s | p99 s |", "|---|---|---|---|---|---|"]
    groups = defaultdict(list)
    for o in result.outcomes:
        groups[o.kind].append(o)
    for name in [*by_name, "all"]:
        group = result.outcomes if name == "all" else groups.get(name, [])
        if not group:
            continue
        statuses = Counter(o.status if o.status is not None else "error" for o in group)
        lat = np.array([o.seconds for o in group])
        p50, p95, p99 = np.percentile(lat, [50, 95, 99])
        text = ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items(), key=str))
        rows.append(f"| {name} | {len(group)} | {text} | {p50:.3f} | {p95:.3f} | {p99:.3f} |")
    n = len(result.outcomes)
    b, a = result.before, result.after
    peak = max(s.rss for s in result.samples)
    quarter = [s for s in result.samples if s.done >= 0.75 * n] or [a]
    rows += ["", f"{n} requests in {result.wall:.1f} s: {n / result.wall:.1f} requests/s; "
             f"{sum(o.status == 200 for o in result.outcomes) / result.wall:.1f} images/s",
             f"server RSS: {b.rss / MIB:.0f} MB after warm-up, peak {peak / MIB:.0f} MB, "
             f"last quarter max {max(s.rss for s in quarter) / MIB:.0f} MB, "
             f"end {a.rss / MIB:.0f} MB (growth {(a.rss - b.rss) / MIB:+.0f} MB); "
             f"threads {b.threads} -> {a.threads}; open files {b.fds} -> {a.fds}; "
             f"temp files left {len(result.temp_files)}",
             "RSS over the run (MB, by requests done): " + ", ".join(
                 f"{s.done}: {s.rss / MIB:.0f}" for s in thin(result.samples, 12)),
             "/metrics excnet_requests_total, warm-up included (endpoint status: count): "
             + ", ".join(f"{e} {s}: {v:.0f}" for (e, s), v in sorted(result.metrics.items())
                         if e in ("restore", "estimate"))]
    return "\n".join(rows)


def thin(samples: list[ProcessSample], count: int) -> list[ProcessSample]:
    step = max(1, len(samples) // count)
    return [*samples[::step][: count - 1], samples[-1]]


@contextmanager
def serve(options: list[str], token: str, log: Path, temp_dir: Path):
    """`excnet serve` on 127.0.0.1 (free port); yields (URL, pid). Stops it with SIGTERM."""
    env = {**os.environ, "EXCNET_TOKEN": token, "TMPDIR": str(temp_dir)}
    program = "import sys; from excnet.cli import main; sys.exit(main())"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", program, "serve", "--port", "0", *options],
                                stderr=err, env=env)
        try:
            url = None
            for _ in range(600):  # the first line says where it listens; 60 s at most
                match = re.search(r"http://127\.0\.0\.1:(\d+)/", log.read_text())
                if match:
                    url = f"http://127.0.0.1:{match.group(1)}"
                    break
                if proc.poll() is not None:
                    break
                time.sleep(0.1)
            if url is None:
                sys.exit(f"service.py: the server did not start:\n{log.read_text()}")
            yield url, proc.pid
        finally:
            proc.terminate()
            code = proc.wait(60)
            print(f"server stopped with SIGTERM: exit status {code}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--queue", type=int, default=8)
    ap.add_argument("--max-growth-mb", type=float, default=50)
    args = ap.parse_args()

    sys.path.insert(0, str(Path(__file__).parent))
    from speed import make_photo

    from excnet.imageio import encode_image

    photo_1mp = encode_image(make_photo("chelsea", (866, 1155), 1), "JPEG", quality=92)
    photo_12mp = encode_image(make_photo("astronaut", (3000, 4000), 2), "JPEG", quality=92)
    by_name = kinds(photo_1mp, photo_12mp, UPLOAD_LIMIT)
    order = schedule(args.requests, MIX)
    warmup = schedule(WARMUP, MIX, seed=1)
    token = "soak-" + os.urandom(12).hex()
    print(f"{args.requests} requests from {args.clients} clients; server: --workers "
          f"{args.workers} --queue {args.queue}; photos 1 MP ({len(photo_1mp) / MIB:.1f} MB) and "
          f"12 MP ({len(photo_12mp) / MIB:.1f} MB)")
    with tempfile.TemporaryDirectory(prefix="excnet-soak-") as tmp:
        temp_dir = Path(tmp) / "server-tmp"
        temp_dir.mkdir()
        log = Path(tmp) / "server.log"
        options = ["--solver", "direct", "--workers", str(args.workers), "--queue",
                   str(args.queue), "--max-upload-bytes", str(UPLOAD_LIMIT)]
        with serve(options, token, log, temp_dir) as (url, pid):
            result = soak(url, pid, token, by_name, order, warmup, clients=args.clients,
                          temp_dir=temp_dir)
        lines = log.read_text().splitlines()
        logged = sum(line.startswith('{"time"') for line in lines)
    print(report(result, by_name))
    print(f"request log: {logged} JSON lines")
    problems = check(result, by_name, args.max_growth_mb)
    for p in problems[:20]:
        print("PROBLEM:", p)
    print("all checks passed" if not problems else f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
