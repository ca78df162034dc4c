"""What every command shares: the global options, the session they resolve to, and the
error boundary that turns a :class:`CliError` into its message and exit code."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal, ParamSpec, TypeVar

import typer
from typer.core import TyperArgument, TyperCommand, TyperOption

from ferry_cli.errors import CliError, ExitCode
from ferry_cli.output import OutputFormat, print_error, print_json, print_table

if TYPE_CHECKING:
    from ferry_cli.api import ApiClient

P = ParamSpec("P")
R = TypeVar("R")

OutputOpt = Annotated[
    OutputFormat | None,
    typer.Option(
        "--output",
        "-o",
        help="table for people, json for scripts (one document on stdout).",
        metavar="table|json",
        case_sensitive=False,
        show_default=False,
    ),
]
ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="FERRY_SERVER",
        metavar="URL",
        help="Ferry API base URL [default: config file, else http://127.0.0.1:8080].",
        show_default=False,
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="FERRY_TOKEN",
        metavar="TOKEN",
        help="API bearer token [default: config file, else .ferry/dev-token for a local server].",
        show_default=False,
    ),
]


@dataclass
class Globals:
    """The options given before the command (``ferry --output json status``)."""

    server: str | None = None
    token: str | None = None
    output: OutputFormat = OutputFormat.TABLE


@dataclass
class Session:
    """One command's resolved options and, on first use, its API client."""

    server: str | None
    token: str | None
    fmt: OutputFormat
    _client: ApiClient | None = field(default=None, repr=False)

    @property
    def json(self) -> bool:
        return self.fmt is OutputFormat.JSON

    def client(self) -> ApiClient:
        if self._client is None:
            from ferry_cli.api import ApiClient
            from ferry_cli.config import resolve_api

            self._client = ApiClient(resolve_api(self.server, self.token))
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _globals(ctx: typer.Context | None) -> Globals:
    node: Any = ctx
    while node is not None:
        if isinstance(node.obj, Globals):
            return node.obj
        node = node.parent
    return Globals()


def session(
    ctx: typer.Context | None,
    output: OutputFormat | None = None,
    server: str | None = None,
    token: str | None = None,
) -> Session:
    """Merge a command's own options over the global ones; the API client closes with ``ctx``."""
    base = _globals(ctx)
    found = Session(
        server=server or base.server, token=token or base.token, fmt=output or base.output
    )
    if ctx is not None:
        ctx.call_on_close(found.close)
    return found


View = Literal[
    "release_view",
    "status_table",
    "service_view",
    "history_table",
    "artifacts_table",
    "dora_view",
    "halts_table",
]


def show(s: Session, document: dict[str, Any], view: View) -> None:
    """Print an API document: as JSON, or as the table ``ferry_cli.render.<view>`` draws.

    The view is named rather than passed so that ``ferry_cli.render`` (and Rich's tables)
    load only in table mode.
    """
    if s.json:
        print_json(document)
        return
    from ferry_cli import render

    print_table(getattr(render, view)(document))


def _format_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> OutputFormat:
    requested = kwargs.get("output")
    if isinstance(requested, OutputFormat):
        return requested
    ctx = next((a for a in [*args, *kwargs.values()] if isinstance(a, typer.Context)), None)
    return _globals(ctx).output


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Print a CliError (never a traceback) in the command's output format; exit with its code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except CliError as error:
            print_error(error, _format_of(args, kwargs))
            raise typer.Exit(int(error.code)) from None
        except KeyboardInterrupt:
            print_error(CliError("interrupted", ExitCode.REFUSED), _format_of(args, kwargs))
            raise typer.Exit(130) from None

    return wrapper


def _no_type(ctx: object) -> None:
    return None


class FerryCommand(TyperCommand):
    """A command whose help and usage errors name values as the docs do (``SERVICE``,
    ``--to ENV``), not as Typer does by default (``{service}``, ``<str>``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, TyperArgument):
                if param.metavar is None and param.name:
                    param.metavar = param.name.upper()
                # the argument's name says what it is; "<str>" after it says nothing more
                setattr(param, "display_type_rich", _no_type)  # noqa: B010
            elif isinstance(param, TyperOption) and param.metavar is None and not param.is_flag:
                long_names = [o for o in param.opts if o.startswith("--")] or param.opts
                param.metavar = long_names[0].lstrip("-").upper().replace("-", "_")

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = str(param.metavar)
                pieces.append(name if param.required else f"[{name}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


def command(
    app: typer.Typer, name: str | None = None, **kwargs: Any
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """``app.command`` with the error boundary around it."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        wrapped = handle_errors(func)
        app.command(name, cls=FerryCommand, **kwargs)(wrapped)
        return wrapped

    return decorate
