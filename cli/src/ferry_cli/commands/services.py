"""status, describe, history and artifacts: what runs where, and what there is."""

from __future__ import annotations

from typing import Annotated

import typer

from ferry_cli.common import OutputOpt, ServerOpt, TokenOpt, command, session, show
from ferry_cli.output import console

Service = Annotated[str, typer.Argument(help="The service, as named in its artifact.json.")]
Limit = Annotated[
    int, typer.Option("--limit", "-n", metavar="N", min=1, max=500, help="At most this many.")
]


def register(app: typer.Typer) -> None:
    @command(app, "status")
    def status(
        ctx: typer.Context,
        *,
        output: OutputOpt = None,
        server: ServerOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Every service by environment: the artifact and its rollout state."""
        s = session(ctx, output, server, token)
        document = s.client().services()
        if not s.json and not document.get("services"):
            console().print("no services yet: push an artifact with 'ferry artifact push'")
            return
        show(s, document, "status_table")

    @command(app, "describe")
    def describe(
        ctx: typer.Context,
        service: Service,
        *,
        output: OutputOpt = None,
        server: ServerOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """One service in each environment: artifact, commit, who released it, rollout."""
        s = session(ctx, output, server, token)
        show(s, s.client().service(service), "service_view")

    @command(app, "history")
    def history(
        ctx: typer.Context,
        service: Service,
        *,
        env: Annotated[
            str | None, typer.Option("--env", "-e", metavar="ENV", help="Only this environment.")
        ] = None,
        limit: Limit = 50,
        output: OutputOpt = None,
        server: ServerOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """What was released where, newest first (from the config repo's history)."""
        s = session(ctx, output, server, token)
        show(s, s.client().history(service, environment=env, limit=limit), "history_table")

    @command(app, "artifacts")
    def artifacts(
        ctx: typer.Context,
        service: Service,
        *,
        branch: Annotated[
            str | None,
            typer.Option("--branch", "-b", metavar="B", help="Only artifacts of this branch."),
        ] = None,
        limit: Limit = 50,
        output: OutputOpt = None,
        server: ServerOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """The artifacts stored for a service, newest first, and the environments each has
        manifests for."""
        s = session(ctx, output, server, token)
        show(s, s.client().artifacts(service, branch=branch, limit=limit), "artifacts_table")
