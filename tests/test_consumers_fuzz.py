"""Every consumer, as its bootstrap wires it, against hostile deliveries (in-process).

Hypothesis generates what a publisher with broker access can send on each routing key a
service's queue is bound to: structured and binary content mode, wrong types and versions,
huge strings, deep JSON, bodies that are not UTF-8, headers of every AMQP type, and data
close enough to each event's schema to reach the handlers. Each delivery must end acked (its
effect done, or a rejection event published) or dead-lettered with a code and a reason; none
escapes the consumer, none is retried for being hostile, none is left unsettled.

The service's real consumer runs over in-memory messages (``ferry_testing.fuzz``), so the
examples take milliseconds; ``tests/test_consumers_hostile_broker.py`` sends a sample of the
same through RabbitMQ. ``FERRY_FUZZ_EXAMPLES=20`` runs twenty times the examples.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given

from ferry_events.contract import ARTIFACT_INGEST, GIT_WRITER, INSIGHTS, NOTIFIER, PROMOTION
from ferry_gitwriter.bootstrap import build as build_git_writer
from ferry_gitwriter.settings import GitWriterSettings
from ferry_ingest.bootstrap import build as build_ingest
from ferry_ingest.settings import IngestSettings
from ferry_insights.bootstrap import build as build_insights
from ferry_insights.settings import InsightsSettings
from ferry_notifier.bootstrap import build as build_notifier
from ferry_notifier.settings import NotifierSettings
from ferry_promotion.bootstrap import build as build_promotion
from ferry_promotion.settings import PromotionSettings
from ferry_runtime import ServiceRuntime
from ferry_testing.fuzz import FakeMessage, InProcess, fuzz_settings, hostile_messages

#: The services that consume (cluster-watcher only publishes), and how many examples each
#: gets by default: git-writer commits and pushes for what it accepts, so it gets fewer.
CONSUMERS = {ARTIFACT_INGEST: 80, GIT_WRITER: 40, PROMOTION: 60, NOTIFIER: 60, INSIGHTS: 60}

#: Dead-letter codes of the envelope checks, before any handler runs.
ENVELOPE_CODES = {
    "malformed-event",
    "payload-too-large",
    "unknown-event-type",
    "unknown-event-version",
    "type-mismatch",
}

#: Settings that point nowhere: nothing here connects to a broker.
BASE = {
    "amqp_url": "amqp://guest:guest@127.0.0.1:1/",
    "exchange": "ferry.fuzz",
    "queue_prefix": "fuzz",
    "http_port": 0,
    "retry_delays": (0.2, 0.5, 1.0),
    "max_attempts": 4,
    "log_format": "json",
    "log_level": "critical",
}


async def built(party: str, remote: Path, data: Path) -> ServiceRuntime:
    """``party``'s runtime as its bootstrap builds it."""
    data.mkdir(parents=True)
    if party == ARTIFACT_INGEST:
        return build_ingest(IngestSettings(**BASE))
    if party == GIT_WRITER:
        settings = GitWriterSettings(
            **BASE, data_dir=data, config_repo_url=str(remote), git_push_attempts=2
        )
        return build_git_writer(settings)
    if party == PROMOTION:
        tokens = data / "tokens.yaml"
        tokens.write_text("tokens: []\n", encoding="utf-8")
        service = await build_promotion(
            PromotionSettings(
                **BASE, data_dir=data, config_repo_url=str(remote), api_tokens_file=tokens
            )
        )
        return service.runtime
    if party == INSIGHTS:
        insights = await build_insights(
            InsightsSettings(
                **BASE, data_dir=data, database_url=f"sqlite+aiosqlite:///{data / 'i.db'}"
            )
        )
        return insights.runtime
    assert party == NOTIFIER
    return build_notifier(
        NotifierSettings(**BASE, database_url=f"sqlite+aiosqlite:///{data / 'notifier.db'}")
    )


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    # Hypothesis runs a synchronous test many times; the service lives on this one loop
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.mark.parametrize("party", list(CONSUMERS))
def test_every_hostile_delivery_ends_acked_or_dead_lettered_with_a_reason(
    party: str, bare_remote: Path, tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    runtime = loop.run_until_complete(built(party, bare_remote, tmp_path / party))
    harness = InProcess(runtime)
    loop.run_until_complete(harness.__aenter__())
    seen: dict[str, int] = {}

    @fuzz_settings(examples=CONSUMERS[party])
    @given(message=hostile_messages(harness.event_types))
    def check(message: FakeMessage) -> None:
        message.settled.clear()
        [outcome] = loop.run_until_complete(asyncio.wait_for(harness.deliver(message), 30))
        assert outcome.problems() == [], (party, message.routing_key, message.body[:300])
        code = outcome.dead_letters[0].code if outcome.dead_letters else "acked"
        seen[code or ""] = seen.get(code or "", 0) + 1

    try:
        check()
    finally:
        loop.run_until_complete(harness.__aexit__())
    # some examples reached the handlers (acked, or refused by them), not only the envelope
    assert set(seen) - ENVELOPE_CODES, seen
