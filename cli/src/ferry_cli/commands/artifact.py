"""artifact push: what CI runs after a build (release-manager's ``artifact push``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ferry_cli.commands.broker_options import (
    DEFAULT_AMQP_URL,
    DEFAULT_EXCHANGE,
    AmqpUrlOpt,
    ExchangeOpt,
)
from ferry_cli.common import OutputOpt, command, session
from ferry_cli.errors import CliError, ExitCode
from ferry_cli.output import console, note, print_json

artifact_app = typer.Typer(
    name="artifact",
    help="Publish what CI built; mark an artifact bad or lift the mark.",
    no_args_is_help=True,
)


@command(artifact_app, "push")
def push(
    ctx: typer.Context,
    artifact_json: Annotated[
        Path, typer.Argument(help="The artifact.json CI wrote (release-manager's format).")
    ],
    *,
    manifests: Annotated[
        Path,
        typer.Option(
            "--manifests",
            "-m",
            metavar="DIR",
            help="Folder with one sub-folder per environment of *.yaml files.",
        ),
    ],
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Wait until the artifact is stored or rejected."),
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", metavar="S", help="Seconds to wait with --wait.", min=0.1)
    ] = 60.0,
    max_bytes: Annotated[
        int,
        typer.Option(
            "--max-bytes",
            metavar="N",
            envvar="FERRY_MAX_EVENT_BYTES",
            help="Largest event the services accept.",
            min=1,
        ),
    ] = 1024 * 1024,
    amqp_url: AmqpUrlOpt = DEFAULT_AMQP_URL,
    exchange: ExchangeOpt = DEFAULT_EXCHANGE,
    output: OutputOpt = None,
) -> None:
    """Publish ferry.artifact.published.v1 for a build, confirmed by the broker."""
    s = session(ctx, output)
    from ferry_cli.artifact_files import read_artifact, read_manifests

    artifact = read_artifact(artifact_json)
    files, warnings = read_manifests(manifests)
    for warning in warnings:
        note(f"[yellow]warning:[/] {warning}")

    import asyncio

    from ferry_cli.broker import BrokerTarget, publish_event
    from ferry_events import ArtifactPublished, CloudEvent, encode

    event = CloudEvent.new(ArtifactPublished(artifact=artifact, manifests=files), source="ferry/ci")
    size = len(encode(event))
    if size > max_bytes:
        raise CliError(
            f"the event is {size} bytes, over the limit of {max_bytes} bytes the services accept",
            ExitCode.USAGE,
            hint="leave out what the cluster does not need, or raise FERRY_MAX_EVENT_BYTES "
            "for every service and for this command",
        )
    summary: dict[str, Any] = {
        "eventId": event.id,
        "correlationId": event.correlationid,
        "type": event.type,
        "exchange": exchange,
        "service": artifact.get("service"),
        "artifactId": artifact.get("id"),
        "environments": sorted(files),
        "bytes": size,
    }
    target = BrokerTarget(amqp_url=amqp_url, exchange=exchange)

    def published() -> None:
        if s.json:
            return
        out = console()
        out.print(
            f"published {event.type} for {artifact.get('service')} {artifact.get('id')} "
            f"({', '.join(sorted(files))})",
            markup=False,
        )
        out.print(f"event id:       {event.id}", markup=False)
        out.print(f"correlation id: {event.correlationid}", markup=False)

    def progress(_: Any) -> None:
        if not s.json:
            note("accepted by artifact-ingest; storing")

    outcome = asyncio.run(
        publish_event(
            target,
            event,
            wait=timeout if wait else None,
            on_published=published,
            on_progress=progress,
        )
    )
    if outcome is not None:
        summary["outcome"] = {
            "type": outcome.type,
            "eventId": outcome.id,
            "status": "stored" if outcome.type.endswith(".stored.v1") else "rejected",
            "data": outcome.data,
        }
    if s.json:
        print_json(summary)
    elif outcome is not None and summary["outcome"]["status"] == "stored":
        console().print(
            f"stored at {outcome.data.get('path', '?')} in commit "
            f"{outcome.data.get('commitSha', '?')}",
            markup=False,
        )
    if outcome is not None and summary["outcome"]["status"] == "rejected":
        reasons = [_reason_line(r) for r in outcome.data.get("reasons") or []]
        raise CliError(
            f"artifact-ingest rejected {artifact.get('service')} {artifact.get('id')}",
            details=reasons,
            hint="fix the artifact or its manifests and push again",
        )


def _reason_line(reason: dict[str, object]) -> str:
    """One rejection reason; the field is shown only when the message does not name it."""
    message = str(reason.get("message") or "")
    field = reason.get("field")
    if field and not message.startswith(str(field)):
        message = f"{field}: {message}"
    return f"{message} ({reason.get('code')})"
