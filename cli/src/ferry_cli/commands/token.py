"""token hash: the tokens.yaml entry for a token (only its SHA-256 is stored)."""

from __future__ import annotations

import hashlib
import sys
from typing import Annotated

import typer

from ferry_cli.common import OutputOpt, command, session
from ferry_cli.errors import CliError, ExitCode
from ferry_cli.output import print_json

token_app = typer.Typer(name="token", help="API token helpers.", no_args_is_help=True)


def token_entry(digest: str, subject: str, email: str, roles: list[str]) -> str:
    """A tokens.yaml entry skeleton, as docs/api.md describes the file."""
    role_list = ", ".join(f'"{r}"' if ":" in r else r for r in roles)
    return (
        "tokens:\n"
        f"  - subject: {subject}\n"
        f"    email: {email}\n"
        f"    roles: [{role_list}]\n"
        f"    sha256: {digest}\n"
    )


@command(token_app, "hash")
def hash_token(
    ctx: typer.Context,
    token: Annotated[
        str, typer.Argument(help="The token; '-' reads it from stdin (keeps it out of history).")
    ],
    *,
    subject: Annotated[
        str, typer.Option("--subject", metavar="S", help="Identity name.")
    ] = "CHANGE-ME",
    email: Annotated[
        str, typer.Option("--email", metavar="E", help="Identity email.")
    ] = "someone@example.com",
    role: Annotated[
        list[str] | None,
        typer.Option(
            "--role", metavar="R", help="viewer, developer, releaser:<env> or admin; repeatable."
        ),
    ] = None,
    output: OutputOpt = None,
) -> None:
    """Print the tokens.yaml entry (with the token's sha256) for a new API token."""
    s = session(ctx, output)
    from_stdin = token == "-"  # noqa: S105 - "-" means stdin, it is not a password
    secret = sys.stdin.readline().strip() if from_stdin else token
    if not secret:
        raise CliError("the token is empty", ExitCode.USAGE)
    digest = hashlib.sha256(secret.encode()).hexdigest()
    roles = role or ["developer"]
    if s.json:
        print_json({"sha256": digest, "subject": subject, "email": email, "roles": roles})
        return
    sys.stdout.write(token_entry(digest, subject, email, roles))
