"""The broker topology: one topic exchange, and per service a quorum queue, its delay
queues for retries and its dead-letter queue.

```
ferry.events (topic) --<event type>--> <prefix>.<service>            quorum, durable
                                        |  temporary error: copy to
                                        v
                       <prefix>.<service>.retry.<n>   quorum, x-message-ttl = delay n,
                                        |              dead-letters back to the service queue
                                        v
                       <prefix>.<service>.dlq         permanent errors, retries exhausted,
                                                      and (by the broker) deliveries over
                                                      x-delivery-limit
```

Retries and dead letters travel through the service's own direct exchange,
``<prefix>.<service>.dlx`` (routing key = the target queue's name), never the
default exchange: RabbitMQ checks write permission on the default exchange as
``amq.default`` for every queue at once, so a user allowed to use it could
publish into any queue. With a per-service exchange, the broker's permissions
confine each service to its own queues.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from ferry_events.contract import PARTIES, consumed_by
from ferry_events.deadletter import (
    dead_letter_queue,
    redelivery_exchange,
    retry_queue,
    service_queue,
)
from ferry_runtime.settings import RuntimeSettings


@dataclass(frozen=True, slots=True)
class ServiceQueues:
    """Names and arguments of one service's queues."""

    service: str
    prefix: str
    routing_keys: tuple[str, ...]
    retry_delays: tuple[float, ...]
    delivery_limit: int = 20
    single_active_consumer: bool = False

    @property
    def main(self) -> str:
        return service_queue(self.prefix, self.service)

    @property
    def dead_letter(self) -> str:
        return dead_letter_queue(self.prefix, self.service)

    @property
    def redelivery_exchange(self) -> str:
        """The service's direct exchange for retries and dead letters."""
        return redelivery_exchange(self.prefix, self.service)

    def retry(self, level: int) -> str:
        return retry_queue(self.prefix, self.service, level)

    def main_arguments(self) -> dict[str, Any]:
        args: dict[str, Any] = {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": self.redelivery_exchange,
            "x-dead-letter-routing-key": self.dead_letter,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
        if self.single_active_consumer:
            args["x-single-active-consumer"] = True
        return args

    def retry_arguments(self, level: int) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-message-ttl": int(self.retry_delays[level] * 1000),
            "x-dead-letter-exchange": self.redelivery_exchange,
            "x-dead-letter-routing-key": self.main,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }


async def declare_exchange(channel: AbstractChannel, name: str) -> AbstractExchange:
    """The durable topic exchange every event goes through."""
    return await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)


async def declare_redelivery_exchange(
    channel: AbstractChannel, queues: ServiceQueues
) -> AbstractExchange:
    """The service's direct exchange for retries and dead letters."""
    return await channel.declare_exchange(
        queues.redelivery_exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )


async def declare_service_queues(
    channel: AbstractChannel,
    exchange: AbstractExchange,
    queues: ServiceQueues,
    redelivery: AbstractExchange | None = None,
) -> AbstractQueue:
    """Declare the service queue (bound to its routing keys), its retry and dead-letter
    queues, and (unless given, already declared) the direct exchange that connects them."""
    if redelivery is None:
        redelivery = await declare_redelivery_exchange(channel, queues)
    dead = await channel.declare_queue(
        queues.dead_letter, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dead.bind(redelivery, routing_key=queues.dead_letter)
    for level in range(len(queues.retry_delays)):
        retry = await channel.declare_queue(
            queues.retry(level), durable=True, arguments=queues.retry_arguments(level)
        )
        await retry.bind(redelivery, routing_key=queues.retry(level))
    queue = await channel.declare_queue(
        queues.main, durable=True, arguments=queues.main_arguments()
    )
    await queue.bind(redelivery, routing_key=queues.main)
    for key in queues.routing_keys:
        await queue.bind(exchange, routing_key=key)
    return queue


#: Services whose queue one consumer at a time reads (the broker's single active consumer):
#: git-writer, the one writer of the config repository, takes its batches in order.
SINGLE_ACTIVE_CONSUMERS: frozenset[str] = frozenset({"git-writer"})


def contract_queues(settings: RuntimeSettings) -> dict[str, ServiceQueues]:
    """Every consuming service's queues, as its runtime declares them with ``settings``,
    from the event contract (``ferry_events.contract``): who binds which routing keys."""
    return {
        party: ServiceQueues(
            service=party,
            prefix=settings.queue_prefix,
            routing_keys=tuple(sorted(consumed_by(party))),
            retry_delays=settings.retry_delays,
            delivery_limit=settings.delivery_limit,
            single_active_consumer=party in SINGLE_ACTIVE_CONSUMERS,
        )
        for party in PARTIES
        if consumed_by(party)
    }


async def declare_topology(settings: RuntimeSettings) -> list[ServiceQueues]:
    """Declare the exchange and every service's queues and bindings, then disconnect.

    Run before any service starts (``make run`` does; in a cluster, a Job or an init
    container with an identity that may configure every ``ferry.*`` queue), so that an
    event published while a consumer is still starting waits in that consumer's queue
    instead of reaching only the queues that happened to be bound already. Declaring is
    idempotent: the services declare the same queues again when they start.
    """
    declared = list(contract_queues(settings).values())
    connection = await aio_pika.connect(settings.amqp_url, timeout=10)
    try:
        channel = await connection.channel()
        exchange = await declare_exchange(channel, settings.exchange)
        for queues in declared:
            await declare_service_queues(channel, exchange, queues)
    finally:
        await connection.close()
    return declared


def main() -> None:
    """``python -m ferry_runtime.topology``: declare the topology with the ``FERRY_*`` settings."""
    import asyncio

    settings = RuntimeSettings()
    declared = asyncio.run(declare_topology(settings))
    for queues in declared:
        print(f"{queues.main}: {', '.join(queues.routing_keys)}")  # noqa: T201 - a CLI's output


if __name__ == "__main__":
    main()
