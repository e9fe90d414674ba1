"""One log line per request (JSON or text), the request id, and the per-request metrics.

`RequestLog` is the outermost middleware: it opens the `RequestContext`, takes the request id
from `X-Request-ID` (or makes one) and echoes it in the response, counts bytes both ways,
notes the status and the error code of a refusal, and when the response is sent, logs the line
to the `excnet.access` logger and hands the request to the metrics.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Literal

from . import context
from .context import RequestContext
from .errors import error_response

LOGGER = "excnet.access"
#: Internal errors, with their traceback (on even with the request lines off).
ERROR_LOGGER = "excnet.error"
#: Error bodies are small; a longer body is not an error body worth parsing.
ERROR_BODY_LIMIT = 4096


def record(request: RequestContext) -> dict:
    """The log record of a finished request (JSON-ready)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(request.time))
    out = {"time": f"{stamp}.{int(request.time % 1 * 1000):03d}Z", "request_id": request.id,
           "method": request.method, "path": request.path, "status": request.status,
           "bytes_in": request.bytes_in, "bytes_out": request.bytes_out,
           "megapixels": None if request.megapixels is None else round(request.megapixels, 6),
           "phi_s": None, "phi_h": None,
           "seconds": {**{k: round(v, 4) for k, v in request.stages.items()},
                       "total": round(request.seconds, 4)},
           "client": request.client}
    if request.phi is not None:
        out["phi_s"], out["phi_h"] = (round(p, 5) for p in request.phi)
    if request.error:
        out["error"] = request.error
    return out


class JsonFormatter(logging.Formatter):
    def format(self, rec: logging.LogRecord) -> str:
        request = getattr(rec, "request", None)
        if request is not None:
            return json.dumps(record(request), separators=(",", ":"))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(rec.created))
        out = {"time": f"{stamp}.{int(rec.msecs):03d}Z", "level": rec.levelname,
               "message": rec.getMessage()}
        if rec.exc_info:
            out["traceback"] = self.formatException(rec.exc_info)
        return json.dumps(out)


class TextFormatter(logging.Formatter):
    def format(self, rec: logging.LogRecord) -> str:
        request = getattr(rec, "request", None)
        if request is None:
            line = f"{self.formatTime(rec)} {rec.levelname} {rec.getMessage()}"
            return f"{line}\n{self.formatException(rec.exc_info)}" if rec.exc_info else line
        r = record(request)
        extra = "".join(f" {k}={v}" for k, v in (("mp", r["megapixels"]), ("phi_s", r["phi_s"]),
                                                  ("phi_h", r["phi_h"]), ("error", r.get("error")))
                        if v is not None)
        stages = " ".join(f"{k}={v:.3f}" for k, v in r["seconds"].items())
        return (f"{r['time']} {r['client']} \"{r['method']} {r['path']}\" {r['status']} "
                f"in={r['bytes_in']} out={r['bytes_out']}{extra} {stages} id={r['request_id']}")


def configure(fmt: Literal["json", "text"], access: bool = True) -> None:
    """Log to stderr in `fmt`: a line per request (unless `access` is off) and uvicorn's own."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    for name in (LOGGER, ERROR_LOGGER, "uvicorn"):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.propagate = False
    logging.getLogger(LOGGER).setLevel(logging.INFO if access else logging.CRITICAL + 1)


class RequestLog:
    """ASGI middleware: request context, X-Request-ID, byte counts, the log line, metrics.

    It also answers what nothing else did: an unexpected exception before the response began
    becomes a 500 JSON error naming the request id (with X-Request-ID, counted and logged like
    any other answer), its traceback logged to `ERROR_LOGGER`, never sent to the client.
    """

    def __init__(self, app, observe: Callable[[RequestContext], None]) -> None:
        self.app, self.observe = app, observe
        self.logger = logging.getLogger(LOGGER)
        self.errors = logging.getLogger(ERROR_LOGGER)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = RequestContext.from_scope(scope)
        error_body: list[bytes] = []

        async def counting_receive():
            message = await receive()
            request.bytes_in += len(message.get("body", b""))
            return message

        async def tagging_send(message) -> None:
            if message["type"] == "http.response.start":
                request.status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()),
                                                  (b"x-request-id", request.id.encode())]}
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                request.bytes_out += len(body)
                if request.status >= 400 and sum(map(len, error_body)) < ERROR_BODY_LIMIT:
                    error_body.append(body)
            await send(message)

        handle = context.enter(request)
        try:
            await self.app(scope, counting_receive, tagging_send)
        except Exception as exc:
            if request.status:  # the response had begun: uvicorn closes the connection
                raise
            self.errors.error("internal error in %s %s (request %s)", request.method,
                              request.path, request.id, exc_info=True)
            await error_response(
                500, "internal", f"internal error ({type(exc).__name__}); request id "
                                 f"{request.id}")(scope, counting_receive, tagging_send)
        except BaseException:
            if not request.status:
                request.status = 500
            raise
        finally:
            context.leave(handle)
            request.error = request.error or _error_code(b"".join(error_body))
            self.observe(request)
            self.logger.info("%s %s %s", request.method, request.path, request.status,
                             extra={"request": request})


def _error_code(body: bytes) -> str | None:
    try:
        return json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
