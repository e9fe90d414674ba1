"""Prometheus metrics of one service instance (`/metrics`, text format, prometheus-client).

Each app has its own `CollectorRegistry`, never the process-global one, so several apps in one
process (tests, embedding) do not mix their counts. The pool's counters and gauges (admitted,
rejected, queue depth, running) are read from the pool when scraped, so they cannot drift.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .context import RequestContext
from .workers import JobTiming, WorkerPool

CONTENT_TYPE = CONTENT_TYPE_LATEST
#: Latency buckets in seconds: tens of milliseconds (small photos, direct solver) to minutes.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class PoolCollector:
    """The worker pool's state, read at scrape time."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool

    def collect(self):
        s = self.pool.stats()
        yield _counter("excnet_admitted", "requests given a pool slot", s["admitted_total"])
        yield _counter("excnet_rejected", "requests refused for want of a slot (503)",
                       s["rejected"])
        yield _counter("excnet_jobs_completed", "jobs finished by the workers", s["completed"])
        yield _gauge("excnet_queue_depth", "admitted requests not running on a worker",
                     s["admitted"] - s["running"])
        yield _gauge("excnet_running", "jobs running on a worker now", s["running"])
        yield _gauge("excnet_workers", "worker threads", s["workers"])
        yield _gauge("excnet_queue_capacity", "places for waiting requests", s["queue"])
        yield _gauge("excnet_draining", "1 while shutting down", int(self.pool.draining))


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class Metrics:
    """The counters and histograms of one app; `render()` is the /metrics body."""

    def __init__(self, pool: WorkerPool) -> None:
        self.registry = r = CollectorRegistry()
        r.register(PoolCollector(pool))
        self.requests = Counter("excnet_requests", "HTTP requests by endpoint, method and status",
                                ["endpoint", "method", "status"], registry=r)
        self.duration = Histogram("excnet_request_duration_seconds",
                                  "whole request, first byte in to last byte out",
                                  ["endpoint"], buckets=BUCKETS, registry=r)
        self.queue_wait = Histogram("excnet_queue_wait_seconds",
                                    "time a job waited for a worker thread", ["endpoint"],
                                    buckets=BUCKETS, registry=r)
        self.work = Histogram("excnet_work_seconds",
                              "time a job ran on a worker (decode, restore, encode)",
                              ["endpoint"], buckets=BUCKETS, registry=r)
        self.bytes_in = Counter("excnet_received_bytes", "request body bytes received",
                                ["endpoint"], registry=r)
        self.bytes_out = Counter("excnet_sent_bytes", "response body bytes sent",
                                 ["endpoint"], registry=r)
        self.images = Counter("excnet_images_restored", "images restored (restore, apply)",
                              registry=r)
        self.megapixels = Counter("excnet_megapixels_restored", "megapixels restored",
                                  registry=r)
        self.decode_errors = Counter("excnet_decode_errors", "uploads the decoder refused",
                                     ["kind"], registry=r)

    def observe_request(self, endpoint: str, request: RequestContext) -> None:
        self.requests.labels(endpoint, request.method, str(request.status)).inc()
        self.duration.labels(endpoint).observe(request.seconds)
        self.bytes_in.labels(endpoint).inc(request.bytes_in)
        self.bytes_out.labels(endpoint).inc(request.bytes_out)

    def observe_job(self, endpoint: str, timing: JobTiming) -> None:
        self.queue_wait.labels(endpoint).observe(timing.queued)
        if timing.work:
            self.work.labels(endpoint).observe(timing.work)

    def restored(self, megapixels: float) -> None:
        self.images.inc()
        self.megapixels.inc(megapixels)

    def render(self) -> bytes:
        return generate_latest(self.registry)
