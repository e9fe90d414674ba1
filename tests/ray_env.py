"""What the Ray tests share: Ray's environment, set before Ray is imported, and a sealed network.

Import this module before `ray` (its settings are read once per process): usage statistics
off, token authentication on with a token made for this test session (so no token file is
read or written). `private_network` runs a test's Ray processes where no packet can leave
the machine.
"""

from __future__ import annotations

import ctypes
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))

#: Stands in for the machine's network address inside `private_network`.
FAKE_LAN = "10.254.0.1"
_CLONE_NEWNET = 0x40000000


@contextmanager
def private_network() -> Iterator[bool]:
    """Run the calling thread, and the threads and processes it starts meanwhile, in a new
    network namespace: loopback only, where FAKE_LAN, an address of lo with the default route
    through lo, is what Ray takes for the machine's network address. Nothing sent there can
    leave; a server that listens on it or on every interface is caught by the socket test.

    Yields True; False where a namespace cannot be made (not root): the tests then rely on
    every Ray process being bound to 127.0.0.1.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if os.geteuid() != 0 or libc.unshare(_CLONE_NEWNET) != 0:
            yield False
            return
        try:
            for cmd in (["ip", "link", "set", "lo", "up"],
                        ["ip", "addr", "add", f"{FAKE_LAN}/32", "dev", "lo"],
                        ["ip", "route", "add", "default", "dev", "lo", "src", FAKE_LAN]):
                subprocess.run(cmd, check=True, capture_output=True)
            yield True
        finally:
            if libc.setns(saved, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "cannot return to the host network")
    finally:
        os.close(saved)


def interfaces() -> set[str]:
    """The network interfaces the calling thread sees."""
    out = subprocess.run(["ip", "-o", "link"], check=True, capture_output=True, text=True)
    return {line.split(":")[1].strip() for line in out.stdout.splitlines()}


_USERS = re.compile(r'\("([^"]*)",pid=(\d+),')


def listening(pids: set[int]) -> list[tuple[str, str, int]]:
    """(process name, local address, pid) of each TCP socket those processes listen on
    (`ss -ltnpH`)."""
    out = subprocess.run(["ss", "-ltnpH"], check=True, capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        for name, pid in _USERS.findall(line):
            if int(pid) in pids:
                found.append((name, fields[3], int(pid)))
    return found


def family(pid: int) -> set[int]:
    """A process and all its descendants."""
    proc = psutil.Process(pid)
    return {pid, *(p.pid for p in proc.children(recursive=True))}


def is_loopback(local_address: str) -> bool:
    """Whether an ss local address (127.0.0.1:PORT, [::ffff:127.0.0.1]:PORT, [::1]:PORT) is
    on loopback; `*:PORT` and `0.0.0.0:PORT` (every interface) are not."""
    host = local_address.rpartition(":")[0].strip("[]")
    host = host.removeprefix("::ffff:")
    return host == "::1" or host.startswith("127.")
