"""deploy/rabbitmq/definitions.json: read as a file, then loaded into the real broker.

As a file: queue arguments equal the runtime's topology, the password hashes are the
documented dev passwords, and the topic rules let each identity publish exactly the events
the contract gives it.

In the broker (tests marked ``amqp``): the definitions are imported with ``rabbitmqctl
import_definitions`` under a fresh vhost, every user name suffixed so that runs never
collide; the vhost and the users are deleted afterwards. Each service runs the runtime's own
topology code (``declare_exchange``, ``declare_service_queues``) against the pre-declared
queues and against none, publishes its events, and is refused (ACCESS_REFUSED) for what it
must not do: CI publishing a release decision, the notifier publishing anything, the watcher
publishing a release decision or declaring a queue, one service reading another's queue.

Retries and dead letters go through each service's own direct exchange
``ferry.<service>.dlx``, never the default exchange: RabbitMQ checks a publish to the
default exchange as a write on ``amq.default``, whatever the target queue, so only the
operator (``ferry dlq replay --direct``) and the admin may write it. A real consumer under
each service's user retries and dead-letters a message; the same user is refused publishing
into another service's queue through the default exchange or the other's ``.dlx``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aio_pika
import httpx
import pytest
import yaml
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from aiormq.exceptions import ChannelAccessRefused

from ferry_events import CloudEvent, RolloutFailed, Workload, default_registry
from ferry_events.contract import PARTIES, consumed_by, published_by
from ferry_kube_sim.server import KubeApiServer
from ferry_runtime import (
    Delivery,
    PermanentError,
    RuntimeSettings,
    ServiceQueues,
    ServiceRuntime,
    TemporaryError,
)
from ferry_runtime.publisher import build_message
from ferry_runtime.topology import (
    declare_exchange,
    declare_redelivery_exchange,
    declare_service_queues,
)
from ferry_testing import ServiceProcess, running
from ferry_testing.git import git, make_bare_remote
from ferry_testing.net import free_port

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"
EXCHANGE = "ferry.events"

#: What each identity may publish to the exchange: the event contract (ferry_events.contract,
#: also the source of docs/asyncapi.yaml); ``ci`` is the identity of CI's `ferry artifact push`.
PUBLISHES: dict[str, tuple[str, ...]] = {party: published_by(party) for party in PARTIES}
ALL_EVENTS = sorted({e for events in PUBLISHES.values() for e in events})
#: Services whose queues the definitions pre-declare: those the contract gives a queue. The
#: watcher consumes nothing, so it has no queue, no redelivery exchange and no permission to
#: make either.
CONSUMERS = tuple(party for party in PARTIES if consumed_by(party))
#: A routing key each service binds in this test (any event type passes the topic read rule).
BINDS = {
    "artifact-ingest": "ferry.artifact.published.v1",
    "git-writer": "ferry.release.approved.v1",
    "promotion": "ferry.artifact.stored.v1",
    "notifier": "ferry.rollout.failed.v1",
    "insights": "ferry.rollout.succeeded.v1",
}
#: CI has one broker user per pipeline or team (its identity: artifact-ingest checks which
#: services it may publish, FERRY_CI_IDENTITIES_FILE); every one has the "ci" party's rights.
CI_USERS = ("ferry-ci-payments", "ferry-ci-orders")


def users_of(party: str) -> tuple[str, ...]:
    """The broker users of one party of the contract."""
    return CI_USERS if party == "ci" else (f"ferry-{party}",)


#: Who may publish to the default exchange (``amq.default``): a write there reaches every queue.
DEFAULT_EXCHANGE_WRITERS = {"ferry-operator", "ferry-admin"}


#: The runtime's defaults, which every service keeps (environment variables do not count here).
DEFAULTS = RuntimeSettings.model_construct()


def dev_password(user: str) -> str:
    """The documented development password of a definitions user (compose uses these)."""
    return "dev-only-" + user.removeprefix("ferry-")


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DEFINITIONS.read_text(encoding="utf-8"))
    return data


# ---------------------------------------------------------------------- static checks


def test_queue_arguments_match_the_runtime_topology() -> None:
    defaults = DEFAULTS
    queues = {q["name"]: q for q in load()["queues"]}
    expected: dict[str, dict[str, Any]] = {}
    for service in CONSUMERS:
        sq = ServiceQueues(
            service=service,
            prefix="ferry",
            routing_keys=(),
            retry_delays=defaults.retry_delays,
            delivery_limit=defaults.delivery_limit,
            single_active_consumer=service == "git-writer",
        )
        expected[sq.main] = sq.main_arguments()
        expected[sq.dead_letter] = {"x-queue-type": "quorum"}
        for level in range(len(defaults.retry_delays)):
            expected[sq.retry(level)] = sq.retry_arguments(level)
    assert {name: q["arguments"] for name, q in queues.items()} == expected
    assert all(
        q["durable"] and not q["auto_delete"] and q["vhost"] == "ferry" for q in queues.values()
    )
    assert queues["ferry.git-writer"]["arguments"]["x-single-active-consumer"] is True


def _exchange(name: str, kind: str) -> dict[str, Any]:
    return {
        "name": name,
        "vhost": "ferry",
        "type": kind,
        "durable": True,
        "auto_delete": False,
        "internal": False,
        "arguments": {},
    }


def test_exchanges_and_bindings_match_the_runtime_topology() -> None:
    """The event exchange, and per consuming service its direct redelivery exchange with the
    dead-letter, retry and service queues bound under their own names, as
    ``declare_service_queues`` binds them."""
    data = load()
    expected_exchanges = [_exchange(EXCHANGE, "topic")]
    expected_bindings: list[tuple[str, str, str]] = []
    for service in CONSUMERS:
        sq = _queues(service)
        assert sq.redelivery_exchange == f"ferry.{service}.dlx"
        expected_exchanges.append(_exchange(sq.redelivery_exchange, "direct"))
        targets = [sq.dead_letter, *map(sq.retry, range(len(sq.retry_delays))), sq.main]
        expected_bindings += [(sq.redelivery_exchange, name, name) for name in targets]
        # every dead-lettering queue points at that exchange, with a key bound on it
        for name in targets:
            arguments = {q["name"]: q["arguments"] for q in data["queues"]}[name]
            if "x-dead-letter-exchange" in arguments:
                assert arguments["x-dead-letter-exchange"] == sq.redelivery_exchange
                assert arguments["x-dead-letter-routing-key"] in targets
    # Pre-bound so that `ferry artifact push` (mandatory publish) routes before ingest ever ran.
    expected_bindings.append((EXCHANGE, "ferry.artifact-ingest", "ferry.artifact.published.v1"))
    assert data["exchanges"] == expected_exchanges
    assert [
        (b["source"], b["destination"], b["routing_key"]) for b in data["bindings"]
    ] == expected_bindings
    assert all(b["destination_type"] == "queue" and b["vhost"] == "ferry" for b in data["bindings"])


def test_only_the_operator_and_admin_may_write_the_default_exchange() -> None:
    """RabbitMQ authorizes a publish to the default exchange as a write on ``amq.default``,
    whatever queue it is routed to: whoever may write it may write every queue."""
    permissions = {p["user"]: p for p in load()["permissions"]}
    writers = {u for u, p in permissions.items() if re.fullmatch(p["write"], "amq.default")}
    assert writers == DEFAULT_EXCHANGE_WRITERS


def test_each_service_may_use_only_its_own_redelivery_exchange() -> None:
    permissions = {p["user"]: p for p in load()["permissions"]}
    exchanges = {service: f"ferry.{service}.dlx" for service in CONSUMERS}
    for who, user in ((party, user) for party in PUBLISHES for user in users_of(party)):
        rule = permissions[user]
        for owner, dlx in exchanges.items():
            mine = owner == who
            # write: publish retries and dead letters; configure: declare it; read: bind to it
            for kind in ("write", "configure", "read"):
                assert (re.fullmatch(rule[kind], dlx) is not None) == mine, (who, kind, dlx)
        if who in CONSUMERS:  # queue.declare checks read on a queue that dead-letters
            sq = _queues(who)
            assert re.fullmatch(rule["read"], sq.main)
            assert re.fullmatch(rule["read"], sq.retry(0))
            assert not re.fullmatch(rule["read"], sq.dead_letter)  # the operator's to read
    watcher = permissions["ferry-cluster-watcher"]
    assert (watcher["configure"], watcher["write"], watcher["read"]) == (
        "^ferry\\.events$",
        "^ferry\\.events$",
        "^$",
    )


def test_password_hashes_are_the_documented_dev_passwords() -> None:
    users = load()["users"]
    assert {u["name"] for u in users} == {
        *(user for name in PUBLISHES for user in users_of(name)),
        "ferry-operator",
        "ferry-admin",
    }
    for user in users:
        assert user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
        raw = base64.b64decode(user["password_hash"])
        salt, digest = raw[:4], raw[4:]
        assert hashlib.sha256(salt + dev_password(user["name"]).encode()).digest() == digest
    tags = {u["name"]: u["tags"] for u in users}
    assert tags["ferry-admin"] == ["administrator"]
    assert tags["ferry-operator"] == ["management"]
    assert all(not t for name, t in tags.items() if name not in {"ferry-admin", "ferry-operator"})


def test_the_ci_identities_file_grants_each_ci_user_and_no_other() -> None:
    """deploy/k8s's CI identities file parses as artifact-ingest reads it, and names exactly
    the CI users of the definitions (an identity is the broker user that publishes)."""
    from ferry_ingest.domain import parse_identities

    text = (ROOT / "deploy" / "k8s" / "base" / "core" / "ci-identities.yaml").read_text()
    assert set(parse_identities(text).grants) == set(CI_USERS)


def test_topic_write_rules_allow_exactly_the_contracted_events() -> None:
    data = load()
    topic = {t["user"]: t for t in data["topic_permissions"]}
    vhost_write = {p["user"]: p["write"] for p in data["permissions"]}
    for who, allowed, user in (
        (party, events, user) for party, events in PUBLISHES.items() for user in users_of(party)
    ):
        rule = topic[user]
        assert rule["exchange"] == EXCHANGE
        can_write_exchange = re.fullmatch(vhost_write[user], EXCHANGE) is not None
        assert can_write_exchange == bool(allowed), user
        for event in ALL_EVENTS:
            passes = can_write_exchange and re.search(rule["write"], event) is not None
            assert passes == (event in allowed), (user, event)
            if who in CONSUMERS:  # a service may bind its queue to any event type (topic read)
                assert re.search(rule["read"], event), (user, event)
    for reader in ("ferry-notifier", "ferry-insights"):
        assert re.search(topic[reader]["read"], "#") is None  # but not to a wildcard
    assert topic["ferry-cluster-watcher"]["read"] == "^$"  # it binds nothing


# ---------------------------------------------------------------------- the real broker


def _broker_url() -> str:
    return os.environ.get("FERRY_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def _rabbitmqctl_reason() -> str | None:
    """Why the broker tests cannot run here, or None."""
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl is not installed, so the definitions cannot be imported"
    host = urlsplit(_broker_url()).hostname or "127.0.0.1"
    if host not in {"127.0.0.1", "localhost", "::1"}:
        return f"the test broker ({host}) is not the local node rabbitmqctl manages"
    probe = subprocess.run(
        ["rabbitmqctl", "-q", "list_vhosts"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0:
        return f"rabbitmqctl cannot reach the local node: {probe.stderr.strip()[:200]}"
    return None


@dataclass(frozen=True)
class Imported:
    vhost: str
    users: dict[str, str]  # role (e.g. "notifier", "ci", "operator") -> user name in the broker
    base: str  # amqp://host:port

    def url(self, role: str) -> str:
        name = self.users[role]
        original = "ferry-" + role
        return f"{self.base}/{quote(self.vhost, safe='')}".replace(
            "://", f"://{quote(name)}:{quote(dev_password(original))}@", 1
        )


def _rabbitmqctl(*args: str) -> None:
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], check=False, capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {done.stdout}{done.stderr}")


async def _wait_until_imported(imported: Imported, data: dict[str, Any]) -> None:
    """``import_definitions`` returns before the import is done: wait for its last objects."""
    last_error: BaseException | None = None
    for _ in range(120):
        try:
            connection = await aio_pika.connect(imported.url("admin"))
        except (aio_pika.exceptions.AMQPError, ConnectionError) as exc:
            last_error = exc
            await asyncio.sleep(0.25)
            continue
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            for queue in data["queues"]:
                await channel.get_queue(queue["name"], ensure=True)
            exchanges = {
                declared["name"]: await channel.get_exchange(declared["name"], ensure=True)
                for declared in data["exchanges"]
            }
            # Bindings come last: a mandatory publish routes (or raises) once each exists.
            for binding in data["bindings"]:
                await exchanges[binding["source"]].publish(
                    aio_pika.Message(b"probe"), routing_key=binding["routing_key"], mandatory=True
                )
            for queue in data["queues"]:  # before a retry queue's TTL sends its probe on
                await (await channel.get_queue(queue["name"], ensure=False)).purge()
            return
        except (aio_pika.exceptions.AMQPError, aio_pika.exceptions.PublishError) as exc:
            last_error = exc
        finally:
            await connection.close()
        await asyncio.sleep(0.25)
    raise RuntimeError(f"the definitions were not imported within 30 s: {last_error!r}")


@pytest.fixture(scope="module")
def imported() -> Iterator[Imported]:
    reason = _rabbitmqctl_reason()
    if reason:
        pytest.skip(reason)
    suffix = uuid.uuid4().hex[:8]
    vhost = f"ferry-deploy-test-{suffix}"
    data = load()
    renamed = {u["name"]: f"{u['name']}-{suffix}" for u in data["users"]}
    for user in data["users"]:
        user["name"] = renamed[user["name"]]
    for section in ("permissions", "topic_permissions"):
        for entry in data[section]:
            entry["user"] = renamed[entry["user"]]
    for section in ("vhosts",):
        for entry in data[section]:
            entry["name"] = vhost
    for section in ("permissions", "topic_permissions", "exchanges", "queues", "bindings"):
        for entry in data[section]:
            entry["vhost"] = vhost
    parts = urlsplit(_broker_url())
    base = f"amqp://{parts.hostname or '127.0.0.1'}:{parts.port or 5672}"
    result = Imported(
        vhost=vhost,
        users={name.removeprefix("ferry-"): new for name, new in renamed.items()},
        base=base,
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # rabbitmqctl runs as the broker's user: the file must be readable by it.
            Path(tmp).chmod(0o755)
            path = Path(tmp) / "definitions.json"
            path.write_text(json.dumps(data), encoding="utf-8")
            path.chmod(0o644)
            _rabbitmqctl("import_definitions", str(path))
            asyncio.run(_wait_until_imported(result, data))
        yield result
    finally:  # every deletion at once: each rabbitmqctl call starts an Erlang VM
        cleanups = [
            subprocess.Popen(
                ["rabbitmqctl", "-q", *args],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for args in (("delete_vhost", vhost), *(("delete_user", u) for u in renamed.values()))
        ]
        for cleanup in cleanups:
            cleanup.wait(120)


async def _as(
    imported: Imported, role: str, action: Callable[[AbstractChannel], Awaitable[Any]]
) -> Any:
    connection = await aio_pika.connect(imported.url(role))
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        return await action(channel)
    finally:
        await connection.close()


async def _refused(
    imported: Imported, role: str, action: Callable[[AbstractChannel], Awaitable[Any]]
) -> str:
    with pytest.raises(ChannelAccessRefused) as info:
        await _as(imported, role, action)
    assert "ACCESS_REFUSED" in str(info.value)
    return str(info.value)


def _publish(key: str) -> Callable[[AbstractChannel], Awaitable[Any]]:
    async def action(channel: AbstractChannel) -> None:
        exchange = await channel.get_exchange(EXCHANGE, ensure=False)
        await exchange.publish(aio_pika.Message(b"{}"), routing_key=key)

    return action


async def _ignore(message: AbstractIncomingMessage) -> None:
    await message.nack(requeue=True)


def _queues(service: str, *keys: str) -> ServiceQueues:
    defaults = DEFAULTS
    return ServiceQueues(
        service=service,
        prefix="ferry",
        routing_keys=keys,
        retry_delays=defaults.retry_delays,
        delivery_limit=defaults.delivery_limit,
        single_active_consumer=service == "git-writer",
    )


@pytest.mark.amqp
@pytest.mark.parametrize("fresh", [False, True], ids=["predeclared", "recreated"])
@pytest.mark.parametrize("service", CONSUMERS)
async def test_each_service_runs_its_own_topology_and_publishes_its_events(
    imported: Imported, service: str, fresh: bool
) -> None:
    queues = _queues(service, BINDS[service])
    if fresh:  # an operator deleted the queues: declaring them anew takes more permissions

        async def delete(channel: AbstractChannel) -> None:
            for level in range(len(queues.retry_delays)):
                await channel.queue_delete(queues.retry(level))
            await channel.queue_delete(queues.dead_letter)
            await channel.queue_delete(queues.main)
            await channel.exchange_delete(queues.redelivery_exchange)

        await _as(imported, "admin", delete)

    async def start_like_the_runtime(channel: AbstractChannel) -> int:
        # Exactly what ServiceRuntime does at start-up: declare, bind, consume.
        exchange = await declare_exchange(channel, EXCHANGE)
        queue = await declare_service_queues(channel, exchange, queues)
        for event in PUBLISHES[service]:  # confirmed by the broker, or this raises
            # mandatory=False: nothing consumes these here; the broker's confirm is the point
            await exchange.publish(aio_pika.Message(b"{}"), routing_key=event, mandatory=False)
        # Retries and dead letters go through its own redelivery exchange to its own queues.
        redelivery = await declare_redelivery_exchange(channel, queues)
        for target in (queues.retry(0), queues.dead_letter):
            await redelivery.publish(aio_pika.Message(b"{}"), routing_key=target, mandatory=True)
        tag = await queue.consume(_ignore)  # basic.consume, as the consumer does
        await queue.cancel(tag)
        return len(PUBLISHES[service])

    assert await _as(imported, service, start_like_the_runtime) == len(PUBLISHES[service])


@pytest.mark.amqp
async def test_the_watcher_publishes_rollouts_and_may_make_no_queue(imported: Imported) -> None:
    async def start_like_the_runtime(channel: AbstractChannel) -> None:
        # ServiceRuntime.connect: the exchange only (the watcher consumes nothing)
        exchange = await declare_exchange(channel, EXCHANGE)
        for event in PUBLISHES["cluster-watcher"]:
            # mandatory=False: nothing consumes these here; the broker's confirm is the point
            await exchange.publish(aio_pika.Message(b"{}"), routing_key=event, mandatory=False)

    await _as(imported, "cluster-watcher", start_like_the_runtime)
    queues = _queues("cluster-watcher", "ferry.release.committed.v1")

    async def declare_queues(channel: AbstractChannel) -> None:
        await declare_service_queues(channel, await declare_exchange(channel, EXCHANGE), queues)

    async def declare_a_queue(channel: AbstractChannel) -> None:
        await channel.declare_queue(queues.main, durable=True)

    for action in (declare_queues, declare_a_queue):
        await _refused(imported, "cluster-watcher", action)


@pytest.mark.amqp
async def test_ci_pushes_an_artifact_that_reaches_the_ingest_queue(imported: Imported) -> None:
    body = json.dumps({"type": "ferry.artifact.published.v1", "n": uuid.uuid4().hex}).encode()

    async def push(channel: AbstractChannel) -> None:
        exchange = await channel.get_exchange(EXCHANGE, ensure=True)  # passive: no configure
        await exchange.publish(
            aio_pika.Message(body), routing_key="ferry.artifact.published.v1", mandatory=True
        )

    await _as(imported, "ci-payments", push)

    async def take(channel: AbstractChannel) -> bytes:
        queue = await channel.get_queue("ferry.artifact-ingest", ensure=False)
        while True:  # the topology test's retry copies come back here after their TTL
            message = await queue.get(timeout=10, no_ack=True)
            if message.body == body:
                return message.body

    assert await _as(imported, "artifact-ingest", take) == body


@pytest.mark.amqp
async def test_operator_lists_and_replays_dead_letters_with_the_ferry_cli(
    imported: Imported,
) -> None:
    """`ferry dlq list|replay` (ferry_cli.broker) as the ferry-operator user."""
    from ferry_cli.broker import BrokerTarget, list_dead_letters, replay_dead_letters

    queues = _queues("notifier", "ferry.rollout.failed.v1")

    async def reset(channel: AbstractChannel) -> None:
        for name in (queues.dead_letter, queues.main):
            await (await channel.get_queue(name, ensure=False)).purge()

    await _as(imported, "admin", reset)
    ids = [uuid.uuid4().hex for _ in range(2)]

    async def dead_letter(channel: AbstractChannel) -> None:
        exchange = await declare_exchange(channel, EXCHANGE)
        await declare_service_queues(channel, exchange, queues)  # binds rollout.failed
        redelivery = await declare_redelivery_exchange(channel, queues)
        for event_id in ids:
            body = json.dumps({"id": event_id, "type": "ferry.rollout.failed.v1"}).encode()
            message = aio_pika.Message(
                body,
                type="ferry.rollout.failed.v1",
                headers={"x-ferry-reason": "slack said no", "x-ferry-error-code": "slack"},
            )
            await redelivery.publish(message, routing_key=queues.dead_letter, mandatory=True)

    await _as(imported, "notifier", dead_letter)
    operator = imported.url("operator")

    listing = await list_dead_letters(BrokerTarget(operator, exchange=""), "notifier", 10)
    assert [m.event_id for m in listing.messages] == ids
    assert {m.reason for m in listing.messages} == {"slack said no"}

    # Through the exchange with the original routing key (one), then straight to the queue.
    first = await replay_dead_letters(BrokerTarget(operator, EXCHANGE), "notifier", 1)
    second = await replay_dead_letters(BrokerTarget(operator, EXCHANGE), "notifier", 1, direct=True)
    assert [m.event_id for m in first.replayed + second.replayed] == ids
    assert second.remaining == 0

    async def take(channel: AbstractChannel) -> list[str]:
        queue = await channel.get_queue(queues.main, ensure=False)
        found: list[str] = []
        while len(found) < len(ids):  # skipping the topology test's retry copies
            message = await queue.get(timeout=10)
            await message.ack()
            event_id = json.loads(message.body).get("id")
            if event_id in ids:
                found.append(event_id)
        return found

    assert sorted(await _as(imported, "notifier", take)) == sorted(ids)

    async def consume_service_queue(channel: AbstractChannel) -> None:
        queue = await channel.get_queue(queues.main, ensure=False)
        await queue.get(fail=False)

    async def delete_queue(channel: AbstractChannel) -> None:
        await channel.queue_delete(queues.dead_letter)

    await _refused(imported, "operator", consume_service_queue)
    await _refused(imported, "operator", delete_queue)


@pytest.mark.amqp
@pytest.mark.parametrize(
    ("role", "event"),
    [
        ("ci-payments", "ferry.release.approved.v1"),  # CI deciding a release
        ("ci-orders", "ferry.release.requested.v1"),
        ("ci-payments", "ferry.artifact.accepted.v1"),  # CI skipping validation
        ("notifier", "ferry.release.approved.v1"),  # the notifier publishes nothing
        ("notifier", "ferry.rollout.succeeded.v1"),
        ("notifier", "ferry.artifact.published.v1"),
        ("insights", "ferry.release.requested.v1"),  # insights only reads
        ("insights", "ferry.rollout.failed.v1"),
        ("cluster-watcher", "ferry.release.approved.v1"),  # the watcher: rollouts only
        ("cluster-watcher", "ferry.release.committed.v1"),
        ("artifact-ingest", "ferry.artifact.stored.v1"),
        ("artifact-ingest", "ferry.release.approved.v1"),
        ("promotion", "ferry.release.committed.v1"),  # only git-writer commits
        ("promotion", "ferry.artifact.stored.v1"),
        ("git-writer", "ferry.release.approved.v1"),  # only promotion decides
        ("git-writer", "ferry.rollout.succeeded.v1"),
    ],
)
async def test_publishing_outside_the_contract_is_refused(
    imported: Imported, role: str, event: str
) -> None:
    message = await _refused(imported, role, _publish(event))
    assert EXCHANGE in message


@pytest.mark.amqp
async def test_ci_cannot_configure_or_read_anything(imported: Imported) -> None:
    async def declare(channel: AbstractChannel) -> None:
        await declare_exchange(channel, EXCHANGE)  # an active declare needs configure

    async def delete(channel: AbstractChannel) -> None:
        await channel.exchange_delete(EXCHANGE)

    async def read(channel: AbstractChannel) -> None:
        queue = await channel.get_queue("ferry.artifact-ingest", ensure=False)
        await queue.get(fail=False)

    async def to_a_queue(channel: AbstractChannel) -> None:  # around the topic rules
        await channel.default_exchange.publish(
            aio_pika.Message(b"{}"), routing_key="ferry.git-writer"
        )

    for action in (declare, delete, read, to_a_queue):
        await _refused(imported, "ci-orders", action)


@pytest.mark.amqp
@pytest.mark.parametrize(
    ("role", "other"),
    [("notifier", "git-writer"), ("promotion", "git-writer"), ("artifact-ingest", "promotion")],
)
async def test_a_service_cannot_touch_another_service_queue(
    imported: Imported, role: str, other: str
) -> None:
    async def consume(channel: AbstractChannel) -> None:
        queue = await channel.get_queue(f"ferry.{other}", ensure=False)
        await queue.get(fail=False)

    async def declare(channel: AbstractChannel) -> None:
        await channel.declare_queue(f"ferry.{other}.extra", durable=True)

    async def bind(channel: AbstractChannel) -> None:
        queue = await channel.get_queue(f"ferry.{other}", ensure=False)
        await queue.bind(EXCHANGE, routing_key="ferry.rollout.failed.v1")

    for action in (consume, declare, bind):
        await _refused(imported, role, action)


#: (service, another service whose queues it must not reach)
CROSSINGS = [
    ("notifier", "git-writer"),
    ("promotion", "git-writer"),
    ("artifact-ingest", "promotion"),
    ("git-writer", "notifier"),
    ("cluster-watcher", "git-writer"),
    ("insights", "promotion"),
]


@pytest.mark.amqp
@pytest.mark.parametrize(("role", "other"), CROSSINGS)
async def test_a_service_cannot_publish_into_another_service_queue(
    imported: Imported, role: str, other: str
) -> None:
    """Neither through the default exchange (``amq.default``, which would reach any queue)
    nor through the other service's redelivery exchange (its retries and dead letters)."""
    theirs = _queues(other)

    def to_default(queue: str) -> Callable[[AbstractChannel], Awaitable[Any]]:
        async def action(channel: AbstractChannel) -> None:
            await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=queue)

        return action

    def to_their_exchange(queue: str) -> Callable[[AbstractChannel], Awaitable[Any]]:
        async def action(channel: AbstractChannel) -> None:
            exchange = await channel.get_exchange(theirs.redelivery_exchange, ensure=False)
            await exchange.publish(aio_pika.Message(b"{}"), routing_key=queue)

        return action

    async def bind_to_their_exchange(channel: AbstractChannel) -> None:  # to steal copies
        queue = await channel.get_queue(f"ferry.{role}", ensure=False)
        await queue.bind(theirs.redelivery_exchange, routing_key=theirs.dead_letter)

    for queue in (theirs.main, theirs.retry(0), theirs.dead_letter):
        message = await _refused(imported, role, to_default(queue))
        assert "amq.default" in message
        message = await _refused(imported, role, to_their_exchange(queue))
        assert theirs.redelivery_exchange in message
    if role in CONSUMERS:
        await _refused(imported, role, bind_to_their_exchange)
        # not even to its own queues: its retries have their own exchange now
        await _refused(imported, role, to_default(f"ferry.{role}.dlq"))


