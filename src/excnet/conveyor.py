"""Many photos at once in one process: while one photo is decoded, the next is restored and
another encoded and written, so every core works all the time.

Each of `workers` threads takes a whole file job (read, restore, write) with its own
`Restorer` (a warm network stays with its thread). The stages of neighbouring photos overlap
because the heavy parts release the GIL: libjpeg-turbo in Pillow and OpenCV, OpenCV's
filters and NumPy's large-array loops. Threads instead of processes: nothing starts before
there is work, nothing is pickled, and the imports are paid once. A thread that finishes a
file takes the next one at once, so uneven stages balance themselves.

Memory is bounded: at most `workers` photos are decoded at a time; jobs waiting for a thread
are only paths. Closing the iterator (or Ctrl-C in the consumer) cancels the jobs not
started and waits for the running ones: each finishes its atomic write (temp file, rename)
or its error, so no temp file and no half-written output is left behind.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from .memory import keep_freed_memory

J = TypeVar("J")
R = TypeVar("R")

#: Jobs handed to the pool ahead of the results, per thread: a thread that finishes a file
#: finds its next job waiting, while the results still to be yielded stay few.
LOOKAHEAD = 2
_END = object()


def convey(jobs: Iterable[J], make_step: Callable[[], Callable[[J], R]], workers: int,
           ordered: bool = False) -> Iterator[R]:
    """Yield step(job) for every job, computed in `workers` threads.

    make_step is called once in each thread, on its first job (so a thread that never gets
    work builds nothing); the step it returns does that thread's jobs. Results come in
    completion order, or in the order of `jobs` when `ordered`. A step should turn bad input
    into a result; an exception it raises ends the iteration (after the running jobs).
    The process keeps freed memory for the next photo (`keep_freed_memory`).
    """
    local = threading.local()

    def run(job: J) -> R:
        step = getattr(local, "step", None)
        if step is None:
            step = local.step = make_step()
        return step(job)

    jobs = iter(jobs)
    keep_freed_memory()
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="excnet")
    pending: dict[Future[R], int] = {}
    done: dict[int, R] = {}  # ordered mode: finished results waiting for their turn
    submitted = yielded = 0
    exhausted = False
    try:
        while True:
            while not exhausted and submitted - yielded < LOOKAHEAD * max(1, workers):
                job = next(jobs, _END)
                if job is _END:
                    exhausted = True
                    break
                pending[pool.submit(run, job)] = submitted
                submitted += 1
            if not pending and not done:
                return
            if ordered and yielded in done:
                yielded += 1
                yield done.pop(yielded - 1)
                continue
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=pending.__getitem__):
                index = pending.pop(future)
                if ordered:
                    done[index] = future.result()
                else:
                    yielded += 1
                    yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
