"""One error style for every ``hookwire`` command, in one place.

- A command that cannot do its job (a database that is not there, a conversation that does
  not exist, a log that cannot be read, a server that does not answer) prints
  ``hookwire <command>: error: <what went wrong and what to do>`` on stderr and exits 1.
- A usage error (an unknown option, a missing argument, a value of the wrong form), found by
  Click before the command runs or raised by it as ``typer.BadParameter``, prints
  ``hookwire <command>: error: <message>``, the command's usage line and where help is, and
  exits 2.

A command raises :class:`CommandError`, or lets a ``HookwireError`` or ``OSError`` through:
:class:`Command` turns both into the first form; :class:`Group`, the class of the ``hookwire``
command itself, prints every error. Typer's own error panels are not used: their text is cut
to the terminal's width, which a message saying what to do must not be. Commands are declared
with ``app.command(name, cls=Command)`` on a Typer app made by :func:`new_app`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from ..errors import HookwireError

__all__ = ["Command", "CommandError", "Group", "new_app"]

# The exceptions of the Click that Typer runs on: recent Typers carry their own copy of Click,
# earlier ones used the click package. The public typer.BadParameter derives from both classes.
_UsageError: type[Exception] = typer.BadParameter.__mro__[1]
_ClickException: type[Exception] = typer.BadParameter.__mro__[2]


class CommandError(Exception):
    """A command could not do its job: exit status 1, the message says why and what to do."""

    exit_code = 1

    def __init__(self, message: str, ctx: typer.Context | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: The command that failed (filled in by :class:`Command` when left out).
        self.ctx = ctx


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        # "No such file or directory: 'x'" rather than "[Errno 2] No such file or directory: 'x'"
        return exc.strerror if exc.filename is None else f"{exc.strerror}: {exc.filename}"
    return str(exc) or type(exc).__name__


class _PlainValues:
    """How Typer turns the text of an option into its value, for a parameter of text (``str``,
    ``list[str]``), a flag, or one with a ``parser``: recent Typers build a Pydantic
    ``TypeAdapter`` for every parameter, and importing Pydantic took a third of ``hookwire
    costs``' start-up. Any other parameter keeps Typer's own (the same ``coerce`` contract)."""

    __slots__ = ("_flag", "_many", "_parse")

    def __init__(self, parse: Callable[[Any], Any] | None, many: bool, flag: bool) -> None:
        self._parse = parse
        self._many = many
        self._flag = flag

    def _one(self, value: Any, param: Any, ctx: Any) -> Any:
        if self._flag:
            return bool(value)
        if self._parse is None:
            return value if isinstance(value, str) else str(value)
        try:
            return self._parse(value)
        except ValueError as exc:  # what Typer's own coercion reports as a bad value
            raise typer.BadParameter(str(exc), ctx=ctx, param=param) from exc

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        """``value`` (Click's text, a tuple of them, or the default) as the command gets it."""
        if value is None:
            return () if self._many else None
        if not self._many:
            return self._one(value, param, ctx)
        if isinstance(value, str):
            raise typer.BadParameter("Value must be an iterable.", ctx=ctx, param=param)
        return [self._one(item, param, ctx) for item in value]


def _plain_values(param: Any) -> None:
    """Give ``param`` :class:`_PlainValues` where it applies (a Typer that coerces through
    Pydantic keeps its coercion, built on first use, in ``_runtime_param``)."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None or getattr(param, "_runtime_param", False) is not None:
        return
    if descriptor.file_annotation is not None:
        return
    parse = descriptor.parameter_info.parser
    annotation = descriptor.annotation
    many = bool(param.multiple or param.nargs == -1)
    flag = annotation is bool and bool(getattr(param, "is_flag", False)) and not many
    if parse is None and not flag and annotation != (list[str] if many else str):
        return
    param._runtime_param = _PlainValues(parse, many, flag)


class Command(TyperCommand):
    """A ``hookwire`` subcommand: a ``HookwireError`` or ``OSError`` it raises becomes a
    :class:`CommandError` naming it."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Parse ``args`` into ``ctx``, text options without Pydantic (:class:`_PlainValues`)."""
        for param in self.get_params(ctx):  # with --help
            _plain_values(param)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        """Run the command, turning the errors it may meet into :class:`CommandError`."""
        try:
            return super().invoke(ctx)
        except CommandError as exc:
            if exc.ctx is None:
                exc.ctx = ctx
            raise
        except BrokenPipeError:
            raise  # the reader went away (``hookwire report ... | head``): Typer ends quietly
        except (HookwireError, OSError) as exc:
            raise CommandError(_describe(exc), ctx) from exc


def _path(exc: Exception) -> str:
    ctx = getattr(exc, "ctx", None)
    return "hookwire" if ctx is None else str(ctx.command_path)


def _show(exc: Exception) -> None:
    if isinstance(exc, CommandError):
        typer.echo(f"{_path(exc)}: error: {exc.message}", err=True)
        return
    message: str = exc.format_message()  # type: ignore[attr-defined]  # a Click exception's
    if type(exc).__name__ == "NoArgsIsHelpError":
        # The message is the command's help (rich help is printed as it is made, leaving "").
        if message:
            typer.echo(message, err=True)
        return
    typer.echo(f"{_path(exc)}: error: {message}", err=True)
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, _UsageError) and ctx is not None:
        typer.echo(ctx.get_usage(), err=True)
        typer.echo(f"Try '{_path(exc)} --help' for help.", err=True)


class Group(TyperGroup):
    """The ``hookwire`` command (and its command groups): prints every error in the one style
    and exits with its status."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Parse ``args`` into ``ctx``, text options and flags without Pydantic."""
        for param in self.get_params(ctx):  # with --help
            _plain_values(param)
        return super().parse_args(ctx, args)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line ``args``; standalone (as a script), exit with its status."""
        prog_name = prog_name or self.name
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            # Not standalone, so that Typer hands its errors here instead of printing them.
            status = super().main(
                args, prog_name, complete_var, False, windows_expand_args, **extra
            )
        except (CommandError, _ClickException) as exc:
            _show(exc)
            sys.exit(getattr(exc, "exit_code", 1))
        except typer.Abort:
            typer.echo("Aborted.", err=True)
            sys.exit(1)
        # Not standalone, Typer returns the status of ``typer.Exit``, else the command's value.
        sys.exit(status if isinstance(status, int) and not isinstance(status, bool) else 0)


def new_app(name: str | None = None, *, help: str) -> typer.Typer:
    """A Typer app whose errors follow the style above (for ``hookwire`` and its groups)."""
    return typer.Typer(
        name=name,
        help=help,
        cls=Group,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        # Plain help: Typer's Rich help imports Rich's Markdown, Syntax and Traceback (with
        # markdown-it and Pygments), which took two thirds of ``hookwire --help``'s start-up.
        rich_markup_mode=None,
    )
