"""`excnet serve`: the web app and REST API under uvicorn."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

from ..defaults import DEFAULT_SOLVER, SOLVERS
from .common import UsageError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the web app and REST API",
                       description="Serve the excnet page and the REST API (/api/v1, "
                                   "documented at /api/docs).")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000,
                   help="port to listen on (default 8000; 0 picks a free one)")
    p.add_argument("--workers", type=int, default=2,
                   help="restorations run at once, each with a warm restorer (default 2)")
    p.add_argument("--queue", type=int, default=8,
                   help="requests that may wait for a worker; more get 503 (default 8)")
    p.add_argument("--max-upload-bytes", type=int, default=100 * 1024 * 1024, metavar="N",
                   help="largest accepted upload (default 100 MiB: camera RAW files)")
    p.add_argument("--max-pixels", type=int, default=60_000_000, metavar="N",
                   help="largest accepted image in pixels (default 60 M)")
    p.add_argument("--solver", choices=SOLVERS, default=DEFAULT_SOLVER,
                   help=f"default estimator (default {DEFAULT_SOLVER})")
    p.add_argument("--arch", choices=("small", "reference"), default="small",
                   help="network width for --solver excnet (default small)")
    p.add_argument("--max-iters", type=int, default=1000, metavar="N",
                   help="cap on training iterations per image (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="network initialisation seed")
    p.add_argument("--torch-threads", type=int, default=None, metavar="N",
                   help="torch threads per process (default: cores / workers)")
    p.add_argument("--log-level", default="warning",
                   choices=("critical", "error", "warning", "info", "debug"),
                   help="uvicorn's own log level (default warning: quiet)")
    p.add_argument("--log-format", choices=("json", "text"), default="json",
                   help="request log: one JSON object or one text line per request (default "
                        "json)")
    p.add_argument("--no-access-log", action="store_true", help="no line per request")
    g = p.add_argument_group("authentication (needed to listen beyond loopback)")
    g.add_argument("--token", metavar="TOKEN",
                   help="bearer token every /api/v1 call must send (or set EXCNET_TOKEN; "
                        "at least 16 characters)")
    g.add_argument("--token-file", type=Path, metavar="FILE",
                   help="file of accepted tokens, one a line (# comments allowed)")
    g.add_argument("--metrics-token", metavar="TOKEN",
                   help="token for /metrics instead of the API token (or EXCNET_METRICS_TOKEN)")
    g.add_argument("--no-auth", action="store_true",
                   help="serve without authentication even on a non-loopback address")
    g = p.add_argument_group("time limits")
    g.add_argument("--grace", type=float, default=30.0, metavar="SECONDS",
                   help="on SIGTERM, time given to the requests in flight (default 30)")
    g.add_argument("--request-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="time an upload may take to arrive, else 408 (default 60)")
    p.set_defaults(run=run_serve)


def _listen(host: str, port: int) -> socket.socket:
    """A bound, listening socket for host:port (IPv4 or IPv6); OSError if impossible."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def run_serve(args: argparse.Namespace) -> int:
    for name in ("workers", "max_upload_bytes", "max_pixels", "max_iters"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if args.queue < 0:
        raise UsageError("--queue must be at least 0")
    if not 0 <= args.port <= 65535:
        raise UsageError("--port must be within 0..65535")
    if args.torch_threads is not None and args.torch_threads < 1:
        raise UsageError("--torch-threads must be at least 1")
    if not args.grace >= 0:
        raise UsageError("--grace must be at least 0")
    if not args.request_timeout > 0:
        raise UsageError("--request-timeout must be more than 0")
    tokens, metrics_tokens = _tokens(args)

    import torch

    from ..service import Settings, create_app
    from ..service.logs import configure as configure_logs
    from ..service.server import serve

    torch.set_num_threads(args.torch_threads or max(1, (os.cpu_count() or 1) // args.workers))
    settings = Settings(max_upload_bytes=args.max_upload_bytes, max_pixels=args.max_pixels,
                        workers=args.workers, queue=args.queue, solver=args.solver,
                        arch=args.arch, max_iters=args.max_iters, seed=args.seed,
                        request_timeout=args.request_timeout, tokens=tokens,
                        metrics_tokens=metrics_tokens)
    try:
        sock = _listen(args.host, args.port)
    except OSError as exc:
        print(f"excnet: cannot listen on {args.host}:{args.port} ({exc.strerror or exc})",
              file=sys.stderr)
        return 1
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"excnet: serving on http://{shown}:{port}/ (Ctrl-C to stop)", file=sys.stderr,
          flush=True)
    configure_logs(args.log_format, access=not args.no_access_log)
    with sock:
        serve(create_app(settings), sock, args.grace, args.log_level)
    return 0


def _tokens(args: argparse.Namespace):
    """The API and metrics tokens from the options and environment; refuses an open network
    listener (a usage error naming --token and --no-auth)."""
    from ..service.auth import TokenError, Tokens, is_loopback, read_token_file

    given = [t for t in (args.token or os.environ.get("EXCNET_TOKEN"),) if t]
    metrics = args.metrics_token or os.environ.get("EXCNET_METRICS_TOKEN")
    try:
        if args.token_file is not None:
            given += read_token_file(args.token_file)
        tokens = Tokens.of(given)
        metrics_tokens = Tokens.of([metrics]) if metrics else None
    except TokenError as exc:
        raise UsageError(str(exc)) from None
    if args.no_auth and tokens:
        raise UsageError("--no-auth contradicts the token given (--token, --token-file or "
                         "EXCNET_TOKEN)")
    if not tokens and not args.no_auth and not is_loopback(args.host):
        raise UsageError(f"refusing to serve on {args.host} without authentication: give "
                         "--token (or EXCNET_TOKEN, --token-file), or --no-auth to allow it")
    return tokens, metrics_tokens
