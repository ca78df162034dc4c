"""``ferry insights``: the DORA metrics of an environment, from the insights service."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from ferry_cli.common import OutputOpt, TokenOpt, command, session, show

DEFAULT_INSIGHTS = "http://127.0.0.1:8085"


def register(app: typer.Typer) -> None:
    @command(app, "insights")
    def insights(
        ctx: typer.Context,
        *,
        service: Annotated[
            str | None, typer.Option("--service", "-s", metavar="S", help="Only this service.")
        ] = None,
        squad: Annotated[
            str | None,
            typer.Option("--squad", "-q", metavar="Q", help="Only artifacts of this squad."),
        ] = None,
        env: Annotated[
            str, typer.Option("--env", "-e", metavar="E", help="The environment.")
        ] = "prod",
        days: Annotated[
            int, typer.Option("--days", "-d", metavar="N", min=1, max=365, help="The window.")
        ] = 30,
        to: Annotated[
            datetime | None,
            typer.Option(
                "--to",
                metavar="TIME",
                help="End of the window, ISO 8601 (default: now).",
                formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"],
            ),
        ] = None,
        insights_url: Annotated[
            str,
            typer.Option(
                "--insights",
                envvar="FERRY_INSIGHTS_URL",
                metavar="URL",
                help="The insights service's base URL.",
            ),
        ] = DEFAULT_INSIGHTS,
        output: OutputOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Deployments per day, lead time, change failure rate and time to restore (DORA),
        over the window and week by week. Definitions: docs/insights.md."""
        from ferry_cli.api import ApiClient
        from ferry_cli.config import resolve_api

        s = session(ctx, output, None, token)
        params: dict[str, str | int] = {"environment": env, "days": days}
        if service:
            params["service"] = service
        if squad:
            params["squad"] = squad
        if to is not None:
            params["to"] = to.isoformat()
        with ApiClient(resolve_api(insights_url, s.token)) as client:
            document = client.dora(params)
        show(s, document, "dora_view")
