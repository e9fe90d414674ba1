"""The service's refusals: `ApiError` and its JSON body {"error": {"code", "message"}}."""

from __future__ import annotations

import asyncio

from fastapi.responses import JSONResponse


class ApiError(Exception):
    """A refusal: HTTP status, a short machine code and a plain-words message."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


class DecodeError(ApiError):
    """An upload the decoder refused (counted by kind in the metrics)."""


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


async def refuse(response: JSONResponse, scope, receive, send, limit: int,
                 timeout: float) -> None:
    """Send a refusal after reading and discarding the request body.

    A client still sending its upload when the answer comes and the connection closes would
    get a reset connection instead of the answer. So the body is read first (nothing is kept),
    up to `limit` bytes within `timeout` seconds; beyond that the answer goes out regardless,
    with `Connection: close`.
    """
    headers = dict(scope["headers"])
    if b"content-length" in headers or b"transfer-encoding" in headers:
        size, whole = 0, False
        try:
            async with asyncio.timeout(timeout):
                while size <= limit:
                    message = await receive()
                    size += len(message.get("body", b""))
                    if message["type"] == "http.disconnect" or not message.get("more_body"):
                        whole = True
                        break
        except TimeoutError:
            pass
        if not whole:
            response.headers["Connection"] = "close"
    await response(scope, receive, send)
