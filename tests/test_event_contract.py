"""The event contract (``ferry_events.contract``, which ``docs/asyncapi.yaml`` is generated
from) says what the services really do.

Consumers: each service is built and run as its bootstrap wires it, on a real broker, and
the routing keys its runtime binds to its queue are the ones the contract gives it.
Publishers: the event types a service's code names (imports from ``ferry_events``) and does
not consume are contracted to it, and what the contract gives it to publish its code names.
"""

from __future__ import annotations

import ast
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ferry_events import ALL_EVENT_TYPES, EventData
from ferry_events.contract import (
    ARTIFACT_INGEST,
    CI,
    CLUSTER_WATCHER,
    CONTRACT,
    GIT_WRITER,
    INSIGHTS,
    NOTIFIER,
    PARTIES,
    PROMOTION,
    consumed_by,
    published_by,
)
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
from ferry_runtime import RuntimeSettings, ServiceRuntime
from ferry_runtime.topology import contract_queues
from ferry_testing import BrokerNamespace, running
from ferry_watcher.bootstrap import build as build_watcher
from ferry_watcher.settings import WatcherSettings

ROOT = Path(__file__).resolve().parents[1]

#: Where each party's code lives.
SOURCES = {
    CI: ROOT / "cli" / "src",
    ARTIFACT_INGEST: ROOT / "services" / "artifact-ingest" / "src",
    GIT_WRITER: ROOT / "services" / "git-writer" / "src",
    PROMOTION: ROOT / "services" / "promotion" / "src",
    CLUSTER_WATCHER: ROOT / "services" / "cluster-watcher" / "src",
    NOTIFIER: ROOT / "services" / "notifier" / "src",
    INSIGHTS: ROOT / "services" / "insights" / "src",
}

#: Contracted (the broker already lets promotion publish them) before any code publishes
#: them: the halt and artifact-mark requests, which git-writer already records.
CONTRACTED_NOT_YET_PUBLISHED = {
    PROMOTION: {"ferry.halt.change.requested.v1", "ferry.artifact.mark.change.requested.v1"}
}

EVENT_CLASSES: dict[str, type[EventData]] = {m.__name__: m for m in ALL_EVENT_TYPES}


def named_event_types(source: Path) -> set[str]:
    """The event types whose classes the code under ``source`` imports from ferry_events."""
    named: set[str] = set()
    for path in source.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ferry_events"):
                named |= {
                    EVENT_CLASSES[a.name].event_type for a in node.names if a.name in EVENT_CLASSES
                }
    return named


def test_the_contract_routes_every_event_type_once_between_known_parties() -> None:
    assert [r.event for r in CONTRACT] == list(ALL_EVENT_TYPES)
    assert all(r.publisher in PARTIES for r in CONTRACT)
    assert all(set(r.consumers) <= set(PARTIES) - {CI} for r in CONTRACT)
    assert all(len(set(r.consumers)) == len(r.consumers) for r in CONTRACT)
    assert set(SOURCES) == set(PARTIES)


@pytest.mark.parametrize("party", PARTIES)
def test_each_party_publishes_what_the_contract_gives_it(party: str) -> None:
    named = named_event_types(SOURCES[party])
    contracted = set(published_by(party))
    not_contracted = named - contracted - set(consumed_by(party))
    assert not not_contracted, (
        f"{party}'s code names {sorted(not_contracted)}, which it neither consumes nor is "
        "contracted to publish: give it the route in ferry_events.contract.CONTRACT "
        "(and the topic permission in deploy/rabbitmq/definitions.json), then `make schemas`"
    )
    unpublished = contracted - named
    assert unpublished <= CONTRACTED_NOT_YET_PUBLISHED.get(party, set()), (
        f"the contract says {party} publishes {sorted(unpublished)}, which its code never names"
    )


@contextlib.asynccontextmanager
async def started(
    party: str, ns: BrokerNamespace, remote: Path, data: Path
) -> AsyncIterator[ServiceRuntime]:
    """``party``'s runtime as its bootstrap builds it, running (so its queue is bound)."""
    base = ns.settings()
    if party == ARTIFACT_INGEST:
        runtime = build_ingest(IngestSettings(**base))
    elif party == GIT_WRITER:
        runtime = build_git_writer(
            GitWriterSettings(**base, data_dir=data, config_repo_url=str(remote))
        )
    elif party == PROMOTION:
        tokens = data / "tokens.yaml"
        data.mkdir(parents=True)
        tokens.write_text("tokens: []\n", encoding="utf-8")
        service = await build_promotion(
            PromotionSettings(
                **base, data_dir=data, config_repo_url=str(remote), api_tokens_file=tokens
            )
        )
        runtime = service.runtime
    elif party == CLUSTER_WATCHER:
        runtime = build_watcher(WatcherSettings(**base)).runtime
    elif party == INSIGHTS:
        insights = await build_insights(
            InsightsSettings(**base, data_dir=data, database_url=f"sqlite+aiosqlite:///{data}.db")
        )
        runtime = insights.runtime
    else:
        assert party == NOTIFIER
        runtime = build_notifier(
            NotifierSettings(**base, database_url=f"sqlite+aiosqlite:///{data / 'notifier.db'}")
        )
    if party == CLUSTER_WATCHER:  # a publisher only: it declares no queue at all
        yield runtime
        return
    async with running(runtime):
        yield runtime


@pytest.mark.amqp
@pytest.mark.parametrize("party", [p for p in PARTIES if p != CI])
async def test_each_service_binds_what_the_contract_says_it_consumes(
    party: str, broker_ns: BrokerNamespace, bare_remote: Path, tmp_path: Path
) -> None:
    async with started(party, broker_ns, bare_remote, tmp_path / party) as runtime:
        queues = runtime.queues()
    bound = queues.routing_keys
    # what `python -m ferry_runtime.topology` declares before the services start is what
    # the service declares itself: same bindings, same arguments (a mismatch would make
    # the broker refuse the service's own declaration)
    declared = contract_queues(RuntimeSettings(**broker_ns.settings()))
    assert queues == declared[party] if bound else party not in declared
    assert tuple(sorted(bound)) == consumed_by(party), (
        f"{party} binds {sorted(bound)} but the contract says it consumes "
        f"{list(consumed_by(party))}: update ferry_events.contract.CONTRACT, then `make schemas`"
    )