def _rollout_failed() -> CloudEvent:
    data = RolloutFailed(
        cluster="dev-eu",
        environment="dev",
        namespace="payments",
        service="payments",
        artifact_id=f"master-{uuid.uuid4().hex[:10]}",
        workload=Workload(kind="Deployment", name="payments", uid=uuid.uuid4().hex),
        observed_at=datetime.now(UTC),
        reason="CrashLoopBackOff",
        message="back-off restarting failed container",
    )
    return CloudEvent.new(data, source="ferry/cluster-watcher")


@pytest.mark.amqp
@pytest.mark.parametrize("service", CONSUMERS)
async def test_a_service_retries_and_dead_letters_under_its_own_user(
    imported: Imported, service: str, tmp_path: Path
) -> None:
    """The real runtime, logged in as the service's user: a temporary error sends the message
    through ``.retry.0`` back to the service queue, then a permanent error puts it in the
    service's dead-letter queue, where the operator reads it with ``ferry dlq list``."""
    from ferry_cli.broker import BrokerTarget, list_dead_letters

    settings = RuntimeSettings(
        amqp_url=imported.url(service),
        exchange=EXCHANGE,
        queue_prefix="ferry",
        data_dir=tmp_path,
        http_port=0,
        log_format="json",
    )
    runtime = ServiceRuntime(service, settings)
    sent = _rollout_failed()
    attempts: list[int] = []

    async def handle(delivery: Delivery) -> None:
        if delivery.event.id != sent.id:  # leftovers of the other tests
            return
        attempts.append(delivery.attempt)
        if len(attempts) == 1:
            raise TemporaryError("the test's dependency is down for a moment")
        raise PermanentError(f"{service} cannot handle this rollout (test)")

    async def handle_batch(deliveries: Sequence[Delivery]) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = []
        for delivery in deliveries:
            try:
                await handle(delivery)
                outcomes.append(None)
            except (TemporaryError, PermanentError) as exc:
                outcomes.append(exc)
        return outcomes

    if service == "git-writer":  # as git-writer runs: batches, one active consumer
        runtime.subscribe_batches([RolloutFailed], handle_batch, single_active_consumer=True)
    else:
        runtime.subscribe(RolloutFailed, handle)
    async with running(runtime):
        publisher = await aio_pika.connect(imported.url("cluster-watcher"))
        try:
            channel = await publisher.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await channel.get_exchange(EXCHANGE, ensure=False)
            await exchange.publish(
                build_message(sent), routing_key=RolloutFailed.event_type, mandatory=True
            )
        finally:
            await publisher.close()
        operator = BrokerTarget(imported.url("operator"), exchange="")
        found = None
        for _ in range(120):
            listing = await list_dead_letters(operator, service, 100)
            found = next((m for m in listing.messages if m.event_id == sent.id), None)
            if found is not None:
                break
            await asyncio.sleep(0.25)
    assert found is not None, f"{sent.id} never reached ferry.{service}.dlq"
    assert attempts == [1, 2]
    assert found.reason == f"{service} cannot handle this rollout (test)"
    assert found.event_type == RolloutFailed.event_type


