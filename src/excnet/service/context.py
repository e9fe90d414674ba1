"""What the service knows about the request it is serving, for its log line and its metrics.

`RequestLog` (logs.py) opens one `RequestContext` per HTTP request and makes it current for that
request's task (a context variable, so that each concurrent request sees its own); the
admission middleware and the endpoints add to it (sizes, stages, phi, the cancel token).
"""

from __future__ import annotations

import re
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field

from .workers import CancelToken

#: Request ids accepted from X-Request-ID as they are; anything else gets a fresh id.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


@dataclass
class RequestContext:
    """One request: identity, sizes, outcome, per-stage seconds and its cancel token."""

    id: str
    method: str
    path: str
    client: str
    started: float = field(default_factory=time.perf_counter)
    time: float = field(default_factory=time.time)
    status: int = 0
    error: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    megapixels: float | None = None
    phi: tuple[float, float] | None = None
    stages: dict[str, float] = field(default_factory=dict)
    cancel: CancelToken = field(default_factory=CancelToken)

    @classmethod
    def from_scope(cls, scope: dict) -> RequestContext:
        headers = dict(scope.get("headers") or ())
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        client = scope.get("client")
        return cls(id=given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex,
                   method=scope.get("method", ""), path=scope.get("path", ""),
                   client=f"{client[0]}:{client[1]}" if client else "")

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


_current: ContextVar[RequestContext | None] = ContextVar("excnet_request", default=None)


def current() -> RequestContext | None:
    """The request being served by the calling task (None outside a request)."""
    return _current.get()


def enter(request: RequestContext) -> object:
    """Make `request` current; returns the handle `leave` needs."""
    return _current.set(request)


def leave(handle: object) -> None:
    _current.reset(handle)  # type: ignore[arg-type]
