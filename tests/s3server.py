"""A moto S3 server for the tests, on 127.0.0.1 only (a free port), stopped on exit."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def moto_on_loopback() -> Iterator[str]:
    """Start moto's S3 server on 127.0.0.1; yields its endpoint URL."""
    moto_server = pytest.importorskip("moto.server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
