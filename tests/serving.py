"""The service on loopback for tests: in a thread (uvicorn) or as a real `excnet serve` process."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

SERVE = "import sys; from excnet.cli import main; sys.exit(main())"


@contextmanager
def in_thread(app):
    """uvicorn serving `app` on 127.0.0.1 in a thread; yields the base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not srv.started and thread.is_alive():
        thread.join(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()


@dataclass
class ServerProcess:
    """A running `excnet serve`: its URL, process, and the stderr lines read so far."""

    url: str
    proc: subprocess.Popen
    lines: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def requests(self) -> list[dict]:
        """The JSON request log lines so far."""
        out = []
        for line in list(self.lines):
            if line.startswith("{"):
                record = json.loads(line)
                if "request_id" in record:
                    out.append(record)
        return out


@contextmanager
def process(*options: str, env: dict | None = None, timeout: float = 60):
    """`excnet serve` on 127.0.0.1, a free port, JSON request log; yields a ServerProcess.

    Stops it with SIGTERM (then SIGKILL after `timeout` seconds) unless the test did.
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, "serve", "--port", "0", "--solver", "direct", *options],
        stderr=subprocess.PIPE, text=True, env=env)
    reader = None
    try:
        line = proc.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, f"server did not start: {line!r}"
        server = ServerProcess(f"http://127.0.0.1:{match.group(1)}", proc)
        reader = threading.Thread(target=_read_lines, args=(proc.stderr, server.lines),
                                  daemon=True)
        reader.start()
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if reader is not None:
            reader.join(10)
        proc.stderr.close()


def _read_lines(stream, lines: list[str]) -> None:
    try:
        for line in stream:
            lines.append(line.rstrip("\n"))
    except ValueError:  # closed
        pass
