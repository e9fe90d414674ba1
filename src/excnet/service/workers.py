"""A bounded pool of worker threads, each keeping its own warm `Restorer`, for the web service.

Admission is separate from execution so that memory stays bounded: a request takes a slot
(`try_admit`) before its upload is even read, and there are only `workers + queue` slots. The
`workers` threads run the jobs; up to `queue` admitted requests wait for one. A request that
finds no free slot is refused at once (the app answers 503 with `retry_after()`), so load
beyond capacity never piles up uploads or decoded images in memory.

Jobs run via `run_in_executor`, never on the event loop. Each thread builds its restorers
lazily (one per solver) and keeps them for its whole life, so the ExCNet network stays warm
from one request to the next, as in the paper's warm start.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from ..pipeline import Restorer

T = TypeVar("T")

#: Builds the restorer a worker keeps for one solver name.
RestorerFactory = Callable[[str], Restorer]


class WorkerPool:
    """`workers` threads with warm restorers and `queue` waiting places; see the module notes."""

    def __init__(self, make_restorer: RestorerFactory, workers: int = 2, queue: int = 8) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if queue < 0:
            raise ValueError("queue must be at least 0")
        self.workers, self.queue = workers, queue
        self._make_restorer = make_restorer
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="excnet-worker")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._admitted = 0
        self._running = 0
        self._mean_seconds = 1.0  # running mean of job time, for Retry-After
        self.completed = 0
        self.rejected = 0

    @property
    def capacity(self) -> int:
        return self.workers + self.queue

    def try_admit(self) -> bool:
        """Take a slot if one is free (True); otherwise count a rejection (False)."""
        with self._lock:
            if self._admitted >= self.capacity:
                self.rejected += 1
                return False
            self._admitted += 1
            return True

    def release(self) -> None:
        """Give back a slot taken by `try_admit`."""
        with self._lock:
            self._admitted -= 1

    def retry_after(self) -> int:
        """Whole seconds after which a refused client may expect a free slot (at least 1)."""
        with self._lock:
            waves = max(1, self._admitted) / self.workers
            return max(1, math.ceil(self._mean_seconds * waves))

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"workers": self.workers, "queue": self.queue, "admitted": self._admitted,
                    "running": self._running, "completed": self.completed,
                    "rejected": self.rejected}

    def restorer(self, solver: str) -> Restorer:
        """The calling worker thread's warm restorer for `solver` (built on first use)."""
        cache = getattr(self._local, "restorers", None)
        if cache is None:
            cache = self._local.restorers = {}
        if solver not in cache:
            cache[solver] = self._make_restorer(solver)
        return cache[solver]

    async def run(self, job: Callable[..., T], *args: object) -> T:
        """Run `job(*args)` on a worker thread and await its result without blocking the loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._timed, job, args)

    def _timed(self, job: Callable[..., T], args: tuple) -> T:
        with self._lock:
            self._running += 1
        start = time.perf_counter()
        try:
            return job(*args)
        finally:
            elapsed = time.perf_counter() - start
            with self._lock:
                self._running -= 1
                self.completed += 1
                self._mean_seconds += (elapsed - self._mean_seconds) / min(self.completed, 20)

    def shutdown(self) -> None:
        """Stop the threads once their current jobs finish."""
        self._executor.shutdown(wait=True, cancel_futures=True)
