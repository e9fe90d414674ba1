"""The `excnet` command line: one module per sub-command, this one wires them together."""

from __future__ import annotations

import argparse
import sys

from .common import UsageError


def build_parser() -> argparse.ArgumentParser:
    from . import restore

    parser = argparse.ArgumentParser(
        prog="excnet", description="Zero-shot restoration of back-lit photos and videos.")
    parser.add_argument("--version", action="version", version=f"excnet {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    restore.add_parsers(sub)
    for name in ("video", "serve", "batch"):
        try:
            module = __import__(f"excnet.cli.{name}", fromlist=["add_parsers"])
        except ModuleNotFoundError as exc:
            if exc.name != f"excnet.cli.{name}":
                raise
            continue
        module.add_parsers(sub)
    return parser


def _version() -> str:
    from .. import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as exc:
        print(f"excnet: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("excnet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
