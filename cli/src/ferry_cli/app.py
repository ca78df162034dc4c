"""The ``ferry`` command: the composition root of the CLI.

Only Typer and the command modules' signatures load at start-up; httpx, Rich
renderings, aio-pika and the event library are imported by the commands that
need them, so ``ferry --help`` and API commands start quickly.
"""

from __future__ import annotations

import typer

from ferry_cli.commands import insights, releases, safety, services
from ferry_cli.commands.artifact import artifact_app
from ferry_cli.commands.dlq import dlq_app
from ferry_cli.commands.policy import policy_app
from ferry_cli.commands.token import token_app
from ferry_cli.common import Globals, OutputOpt, ServerOpt, TokenOpt
from ferry_cli.output import OutputFormat

app = typer.Typer(
    name="ferry",
    help="Ferry: release, promote and roll back services through the config repository.\n\n"
    "Exit codes: 0 ok, 1 refused or failed, 2 usage or input error, "
    "3 server or broker unreachable, 4 not authenticated or not allowed.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


@app.callback()
def _global_options(
    ctx: typer.Context,
    server: ServerOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = None,
) -> None:
    """Options that apply to every command (each command takes them too)."""
    ctx.obj = Globals(server=server, token=token, output=output or OutputFormat.TABLE)


releases.register(app)
services.register(app)
insights.register(app)
safety.register(app, artifact_app)
app.add_typer(artifact_app)
app.add_typer(policy_app)
app.add_typer(dlq_app)
app.add_typer(token_app)

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point (``ferry``)."""
    import logging

    # Libraries (aiormq, aio-pika, httpx) log failures themselves; the CLI reports each
    # problem once, as a message with what to do, so their log records go nowhere.
    logging.getLogger().addHandler(logging.NullHandler())
    logging.getLogger().setLevel(logging.CRITICAL)
    app()
