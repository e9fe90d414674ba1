"""The app under uvicorn, with a graceful stop for deploys.

On SIGTERM (or Ctrl-C) the server stops accepting connections and reports not ready, lets the
requests it holds finish, and exits with status 0. After `refuse_after(grace)` seconds, what
is still waiting for a worker is answered 503 `shutting_down` (JSON) and what is running is
stopped at its next stage; uvicorn itself gives up on any connection still open after `grace`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from collections.abc import Generator

import uvicorn
from fastapi import FastAPI

from .workers import WorkerPool


def refuse_after(grace: float) -> float:
    """When, after SIGTERM, waiting jobs are refused: leaves running ones time to stop."""
    return max(0.0, grace - max(1.0, grace / 4))


class GracefulServer(uvicorn.Server):
    """uvicorn's server, draining the worker pool on a stop signal and exiting normally."""

    def __init__(self, config: uvicorn.Config, pool: WorkerPool, grace: float) -> None:
        super().__init__(config)
        self.pool, self.grace = pool, grace
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)

    def handle_exit(self, sig: int, frame) -> None:
        if not self.should_exit and self._loop is not None:
            self._loop.call_soon_threadsafe(self.pool.drain, refuse_after(self.grace))
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """As uvicorn's, but a stop signal that was handled is not raised again at the end:
        a drained, orderly stop exits with status 0."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        stops = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in stops}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def serve(app: FastAPI, sock: socket.socket, grace: float, log_level: str) -> None:
    """Serve `app` on the listening socket until stopped by a signal."""
    config = uvicorn.Config(app, log_level=log_level, log_config=None, access_log=False,
                            timeout_graceful_shutdown=grace)
    GracefulServer(config, app.state.pool, grace).run(sockets=[sock])
