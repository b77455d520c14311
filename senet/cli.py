"""The `senet` command line: a thin dispatcher over senet.commands.*."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from pathlib import Path

from senet import __version__
from senet.commands import COMMANDS
from senet.errors import SenetError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="senet", description="Squeeze-and-Excitation ablation suite."
    )
    parser.add_argument("--version", action="version", version=f"senet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"senet.commands.{name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
    except BrokenPipeError:  # `senet --help | head`
        return _closed_pipe()
    args.argv = argv  # the command as typed, for the advice a command prints
    try:
        code = int(args._run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the exit flush
        return code
    except SenetError as exc:
        print(f"senet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # before OSError, its parent
        return _closed_pipe()
    except OSError as exc:
        # A full disk anywhere (a summary, a table): one line, like the checkpoint's.
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or not exc.filename:
            raise
        from senet.disk import write_error

        advice = "free some space there, then run the command again"
        print(f"senet {args.command}: error: {write_error(exc, Path(exc.filename), advice)}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"senet {args.command}: interrupted", file=sys.stderr)
        return 130


def _closed_pipe() -> int:
    """The reader left early (`senet status --json | head`): end quietly.

    Python would print a traceback for the failed write, then a second one when
    it flushes stdout at exit; point stdout at devnull so the exit flush is silent.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return 141  # 128 + SIGPIPE, what a shell reports for a closed pipe


if __name__ == "__main__":
    sys.exit(main())
