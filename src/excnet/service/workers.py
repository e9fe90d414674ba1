"""A bounded pool of worker threads, each keeping its own warm `Restorer`, for the web service.

Admission is separate from execution so that memory stays bounded: a request takes a slot
(`try_admit`) before its upload is even read, and there are only `workers + queue` slots. The
`workers` threads run the jobs; up to `queue` admitted requests wait for one. A request that
finds no free slot is refused at once (the app answers 503 with `retry_after()`), so load
beyond capacity never piles up uploads or decoded images in memory.

Jobs run on the threads, never on the event loop. Each thread builds its restorers lazily (one
per solver) and keeps them for its whole life, so the ExCNet network stays warm from one
request to the next, as in the paper's warm start.

A job can be cancelled (its client went away, or the server is stopping) through its
`CancelToken`: a job still waiting is dropped at once; a running one stops at its next
`checkpoint()` (the job functions call it between decode, restore and encode), since a thread
cannot be interrupted in the middle of numpy or torch work.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import math
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from ..pipeline import Restorer

T = TypeVar("T")

#: (code, reason) of the jobs cancelled because the server stops.
SHUTTING_DOWN = ("shutting_down", "the server is shutting down; try again")
#: (code, reason) of the jobs cancelled because their client went away.
CLIENT_GONE = ("client_closed", "the client closed the connection")

#: Builds the restorer a worker keeps for one solver name.
RestorerFactory = Callable[[str], Restorer]


def _malloc_trim() -> Callable[[], object]:
    """glibc's malloc_trim(0), or a no-op elsewhere.

    A job allocates and frees tens to hundreds of MB in pieces below glibc's mmap threshold
    (which grows with use); glibc keeps such freed memory in its per-thread arenas, so a
    long-running service's RSS would creep up with the mix of sizes it saw. Trimming after
    each job hands it back to the system (a few milliseconds).
    """
    name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    return (lambda: trim(0)) if trim is not None else (lambda: None)


release_memory = _malloc_trim()


class Cancelled(Exception):
    """A job given up before it finished: `code` is why in one word, `reason` in words."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class CancelToken:
    """Cancels one job: set on the event loop, seen by the loop (await) and the worker thread."""

    def __init__(self) -> None:
        self._set = threading.Event()
        self._waiter = asyncio.Event()
        self.code = self.reason = ""

    def cancel(self, code: str, reason: str) -> None:
        """Cancel (the first reason wins). Call on the event loop thread."""
        if not self._set.is_set():
            self.code, self.reason = code, reason
            self._set.set()
            self._waiter.set()

    def error(self) -> Cancelled:
        return Cancelled(self.code, self.reason)

    @property
    def cancelled(self) -> bool:
        return self._set.is_set()

    async def wait(self) -> None:
        await self._waiter.wait()


@dataclass
class JobTiming:
    """Seconds one job waited for a thread, ran on it, and spent in each stage it reached."""

    queued: float = 0.0
    work: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)


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
        self._tokens: set[CancelToken] = set()
        self.draining = False
        self._refusing: tuple[str, str] | None = None  # once set, every job is cancelled
        self.admitted_total = 0
        self.completed = 0
        self.rejected = 0

    @property
    def capacity(self) -> int:
        return self.workers + self.queue

    def try_admit(self) -> bool:
        """Take a slot if one is free (True); otherwise count a rejection (False)."""
        with self._lock:
            if self._admitted >= self.capacity or self.draining:
                self.rejected += 1
                return False
            self._admitted += 1
            self.admitted_total += 1
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
                    "rejected": self.rejected, "admitted_total": self.admitted_total}

    def drain(self, refuse_after: float) -> None:
        """Stop admitting; after `refuse_after` seconds cancel what is still waiting or running.

        Call on the event loop. Requests admitted before keep their place until then.
        """
        self.draining = True
        asyncio.get_running_loop().call_later(refuse_after, self.cancel_all, SHUTTING_DOWN)

    def cancel_all(self, reason: tuple[str, str]) -> None:
        """Cancel every job not yet finished, and all later ones (call on the event loop)."""
        self._refusing = reason
        for token in list(self._tokens):
            token.cancel(*reason)

    def restorer(self, solver: str) -> Restorer:
        """The calling worker thread's warm restorer for `solver` (built on first use)."""
        cache = getattr(self._local, "restorers", None)
        if cache is None:
            cache = self._local.restorers = {}
        if solver not in cache:
            cache[solver] = self._make_restorer(solver)
        return cache[solver]

    async def run(self, job: Callable[..., T], *args: object, token: CancelToken | None = None,
                  timing: JobTiming | None = None) -> T:
        """Run `job(*args)` on a worker thread and await its result without blocking the loop.

        Raises `Cancelled` if `token` is cancelled first: at once if the job had not started,
        else when the job reaches its next `checkpoint()`. `timing` receives its seconds.
        """
        token = token or CancelToken()
        if self._refusing:
            token.cancel(*self._refusing)
        self._tokens.add(token)
        future = self._executor.submit(self._timed, job, args, token, timing or JobTiming(),
                                       time.perf_counter())
        done = asyncio.wrap_future(future)
        cancelled = asyncio.ensure_future(token.wait())
        try:
            await asyncio.wait((done, cancelled), return_when=asyncio.FIRST_COMPLETED)
            if not done.done() and future.cancel():
                raise token.error()
            try:
                return await done
            except asyncio.CancelledError:
                # The server's grace ran out while the job was still between checkpoints: the
                # client gets the clean refusal, not a broken connection or a 500.
                if not self.draining:
                    raise
                raise Cancelled(*SHUTTING_DOWN) from None
        finally:
            cancelled.cancel()
            self._tokens.discard(token)

    def stage(self, name: str, seconds: float) -> None:
        """Note the seconds the calling worker's current job spent in a stage."""
        timing = getattr(self._local, "timing", None)
        if timing is not None:
            timing.stages[name] = seconds

    def checkpoint(self) -> None:
        """Raise `Cancelled` if the calling worker's current job was cancelled."""
        token = getattr(self._local, "token", None)
        if token is not None and token.cancelled:
            raise token.error()

    def _timed(self, job: Callable[..., T], args: tuple, token: CancelToken,
               timing: JobTiming, submitted: float) -> T:
        start = time.perf_counter()
        timing.queued = start - submitted
        self._local.token, self._local.timing = token, timing
        try:
            self.checkpoint()  # cancelled while it waited for this thread
            with self._lock:
                self._running += 1
            try:
                return job(*args)
            finally:
                timing.work = time.perf_counter() - start
                with self._lock:
                    self._running -= 1
                    self.completed += 1
                    self._mean_seconds += ((timing.work - self._mean_seconds)
                                           / min(self.completed, 20))
                release_memory()
        finally:
            self._local.token = self._local.timing = None

    def shutdown(self) -> None:
        """Stop the threads once their current jobs finish."""
        self._executor.shutdown(wait=True, cancel_futures=True)
