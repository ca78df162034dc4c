"""dlq list | replay: what a service dead-lettered, why, and sending it round again."""

from __future__ import annotations

from typing import Annotated

import typer

from ferry_cli.commands.broker_options import (
    DEFAULT_AMQP_URL,
    DEFAULT_EXCHANGE,
    DEFAULT_QUEUE_PREFIX,
    AmqpUrlOpt,
    ExchangeOpt,
    QueuePrefixOpt,
)
from ferry_cli.common import OutputOpt, command, session
from ferry_cli.output import console, note, print_json, print_table

dlq_app = typer.Typer(
    name="dlq",
    help="Operators: read and replay a service's dead-letter queue (<prefix>.<service>.dlq).",
    no_args_is_help=True,
)

Service = Annotated[
    str,
    typer.Argument(
        help="artifact-ingest, git-writer, promotion or notifier (the watcher consumes nothing)."
    ),
]


@command(dlq_app, "list")
def list_dlq(
    ctx: typer.Context,
    service: Service,
    *,
    limit: Annotated[
        int, typer.Option("--limit", "-n", metavar="N", min=1, help="Show at most this many.")
    ] = 50,
    amqp_url: AmqpUrlOpt = DEFAULT_AMQP_URL,
    queue_prefix: QueuePrefixOpt = DEFAULT_QUEUE_PREFIX,
    output: OutputOpt = None,
) -> None:
    """Show dead letters with their reason, error code and attempts (they stay queued)."""
    s = session(ctx, output)
    import asyncio

    from ferry_cli.broker import BrokerTarget, list_dead_letters

    target = BrokerTarget(amqp_url=amqp_url, exchange="", queue_prefix=queue_prefix)
    listing = asyncio.run(list_dead_letters(target, service, limit))
    if s.json:
        print_json(
            {
                "queue": listing.queue,
                "total": listing.total,
                "messages": [m.to_json() for m in listing.messages],
            }
        )
        return
    from rich.markup import escape
    from rich.table import Table

    if not listing.messages:
        console().print(f"{escape(listing.queue)} is empty")
        return
    table = Table(
        title=f"{escape(listing.queue)}: {listing.total} message(s)", title_justify="left"
    )
    for column in ("#", "event", "subject", "code", "attempts", "failed at", "reason"):
        table.add_column(column, overflow="fold")
    for m in listing.messages:
        table.add_row(
            str(m.position),
            escape(f"{m.event_type}\n{m.event_id}"),
            escape(m.subject),
            escape(m.code),
            "" if m.attempts is None else str(m.attempts),
            escape(m.failed_at),
            escape(m.reason),
        )
    print_table(table)
    if listing.total > len(listing.messages):
        note(f"showing {len(listing.messages)} of {listing.total}; use --limit to see more")


@command(dlq_app, "replay")
def replay(
    ctx: typer.Context,
    service: Service,
    *,
    limit: Annotated[
        int, typer.Option("--limit", "-n", metavar="N", min=1, help="Replay at most this many.")
    ] = 100,
    direct: Annotated[
        bool,
        typer.Option(
            "--direct",
            help="Send to the service's own queue only, instead of the exchange (where every "
            "consumer of the event type sees it again).",
        ),
    ] = False,
    amqp_url: AmqpUrlOpt = DEFAULT_AMQP_URL,
    exchange: ExchangeOpt = DEFAULT_EXCHANGE,
    queue_prefix: QueuePrefixOpt = DEFAULT_QUEUE_PREFIX,
    output: OutputOpt = None,
) -> None:
    """Republish dead letters with their original routing key; each is acked once confirmed."""
    s = session(ctx, output)
    import asyncio

    from ferry_cli.broker import BrokerTarget, DeadLetter, replay_dead_letters

    def replayed_one(letter: DeadLetter) -> None:
        if not s.json:
            note(f"replayed {letter.event_type} {letter.event_id} ({letter.code})")

    target = BrokerTarget(amqp_url=amqp_url, exchange=exchange, queue_prefix=queue_prefix)
    result = asyncio.run(
        replay_dead_letters(target, service, limit, direct=direct, on_replayed=replayed_one)
    )
    if s.json:
        print_json(
            {
                "queue": result.queue,
                "replayed": [m.to_json() for m in result.replayed],
                "skipped": [{**m.to_json(), "skipReason": why} for m, why in result.skipped],
                "remaining": result.remaining,
            }
        )
        return
    for letter, why in result.skipped:
        note(f"[yellow]left in the queue:[/] {letter.event_id}: {why}")
    console().print(
        f"replayed {len(result.replayed)} message(s) from {result.queue}; "
        f"{result.remaining} left there",
        markup=False,
    )
