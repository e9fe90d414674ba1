"""Load on loopback: a real `excnet serve` process, bounded in requests and time.

* 200 restorations of a 1 MP JPEG from 8 concurrent clients, queue 8: all succeed, and the
  server's peak resident memory (VmHWM) stays bounded.
* Overload (more simultaneous clients than workers + queue): clean 503s with Retry-After, the
  rest succeed, and the server is still healthy afterwards.

Requests per second and p95 latency are printed (pytest -s shows them); they are not asserted.
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_backlit
from serving import process

from excnet.imageio import decode_image, encode_image

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


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_200_megapixel_requests_from_8_clients(megapixel):
    workers = str(min(2, os.cpu_count() or 1))
    with process("--workers", workers, "--queue", "8") as server:
        url, proc = server.url, server.proc
        with httpx.Client(trust_env=False, timeout=120) as c:  # warm-up, and the idle baseline
            assert c.post(f"{url}/api/v1/restore",
                          files={"file": ("p.jpg", megapixel, "image/jpeg")}).status_code == 200
        idle = peak_rss(proc.pid)
        t0 = time.perf_counter()
        results = post_many(url, megapixel, clients=8, per_client=25)
        wall = time.perf_counter() - t0
        peak = peak_rss(proc.pid)
        assert proc.poll() is None
    assert len(results) == 200
    assert [s for s, _, _ in results if s != 200] == []
    for _, _, r in results[::40]:
        assert r.headers["content-type"] == "image/jpeg"
        assert decode_image(r.content).pixels.shape == (1000, 1000, 3)
    latencies = np.array([t for _, t, _ in results])
    print(f"\nload: 200 x 1 MP from 8 clients, {workers} workers: "
          f"{200 / wall:.2f} req/s, p50 {np.percentile(latencies, 50):.3f} s, "
          f"p95 {np.percentile(latencies, 95):.3f} s; peak RSS {peak / MIB:.0f} MiB "
          f"(after warm-up {idle / MIB:.0f} MiB)")
    # At most workers + queue requests are held: their uploads, images and buffers, a few
    # tens of MB each for 1 MP. Without the bound, memory would grow with the backlog.
    assert peak - idle < 256 * MIB


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
