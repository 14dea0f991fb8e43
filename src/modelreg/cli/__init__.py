"""The ``modelreg`` command line: thin commands over the Registry facade.

Errors are converted in exactly one place, :func:`main`: a one-line message on
stderr and an exit code per error class; ``--traceback`` shows the full trace.
Global options are accepted before or after the command, also in one place:
:func:`hoist_global_options`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import typer
import typer.main
from rich.console import Console
from typer.core import TyperOption
from typer.exceptions import TyperException

# Importing a command module registers its commands on `app`, in this order in --help.
from modelreg.cli import serve  # noqa: F401

# isort: split
from modelreg.cli import ab, governance, worker  # noqa: F401
from modelreg.cli.app import app
from modelreg.cli.exit_codes import EXIT_CODES, INTERNAL_ERROR, exit_code
from modelreg.errors import InvalidInputError, ModelregError


def _takes_value(option: TyperOption) -> bool:
    return not option.is_flag and not option.count and option.nargs > 0


def _options_of(command: object) -> dict[str, TyperOption]:
    """Every spelling (``--x``, ``--no-x``) of a (click) command's options."""
    return {
        name: param
        for param in getattr(command, "params", ())
        if isinstance(param, TyperOption)
        for name in (*param.opts, *param.secondary_opts)
    }


def hoist_global_options(root: object, args: Sequence[str]) -> list[str]:
    """``args`` with the root's options moved in front of the command.

    Click reads a group's options only before the subcommand, while the docs
    write ``modelreg up --home DIR``. Both ``--opt value`` and ``--opt=value``
    move; a command's own option of the same name, the value of another
    option, and anything after ``--`` stay where they are.
    """
    global_options = _options_of(root)
    hoisted: list[str] = []
    kept: list[str] = []
    command: object = root
    own: dict[str, TyperOption] = {}
    words = iter(args)
    for word in words:
        if word == "--":
            kept += [word, *words]
            break
        name = word.split("=", 1)[0]
        option = own.get(name) or global_options.get(name)
        if option is not None:
            moved = kept if name in own else hoisted
            moved.append(word)
            if _takes_value(option) and "=" not in word:
                value = next(words, None)
                if value is None:
                    # Moved in front alone it would swallow the command name as its value.
                    raise InvalidInputError(f"option {name} needs a value")
                moved.append(value)
            continue
        kept.append(word)
        subcommands = getattr(command, "commands", None)
        if subcommands is not None and not word.startswith("-"):
            # Down the chain of (sub)groups: the command's own options shadow global ones.
            command = subcommands.get(word)
            own = _options_of(command) if command is not None else {}
    return [*hoisted, *kept]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and turn every error into a message and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    show_trace = "--traceback" in args or os.environ.get("MODELREG_TRACEBACK") == "1"
    args = [a for a in args if a != "--traceback"]
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        command = typer.main.get_command(app)
        args = hoist_global_options(command, args)
        # Without standalone mode click returns a command's typer.Exit code instead of raising.
        code = command.main(args=args, prog_name="modelreg", standalone_mode=False)
        if isinstance(code, int):
            return code
    except typer.Exit as done:
        return int(done.exit_code or 0)
    except typer.Abort:
        err.print("aborted")
        return 130
    except TyperException as exc:
        # Usage errors from Typer's click: a missing option, a bad value, `--help` needs.
        format_message = getattr(exc, "format_message", None)
        message = format_message() if callable(format_message) else str(exc)
        if message.strip():  # empty when Typer has already printed the help
            err.print(f"error: {message}", markup=False)
        return int(getattr(exc, "exit_code", 2))
    except ModelregError as exc:
        if show_trace:
            err.print_exception()
        err.print(f"error: {exc.message}", markup=False)
        return exit_code(exc)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns bugs into a message
        if show_trace:
            err.print_exception()
        err.print(
            f"internal error: {type(exc).__name__}: {exc}. Re-run with --traceback and report it.",
            markup=False,
        )
        return exit_code(exc)
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


__all__ = ["EXIT_CODES", "INTERNAL_ERROR", "exit_code", "main", "run"]
