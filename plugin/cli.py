"""The `onnxstyle` command: builds the parser and dispatches to one module per subcommand.

Each subcommand is a module of plugin/commands/ with NAME and HELP, and either
`add_parser(subparsers)` (its argparse subparser, with `set_defaults(run=...)`) or, when it parses
its own arguments (export, gimp), `main(argv)`. Adding a command (e.g. `batch`) is that module and
one line in COMMANDS below; its options come from core/options.py through commands/options.py,
and a run that shows progress and answers Ctrl-C uses commands/terminal.py (commands/stylize.py
shows how).

Errors the user can act on (StyleError and subclasses) print one line `onnxstyle: error: ...` and
exit 2, like argparse's own usage errors. Ctrl-C, SIGTERM and SIGHUP cancel a run and exit
128 + the signal (130 for Ctrl-C); an unexpected error (a bug) exits 1, its traceback shown only
with --debug.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from onnxstyle.core.errors import Cancelled, StyleError, first_line, is_out_of_memory
from onnxstyle.plugin.commands import batch, export, frames, gimp, info, stylize
from onnxstyle.plugin.commands.terminal import PROG, error, say

COMMANDS = (
    stylize,
    frames,
    batch,
    info,
    export,
    gimp,
)  # one line per command, in the order --help lists them
EXIT_USER_ERROR = 2  # argparse's code for usage errors; we use it for every user-facing error
EXIT_BUG = 1
EXIT_CANCELLED = 130  # 128 + SIGINT, what shells report for Ctrl-C


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 user error, 130 cancelled, 1 bug)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        command = _own_parser(_first_positional(argv))
        if command is not None:
            # Its own parser sees its arguments untouched (`onnxstyle export --help` is its own).
            at = argv.index(command.NAME)
            return command.main([a for a in argv[at + 1 :] if a != "--debug"])
        args = build_parser().parse_args(argv)
        return args.run(args)
    except SystemExit as exc:  # argparse's --help/--version (0) and usage errors (2)
        return (
            exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USER_ERROR)
        )
    except StyleError as exc:
        error(str(exc))
        return EXIT_USER_ERROR
    except (Cancelled, KeyboardInterrupt):
        say("cancelled; nothing written")
        return EXIT_CANCELLED
    except Exception as exc:  # a bug (or memory): one line, the traceback only when asked for
        if is_out_of_memory(exc):
            error("out of memory; try a smaller --max-size or --tile-budget, or --device cpu")
            return EXIT_USER_ERROR
        if debug:
            traceback.print_exc()
        first = first_line(exc) if str(exc).strip() else ""
        error(
            f"unexpected {type(exc).__name__}{': ' + first if first else ''}"
            + ("" if debug else " (rerun with --debug for the traceback)")
        )
        return EXIT_BUG


def _first_positional(argv: list[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg
        if arg == "--":
            return None
    return None


def _own_parser(name: str | None):
    """The command module named `name` if it parses its own arguments."""
    for command in COMMANDS:
        if command.NAME == name and not hasattr(command, "add_parser"):
            return command
    return None


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line, like every other error of the command."""

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line (commands with their own parser are listed, parsed by themselves)."""
    parser = _Parser(prog=PROG, description="Neural style transfer (Gatys et al.) on ONNX Runtime.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {info.version(PROG)}")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of unexpected errors"
    )
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )
    for command in COMMANDS:
        if hasattr(command, "add_parser"):
            command.add_parser(commands)
        else:
            commands.add_parser(command.NAME, help=command.HELP, add_help=False)
    return parser


if __name__ == "__main__":
    sys.exit(main())
