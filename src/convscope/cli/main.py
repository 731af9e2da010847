"""Entry point of the ``convscope`` command.

Each subcommand lives in its own module and contributes ``add_parser(subparsers)``; errors
that convscope raises on purpose (:class:`~convscope.core.errors.ConvscopeError`) are printed
as one line, ``convscope: error: ...``, with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from convscope import __version__
from convscope.core.errors import ConvscopeError

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every subcommand has ``--help``)."""
    from convscope.cli import commands, demo, explain, overlay, regions, sensitivity

    parser = argparse.ArgumentParser(
        prog="convscope",
        description="Understand convolutional neural networks: attribution, sensitivity, "
        "influence, concepts, representations. Run `convscope demo` for a tour.",
    )
    parser.add_argument("--version", action="version", version=f"convscope {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo.add_parser(sub)
    commands.add_parsers(sub)
    explain.add_parser(sub)
    regions.add_parser(sub)
    sensitivity.add_parser(sub)
    overlay.add_parser(sub)
    overlay.add_serve_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``convscope`` command; return the exit status."""
    parser = build_parser()
    arglist = list(sys.argv[1:] if argv is None else argv)
    if arglist[:2] == ["overlay", "serve"]:
        # `overlay serve DIR` shares its first word with `overlay IMAGE...`; argparse cannot
        # tell them apart, so it is dispatched to its own (hidden) subcommand.
        arglist = ["overlay-serve", *arglist[2:]]
    args = parser.parse_args(arglist)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConvscopeError as exc:
        print(f"convscope: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("convscope: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