# ---------------------------------------------------------------------- the real services

MODULES = {
    "artifact-ingest": "ferry_ingest",
    "git-writer": "ferry_gitwriter",
    "promotion": "ferry_promotion",
    "cluster-watcher": "ferry_watcher",
    "notifier": "ferry_notifier",
    "insights": "ferry_insights",
}


async def _ready(port: int) -> bool:
    async with httpx.AsyncClient(timeout=1.0) as client:
        try:
            return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
        except httpx.HTTPError:
            return False


@pytest.mark.amqp
@pytest.mark.slow
@pytest.mark.timeout(300)  # six processes start at once: slow when the machine is busy
async def test_every_service_runs_as_its_own_user_and_a_ci_push_reaches_the_config_repo(
    imported: Imported, tmp_path: Path
) -> None:
    """The six real services (`python -m ferry_<x>`), each logged in as its own user from
    definitions.json, start, get ready, and carry a `ferry artifact push` made as
    ferry-ci-payments
    into the config repository, with no ACCESS_REFUSED anywhere."""
    remote = make_bare_remote(tmp_path / "config.git")
    processes: dict[str, tuple[ServiceProcess, int]] = {}
    async with KubeApiServer() as kube:
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        try:
            for service, module in MODULES.items():
                port = free_port()
                env = {
                    "FERRY_AMQP_URL": imported.url(service),
                    "FERRY_HTTP_PORT": str(port),
                    "FERRY_DATA_DIR": str(tmp_path / service),
                    "FERRY_CONFIG_REPO_URL": str(remote),
                    "KUBECONFIG": str(kubeconfig),
                    "FERRY_LOG_FORMAT": "json",
                }
                log = tmp_path / f"{service}.log"
                processes[service] = (ServiceProcess(module, env, log).start(), port)
            pending = set(processes)
            for _ in range(480):
                for service in list(pending):
                    process, port = processes[service]
                    assert process.proc is not None
                    assert process.proc.poll() is None, f"{service} exited:\n{process.logs()}"
                    if await _ready(port):
                        pending.discard(service)
                if not pending:
                    break
                await asyncio.sleep(0.25)
            assert not pending, f"not ready within 120 s: {sorted(pending)}"

            push = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "ferry_cli",
                "artifact",
                "push",
                str(ROOT / "examples" / "artifact.json"),
                "--manifests",
                str(ROOT / "examples" / "manifests"),
                "--amqp-url",
                imported.url("ci-payments"),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            output, _ = await push.communicate()
            assert push.returncode == 0, output.decode()
            artifact = json.loads((ROOT / "examples" / "artifact.json").read_text(encoding="utf-8"))
            stored = f"builds/{artifact['service']}/{artifact['id']}/artifact.json"
            files: list[str] = []
            for _ in range(120):  # git-writer stores it (the config repo layout of PRODUCT.md)
                if (remote / "refs" / "heads" / "main").exists():
                    files = git("ls-tree", "-r", "--name-only", "main", cwd=remote).split()
                if stored in files:
                    break
                await asyncio.sleep(0.25)
            assert stored in files, files
        finally:
            codes = {name: p.terminate() for name, (p, _) in processes.items()}
    for service, (process, _) in processes.items():
        assert "ACCESS_REFUSED" not in process.logs(), f"{service}:\n{process.logs()}"
        assert codes[service] == 0, f"{service} did not stop cleanly:\n{process.logs()}"


