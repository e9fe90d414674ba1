"""`excnet serve`: the web app and REST API under uvicorn."""

from __future__ import annotations

import argparse
import os
import socket
import sys

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
    p.add_argument("--max-upload-bytes", type=int, default=32 * 1024 * 1024, metavar="N",
                   help="largest accepted upload (default 32 MiB)")
    p.add_argument("--max-pixels", type=int, default=40_000_000, metavar="N",
                   help="largest accepted image in pixels (default 40 M)")
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
                   help="uvicorn log level (default warning: quiet)")
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

    import torch
    import uvicorn

    from ..service import Settings, create_app

    torch.set_num_threads(args.torch_threads or max(1, (os.cpu_count() or 1) // args.workers))
    settings = Settings(max_upload_bytes=args.max_upload_bytes, max_pixels=args.max_pixels,
                        workers=args.workers, queue=args.queue, solver=args.solver,
                        arch=args.arch, max_iters=args.max_iters, seed=args.seed)
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
    config = uvicorn.Config(create_app(settings), log_level=args.log_level,
                            access_log=args.log_level in ("info", "debug"))
    with sock:
        uvicorn.Server(config).run(sockets=[sock])
    return 0
