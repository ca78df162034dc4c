"""halt, resume, halts, and artifact reject | unreject: stop the line, keep bad builds out.

Each change is asked of the API (docs/api.md, "Halts and bad artifacts"); git-writer
commits it to ``halts.yaml`` or ``rejected/<service>.yaml`` in the config repo.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ferry_cli.common import OutputOpt, ServerOpt, TokenOpt, command, session, show
from ferry_cli.output import console, print_json

Environment = Annotated[
    str, typer.Argument(help="The environment, or '*' (quoted) for every environment.")
]
Service = Annotated[str, typer.Argument(help="The service, as named in its artifact.json.")]
ArtifactId = Annotated[str, typer.Argument(help="The artifact id (see 'ferry artifacts').")]


def _told(answer: dict[str, object], what: str, where: str) -> None:
    console().print(
        f"{what} is {answer.get('status', 'requested')} (request {answer.get('requestId', '?')}); "
        f"git-writer commits it to {where}",
        markup=False,
    )


def register(app: typer.Typer, artifact_app: typer.Typer) -> None:
    @command(app, "halt")
    def halt(
        ctx: typer.Context,
        environment: Environment,
        *,
        reason: Annotated[
            str,
            typer.Option("--reason", "-r", metavar="TEXT", help="Why (shown to everyone refused)."),
        ],
        output: OutputOpt = None,
        server: ServerOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Stop the line: refuse every request to ENVIRONMENT but rollbacks (admin)."""
        s = session(ctx, output, server, token)
        answer = s.client().halt(environment, reason)
        if s.json:
            print_json(answer)
            return
        _told(answer, f"halt of {environment}", "halts.yaml")

    @command(app, "resume")
    def resume(
        ctx: typer.Context,
        environment: Environment,
        *,
        output: OutputOpt = None,
        server: ServerOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Lift the halt of ENVIRONMENT (admin)."""
        s = session(ctx, output, server, token)
        answer = s.client().resume(environment)
        if s.json:
            print_json(answer)
            return
        _told(answer, f"resume of {environment}", "halts.yaml")

    @command(app, "halts")
    def halts(
        ctx: typer.Context,
        *,
        output: OutputOpt = None,
        server: ServerOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """The halted environments: why, by whom, since when."""
        s = session(ctx, output, server, token)
        document = s.client().halts()
        if not s.json and not document.get("halts"):
            console().print("no environment is halted")
            return
        show(s, document, "halts_table")

    @command(artifact_app, "reject")
    def reject(
        ctx: typer.Context,
        service: Service,
        artifact_id: ArtifactId,
        *,
        reason: Annotated[
            str, typer.Option("--reason", "-r", metavar="TEXT", help="Why it is bad.")
        ],
        output: OutputOpt = None,
        server: ServerOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Mark an artifact bad: it is released and promoted nowhere (developer or above)."""
        s = session(ctx, output, server, token)
        answer = s.client().reject_artifact(service, artifact_id, reason)
        if s.json:
            print_json(answer)
            return
        _told(answer, f"mark on {artifact_id}", f"rejected/{service}.yaml")

    @command(artifact_app, "unreject")
    def unreject(
        ctx: typer.Context,
        service: Service,
        artifact_id: ArtifactId,
        *,
        output: OutputOpt = None,
        server: ServerOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Lift the mark on an artifact (developer or above)."""
        s = session(ctx, output, server, token)
        answer = s.client().unreject_artifact(service, artifact_id)
        if s.json:
            print_json(answer)
            return
        _told(answer, f"lifting the mark on {artifact_id}", f"rejected/{service}.yaml")
