"""Load on loopback: a real `excnet serve` process, bounded in requests and time.

* A short soak (benchmarks/service.py's mix: good 1 and 12 MP photos, bad files, over-size
  uploads, missing tokens) from 8 concurrent clients: every answer as expected, no growth of
  memory, threads, open files or temp files, and /metrics agrees with the clients.
* Overload (more simultaneous clients than workers + queue): clean 503s with Retry-After, the
  rest succeed, and the server is still healthy afterwards.

Requests per second and latency percentiles are printed (pytest -s shows them); they are not
asserted.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest
from conftest import make_backlit
from serving import process

from excnet.imageio import encode_image

httpx = pytest.importorskip("httpx")

MIB = 1024 * 1024


def peak_rss(pid: int) -> int:
    """The process's peak resident set size in bytes (Linux VmHWM)."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1)) * 1024


@pytest.fixture(scope="module")
def megapixel() -> bytes:
    return encode_image(make_backlit(1000, 1000, seed=7), "JPEG", quality=90)


def post_many(url: str, data: bytes, clients: int, per_client: int,
              barrier: threading.Barrier | None = None) -> list[tuple[int, float, httpx.Response]]:
    """`clients` threads, each sending `per_client` restore requests in a row."""
    results: list[tuple[int, float, httpx.Response]] = []
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(trust_env=False, timeout=120) as c:
            for _ in range(per_client):
                if barrier is not None:
                    barrier.wait(60)
                t0 = time.perf_counter()
                r = c.post(f"{url}/api/v1/restore", files={"file": ("p.jpg", data, "image/jpeg")},
                           data={"quality": "85"})
                with lock:
                    results.append((r.status_code, time.perf_counter() - t0, r))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return results


@pytest.fixture(scope="module")
def bench():
    """benchmarks/service.py, whose soak this test runs in short."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "service.py"
    spec = importlib.util.spec_from_file_location("excnet_service_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_short_soak_of_mixed_requests_from_8_clients(bench, megapixel, tmp_path):
    """160 requests of the benchmark's mix (good 1 and 12 MP photos, bad files, over-size
    uploads, missing tokens) after a warm-up: every answer as expected (no 5xx, every refusal
    a 4xx with a JSON body), no growth of memory (<= 50 MB), threads, open files or temp
    files, and /metrics counts exactly what the clients saw."""
    twelve = cv2.resize(make_backlit(300, 400, seed=8), (4000, 3000),
                        interpolation=cv2.INTER_LINEAR)
    limit = 6 * MIB
    by_name = bench.kinds(megapixel, encode_image(twelve, "JPEG", quality=90), limit)
    token = "short-soak-0123456789"
    temp = tmp_path / "server-tmp"
    temp.mkdir()
    env = {**os.environ, "EXCNET_TOKEN": token, "TMPDIR": str(temp)}
    with process("--workers", str(min(2, os.cpu_count() or 1)), "--queue", "8",
                 "--max-upload-bytes", str(limit), env=env) as server:
        result = bench.soak(server.url, server.proc.pid, token, by_name,
                            bench.schedule(160, bench.MIX, seed=3),
                            bench.schedule(40, bench.MIX, seed=4), clients=8, temp_dir=temp)
        assert server.proc.poll() is None
    print("\n" + bench.report(result, by_name))
    assert bench.check(result, by_name, max_growth_mb=50) == []
    assert len(result.outcomes) == 160
    assert {o.kind for o in result.outcomes} == set(by_name)  # every kind was sent
    assert sum(o.status >= 500 for o in result.outcomes) == 0
    logged = [r for r in server.requests() if r["path"].startswith("/api/v1/re")]
    assert len(logged) == sum(by_name[o.kind].endpoint == "restore" for o in result.outcomes) + (
        sum(n for (endpoint, _), n in result.warmup_counts.items() if endpoint == "restore"))


def test_overload_gets_clean_503_with_retry_after(megapixel):
    with process("--workers", "1", "--queue", "1") as server:
        url, proc = server.url, server.proc
        barrier = threading.Barrier(10)
        results = post_many(url, megapixel, clients=10, per_client=2, barrier=barrier)
        assert proc.poll() is None
        with httpx.Client(trust_env=False, timeout=30) as c:
            health = c.get(f"{url}/api/v1/health").json()
    statuses = [s for s, _, _ in results]
    assert len(statuses) == 20 and set(statuses) <= {200, 503}
    assert statuses.count(503) >= 10  # 10 at once, 2 places: most are refused
    assert statuses.count(200) >= 2
    for status, _, r in results:
        if status == 503:
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()["error"]["code"] == "busy"
    assert health["status"] == "ok" and health["pool"]["admitted"] == 0
    assert health["pool"]["rejected"] == statuses.count(503)
