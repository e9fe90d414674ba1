"""Bearer-token authentication for the REST API and /metrics.

Tokens come from `--token`, the `EXCNET_TOKEN` environment variable and/or a token file (one
token a line; blank lines and `#` comments ignored), so that several clients can hold their own
token and one can be rotated without a restart of the others. Every check compares against all
tokens in constant time (`hmac.compare_digest`, no early exit), so response times do not tell
how much of a guess was right.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import error_response, refuse

#: Shortest token accepted: a guessable token is no protection.
MIN_TOKEN_LENGTH = 16


class TokenError(ValueError):
    """An unusable token or token file (message names it)."""


@dataclass(frozen=True)
class Tokens:
    """A set of accepted bearer tokens; empty means no authentication."""

    values: tuple[bytes, ...] = ()

    @classmethod
    def of(cls, tokens: Iterable[str]) -> Tokens:
        values = []
        for token in tokens:
            token = token.strip()
            if not token:
                continue
            if len(token) < MIN_TOKEN_LENGTH or not token.isascii() or any(
                    c.isspace() for c in token):
                raise TokenError(f"a token must be at least {MIN_TOKEN_LENGTH} printable ASCII "
                                 "characters without spaces")
            values.append(token.encode("ascii"))
        return cls(tuple(values))

    def __bool__(self) -> bool:
        return bool(self.values)

    def accepts(self, authorization: bytes | None) -> bool:
        """Whether an `Authorization` header value carries one of the tokens."""
        if not authorization or not authorization[:7].lower() == b"bearer ":
            return False
        given = authorization[7:].strip()
        ok = False
        for token in self.values:
            ok |= hmac.compare_digest(given, token)
        return ok


def read_token_file(path: Path) -> list[str]:
    """The tokens in a token file: one a line, blank lines and `#` comments ignored."""
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise TokenError(f"cannot read token file {path} ({reason})") from None
    tokens = [line.strip() for line in text.splitlines()]
    tokens = [t for t in tokens if t and not t.startswith("#")]
    if not tokens:
        raise TokenError(f"token file {path} has no token")
    return tokens


def is_loopback(host: str) -> bool:
    """Whether `host` only listens on this machine (127.0.0.0/8, ::1 or localhost)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class BearerAuth:
    """ASGI middleware: `/api/v1/...` needs an API token, `/metrics` a metrics token.

    `open_paths` (liveness, readiness, the OpenAPI schema) stay open; so do the page and its
    static files, which ask the user for the token. Refusals are 401 with the usual JSON body,
    sent once the upload has been read and discarded (see `refuse`).
    """

    def __init__(self, app, api: Tokens, metrics: Tokens, api_prefix: str,
                 metrics_path: str, open_paths: frozenset[str], max_body: int,
                 request_timeout: float) -> None:
        self.app, self.api, self.metrics = app, api, metrics
        self.api_prefix, self.metrics_path, self.open_paths = api_prefix, metrics_path, open_paths
        self.max_body, self.request_timeout = max_body, request_timeout

    def tokens_for(self, path: str) -> Tokens:
        if path == self.metrics_path:
            return self.metrics
        if path.startswith(self.api_prefix) and path not in self.open_paths:
            return self.api
        return Tokens()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            tokens = self.tokens_for(scope["path"])
            if tokens and not tokens.accepts(dict(scope["headers"]).get(b"authorization")):
                given = b"authorization" in dict(scope["headers"])
                message = ("the token is not valid" if given else
                           "this server needs a token: send 'Authorization: Bearer TOKEN'")
                response = error_response(401, "unauthorized", message,
                                          {"WWW-Authenticate": "Bearer"})
                await refuse(response, scope, receive, send, self.max_body,
                             self.request_timeout)
                return
        await self.app(scope, receive, send)
