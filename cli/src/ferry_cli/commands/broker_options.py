"""Options of the commands that talk to RabbitMQ (artifact push, dlq)."""

from __future__ import annotations

from typing import Annotated

import typer

AmqpUrlOpt = Annotated[
    str,
    typer.Option(
        "--amqp-url",
        metavar="URL",
        envvar="FERRY_AMQP_URL",
        help="RabbitMQ URL.",
        show_default=False,
    ),
]
ExchangeOpt = Annotated[
    str,
    typer.Option(
        "--exchange", metavar="NAME", envvar="FERRY_EXCHANGE", help="Ferry's topic exchange."
    ),
]
QueuePrefixOpt = Annotated[
    str,
    typer.Option(
        "--queue-prefix",
        metavar="PREFIX",
        envvar="FERRY_QUEUE_PREFIX",
        help="Prefix of queue names.",
    ),
]
DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672/"
DEFAULT_EXCHANGE = "ferry.events"
DEFAULT_QUEUE_PREFIX = "ferry"