@pytest.mark.amqp
@pytest.mark.parametrize("reader", ["notifier", "insights"])
async def test_the_readers_can_publish_no_event_at_all(imported: Imported, reader: str) -> None:
    refused = [await _refused(imported, reader, _publish(event)) for event in ALL_EVENTS]
    assert len(refused) == len(ALL_EVENTS) == 22


def test_the_contract_covers_every_event_type_the_library_knows() -> None:
    assert set(ALL_EVENTS) == set(default_registry.types())


# ---------------------------------------------------------------------- broker configuration

#: Where the Debian package and the official image keep the brokers' cuttlefish schemas.
SCHEMA_GLOBS = (
    ("/usr/lib/rabbitmq/lib", "rabbitmq_server-*/plugins/*/priv/schema/*.schema"),
    ("/opt/rabbitmq/plugins", "*/priv/schema/*.schema"),
)


def _config_keys(text: str) -> list[str]:
    return [
        line.split("=", 1)[0].strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_broker_config_keys_exist_in_the_installed_brokers_schema() -> None:
    """rabbitmq.conf (compose) and the RabbitmqCluster's additionalConfig use only keys the
    broker knows: an unknown key stops a node from booting."""
    schemas = [p for root, pattern in SCHEMA_GLOBS for p in Path(root).glob(pattern)]
    if not schemas:
        pytest.skip("no RabbitMQ installation with cuttlefish schemas to check the keys against")
    mappings = {
        m
        for path in schemas
        for m in re.findall(r'\{mapping,\s*"([^"]+)"', path.read_text(errors="replace"))
    }
    patterns = [
        re.compile("^" + re.sub(r"\\\$[a-z_]+", "[^.]+", re.escape(m)) + "$") for m in mappings
    ]
    conf = (ROOT / "deploy" / "rabbitmq" / "rabbitmq.conf").read_text(encoding="utf-8")
    cluster = yaml.safe_load(
        (ROOT / "deploy/k8s/base/core/rabbitmq.yaml").read_text(encoding="utf-8")
    )
    keys = _config_keys(conf) + _config_keys(cluster["spec"]["rabbitmq"]["additionalConfig"])
    assert "load_definitions" in keys
    for key in keys:
        assert any(p.match(key) for p in patterns), f"{key} is not a RabbitMQ configuration key"
    enabled = (ROOT / "deploy" / "rabbitmq" / "enabled_plugins").read_text(encoding="utf-8")
    assert re.fullmatch(r"\[[a-z_,]+\]\.\n", enabled)
