"""Hostile deliveries for property-based tests: Hypothesis strategies, and a service's consumer
driven in-process.

What a broker can hand a consumer is generated here as the broker hands it: header tables of
every AMQP field type (ints, floats, bools, byte arrays, lists, tables, timestamps, decimals,
void, and long strings that are not UTF-8, which the client library reads as ``bytes``),
bodies that are not JSON, not UTF-8, nested too deep, too large, envelopes with wrong types
and versions, and data close enough to each event's schema to reach the handlers.

:class:`InProcess` runs a service's own consumer (its handlers as its bootstrap wires them)
over :class:`FakeMessage`\\ s, with a publisher that encodes every message as the client library
would put it on the wire and records it, so that many examples take milliseconds each. The
real-broker tests then publish a sample of the same messages with aio-pika
(:func:`raw_long_strings` lets a test publisher write a long string that is not UTF-8).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from pamqp import decode as amqp_decode
from pamqp import encode as amqp_encode
from pamqp.header import ContentHeader

from ferry_events import STRUCTURED_CONTENT_TYPE, EventRegistry, default_registry
from ferry_events.deadletter import CODE_HEADER, REASON_HEADER
from ferry_runtime import Consumer, Publisher, ServiceRuntime

# ---------------------------------------------------------------------- Hypothesis profiles

#: ``FERRY_FUZZ_EXAMPLES`` multiplies every fuzz test's examples (``FERRY_FUZZ_EXAMPLES=20``
#: for a long run); the default keeps the whole fuzz set to seconds on two cores.
SCALE: Final = max(1, int(os.environ.get("FERRY_FUZZ_EXAMPLES", "1") or "1"))

settings.register_profile(
    "ferry-fuzz",
    deadline=None,  # a loaded two-core machine is slow at times; the bound is max_examples
    database=None,
    derandomize=os.environ.get("CI", "") != "" or SCALE == 1,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def fuzz_settings(examples: int, *, reuses_fixture: bool = False) -> settings:
    """The settings of one fuzz test: ``examples`` (times ``FERRY_FUZZ_EXAMPLES``), derandomized
    unless a long run asks for more, so that CI's results are reproducible.

    ``reuses_fixture``: the examples share a function-scoped fixture (one running service)
    on purpose.
    """
    profile = settings.get_profile("ferry-fuzz")
    checks = list(profile.suppress_health_check)
    if reuses_fixture:
        checks.append(HealthCheck.function_scoped_fixture)
    return settings(profile, max_examples=examples * SCALE, suppress_health_check=checks)


# ---------------------------------------------------------------------- AMQP field values


class RawLongString(bytes):
    """A long string (``S``) whose bytes are written as they are, UTF-8 or not.

    Other clients may write any bytes there; pamqp refuses to, so a test publisher wraps the
    encoder with :func:`raw_long_strings` to send one. The client library reads it back as
    ``bytes`` when it is not UTF-8.
    """


_encode_value = amqp_encode.encode_table_value


def _encode_raw(value: Any) -> bytes:
    if isinstance(value, RawLongString):
        return b"S" + struct.pack(">I", len(value)) + bytes(value)
    if isinstance(value, float):  # as other clients write a double; pamqp writes a single
        return b"d" + struct.pack(">d", value)
    if isinstance(value, dict):
        return b"F" + _table(value)
    if isinstance(value, list):
        items = b"".join(_encode_raw(item) for item in value)
        return b"A" + struct.pack(">I", len(items)) + items
    return _encode_value(value)


def _table(value: Mapping[str, Any]) -> bytes:
    items = b"".join(
        amqp_encode.short_string(key[:128]) + _encode_raw(item) for key, item in value.items()
    )
    return struct.pack(">I", len(items)) + items


@contextlib.contextmanager
def raw_long_strings(short: Mapping[str, bytes] | None = None) -> Iterator[None]:
    """Let :class:`RawLongString` values through pamqp's encoder while the block runs, and
    write each short string (a property such as ``message_id``) named in ``short`` as the
    bytes it maps to, UTF-8 or not."""
    original, original_short = amqp_encode.encode_table_value, amqp_encode.short_string
    swaps = dict(short or {})

    def short_string(value: str) -> bytes:
        raw = swaps.get(value)
        return original_short(value) if raw is None else struct.pack(">B", len(raw)) + raw

    amqp_encode.encode_table_value = _encode_raw
    amqp_encode.short_string = short_string
    amqp_encode.METHODS["shortstr"] = short_string
    try:
        yield
    finally:
        amqp_encode.encode_table_value = original
        amqp_encode.short_string = original_short
        amqp_encode.METHODS["shortstr"] = original_short


def as_received(headers: Mapping[str, Any]) -> dict[str, Any]:
    """``headers`` as a consumer reads them: written to the wire, then read back."""
    _, table = amqp_decode.field_table(_table(headers))
    return dict(table)


_INT64: Final = 2**63 - 1
# Hypothesis bounds datetimes with naive ones (and adds the zone itself)
_NAIVE_1970: Final = dt.datetime(1970, 1, 1)  # noqa: DTZ001
_NAIVE_2100: Final = dt.datetime(2100, 1, 1)  # noqa: DTZ001


def huge_text(least: int, most: int) -> st.SearchStrategy[str]:
    """Text of ``least`` to ``most`` characters (more than Hypothesis generates by itself)."""
    return st.builds(
        lambda piece, size: (piece * (size // max(1, len(piece)) + 1))[:size],
        st.text(min_size=1, max_size=8),
        st.integers(least, most),
    )


amqp_scalars: Final = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**31), 2**31 - 1),
    st.integers(-_INT64, _INT64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.decimals(min_value=-(10**6), max_value=10**6, places=3, allow_nan=False),
    st.datetimes(min_value=_NAIVE_1970, max_value=_NAIVE_2100).map(
        lambda t: t.replace(microsecond=0)
    ),
    st.text(max_size=40),
    huge_text(5_000, 20_000),
    st.binary(max_size=40).map(bytearray),
    st.binary(min_size=1, max_size=40).filter(lambda b: not _is_utf8(b)).map(RawLongString),
)
"""One AMQP field value of any type, including a long string that is not UTF-8."""

amqp_values: Final = st.recursive(
    amqp_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=8,
)
"""AMQP field values, with arrays and tables nested in each other."""


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


#: Header names a consumer reads: CloudEvents binary-mode attributes and Ferry's own.
HEADER_NAMES: Final = (
    "ce-specversion",
    "ce-id",
    "ce-source",
    "ce-type",
    "ce-time",
    "ce-correlationid",
    "ce-causationid",
    "ce_type",
    "cloudEvents:type",
    "cloudEvents_id",
    "x-ferry-attempt",
    "x-ferry-attempts",
    "x-ferry-reason",
    "x-ferry-error-code",
    "x-ferry-original-exchange",
    "x-ferry-original-routing-key",
    "x-ferry-destination",
    "x-death",
)

hostile_headers: Final = st.dictionaries(
    st.one_of(st.sampled_from(HEADER_NAMES), st.text(min_size=1, max_size=20)),
    amqp_values,
    max_size=6,
)
"""A header table as a publisher may send it (before the wire: see :func:`as_received`)."""


# ---------------------------------------------------------------------- event data


def _schema_strategy(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """Values close to ``schema`` (a pydantic JSON Schema): mostly valid, sometimes not."""
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return st.deferred(lambda: _schema_strategy(defs[name], defs))
    if "anyOf" in schema:
        return st.one_of([_schema_strategy(s, defs) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        properties: Mapping[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", ()))
        fields = {
            key: _schema_strategy(sub, defs) for key, sub in properties.items() if key in required
        }
        optional = {
            key: _schema_strategy(sub, defs)
            for key, sub in properties.items()
            if key not in required
        }
        extra = schema.get("additionalProperties")
        base = st.fixed_dictionaries(fields, optional=optional)
        if isinstance(extra, dict):
            more = st.dictionaries(_names, _schema_strategy(extra, defs), max_size=3)
            return st.tuples(base, more).map(lambda pair: {**pair[1], **pair[0]})
        return base
    if kind == "array":
        return st.lists(_schema_strategy(schema.get("items", {}), defs), max_size=3)
    if kind == "string":
        if schema.get("format") == "date-time":
            return _timestamps
        return _names
    if kind == "integer":
        return st.integers(-3, 10**6)
    if kind == "number":
        return st.floats(0, 10**6)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return json_values


#: Strings that the domain recognises (services, environments, ids), and some it does not.
_names: Final = st.one_of(
    st.sampled_from(
        [
            "payments",
            "dev",
            "staging",
            "prod",
            "master-1",
            "payments-7",
            "r-1",
            "a@example.com",
            "main",
            "0" * 40,
            "deployment.yaml",
            "kind: Deployment\nmetadata: {name: x}\n",
            "",
            "..",
            "../../etc",
        ]
    ),
    st.text(max_size=12),
)
_timestamps: Final = st.datetimes(
    min_value=_NAIVE_1970, max_value=_NAIVE_2100, timezones=st.just(dt.UTC)
).map(lambda t: t.isoformat())

json_values: Final = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
"""Any JSON value."""


@functools.cache
def data_for(type_name: str, registry: EventRegistry = default_registry) -> st.SearchStrategy[Any]:
    """``data`` for events of ``type_name``: from its schema, often valid, sometimes not."""
    schema = registry.model_for(type_name).model_json_schema(by_alias=True)
    return _schema_strategy(schema, schema.get("$defs", {}))


def deep_json(depth: int) -> str:
    """JSON nested ``depth`` levels."""
    return "[" * depth + "]" * depth


# ---------------------------------------------------------------------- messages


@dataclass
class FakeMessage:
    """A delivery as the consumer sees it, recording how it was settled."""

    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    content_type: str | None = STRUCTURED_CONTENT_TYPE
    content_encoding: str | None = None
    message_id: str | None = None
    correlation_id: str | None = None
    type: str | None = None
    timestamp: dt.datetime | None = None
    user_id: str | None = None
    app_id: str | None = None
    exchange: str = "ferry"
    routing_key: str = ""
    redelivered: bool = False
    delivery_tag: int = 1
    settled: list[str] = field(default_factory=list)

    @property
    def processed(self) -> bool:
        return bool(self.settled)

    async def ack(self, multiple: bool = False) -> None:
        self.settled.append("ack")

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        self.settled.append("requeue" if requeue else "nack")

    async def reject(self, requeue: bool = False) -> None:
        self.settled.append("requeue" if requeue else "reject")


def _deep_body(depth: int) -> Callable[[bytes], bytes]:
    return lambda _: b'{"specversion": "1.0", "data": ' + deep_json(depth).encode() + b"}"


def _prefixed(junk: bytes) -> Callable[[bytes], bytes]:
    return lambda _: b"\xff\xfe" + junk


def _replaced(junk: bytes) -> Callable[[bytes], bytes]:
    return lambda _: junk


def _as_is(body: bytes) -> bytes:
    return body


def _cut(body: bytes) -> bytes:
    return body[:-1]


def _surrogates(_: bytes) -> bytes:
    return b'{"specversion": "1.0", "type": "\\ud800", "data": {"x": "\\udcff"}}'


def _reason(text: str) -> dict[str, str]:
    return {"reason": text}


_odd_data: Final = json_values | huge_text(70_000, 1_200_000).map(_reason)
_specversions: Final = st.sampled_from(["1.0", "1.0", "1.0", "0.3", "2.0", 1.0, None])
_ids: Final = st.uuids().map(str) | st.text(max_size=20) | huge_text(100, 300) | json_values
_sources: Final = st.just("ferry/fuzz") | json_values
_times: Final = _timestamps | st.text(max_size=20) | json_values
_binary_types: Final = st.sampled_from(["application/json", None, "text/plain"])
_structured_types: Final = st.sampled_from([STRUCTURED_CONTENT_TYPE, None, "application/json"])
#: Message properties; one that was not UTF-8 arrives with surrogate escapes (ferry_runtime.amqp).
_properties: Final = (
    st.none()
    | st.text(max_size=20)
    | st.binary(max_size=12).map(lambda raw: raw.decode("utf-8", "surrogateescape"))
)

#: What becomes of an encoded envelope: kept (mostly), replaced by bytes that are not UTF-8,
#: not JSON, nested too deep, cut short, or escaped to lone surrogates.
_body_forms: Final = st.one_of(
    st.just(_as_is),
    st.binary(max_size=64).map(_replaced),
    st.binary(max_size=64).map(_prefixed),
    st.integers(60, 3_000).map(_deep_body),
    st.just(_cut),
    st.just(_surrogates),
)


@st.composite
def hostile_messages(
    draw: st.DrawFn, event_types: Sequence[str], registry: EventRegistry = default_registry
) -> FakeMessage:
    """A message on one of ``event_types``' routing keys that may be anything a publisher sends.

    Structured or binary content mode; the envelope from nearly valid to nonsense; the body
    from valid JSON to bytes that are not UTF-8; headers of every AMQP type.
    """
    routing_key = draw(st.sampled_from(list(event_types)))
    name = routing_key.rsplit(".v", 1)[0]
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(draw(st.uuids())),
        "source": "ferry/fuzz",
        "type": routing_key,
        "time": draw(_timestamps),
    }
    odd = {
        "specversion": _specversions,
        "id": _ids,
        "source": _sources,
        "type": st.sampled_from([f"{name}.v9", name, *registry.types()]) | st.text(max_size=30),
        "time": _times,
        "correlationid": _ids,
        "causationid": _ids,
        "subject": _ids,
    }
    for attribute in draw(st.sets(st.sampled_from(sorted(odd)), max_size=3)):
        attributes[attribute] = draw(odd[attribute])
    known = routing_key in registry.types()
    if known and draw(st.integers(0, 3)):
        data = draw(data_for(routing_key, registry))
    else:
        data = draw(_odd_data)
    headers = draw(hostile_headers) if draw(st.booleans()) else {}
    binary = draw(st.booleans())
    if binary:
        for name, value in attributes.items():
            if value is not None and draw(st.integers(0, 9)):
                headers[f"ce-{name}"] = value if not isinstance(value, dict | list) else str(value)
        content_type = draw(_binary_types)
        envelope: Any = data
    else:
        content_type = draw(_structured_types)
        envelope = {**attributes, "data": data}
    encoded = json.dumps(envelope, default=str).encode()
    body = encoded if draw(st.booleans()) else draw(_body_forms)(encoded)
    return FakeMessage(
        body=body,
        headers=as_received(headers),
        content_type=draw(_properties) if draw(st.integers(0, 9)) == 0 else content_type,
        routing_key=routing_key,
        message_id=draw(_properties),
        correlation_id=draw(_properties),
    )


# ---------------------------------------------------------------------- in-process consumer


@dataclass
class Sent:
    """One message the service published (to the exchange, a retry queue or its dead letters)."""

    exchange: str
    routing_key: str
    message: aio_pika.Message

    @property
    def code(self) -> str | None:
        value = (self.message.headers or {}).get(CODE_HEADER)
        return None if value is None else str(value)

    @property
    def reason(self) -> str | None:
        value = (self.message.headers or {}).get(REASON_HEADER)
        return None if value is None else str(value)


class RecordingPublisher(Publisher):
    """A publisher without a broker: encodes each message as the client library would (so an
    unencodable header or property fails here as it would on a channel), then records it."""

    def __init__(self, service: str, exchange: str = "ferry") -> None:
        self._service = service
        self._channel = cast(AbstractChannel, _Channel())
        self._exchange_name = exchange
        self.redelivery_exchange = None
        self.sent: list[Sent] = []

    @property
    def exchange_name(self) -> str:
        return self._exchange_name

    async def publish_message(
        self,
        message: aio_pika.Message,
        routing_key: str,
        event_type: str,
        *,
        exchange: Any = None,
        timeout: float = 30.0,
    ) -> None:
        ContentHeader(0, len(message.body), message.properties).marshal()
        amqp_encode.short_string(routing_key)
        name = self._exchange_name if exchange is None else str(getattr(exchange, "name", ""))
        self.sent.append(Sent(name, routing_key, message))


@dataclass
class _Named:
    name: str


@dataclass
class _Channel:
    default_exchange: _Named = field(default_factory=lambda: _Named(""))


@dataclass
class Outcome:
    """How one delivery ended."""

    settled: list[str]
    dead_letters: list[Sent]
    retries: list[Sent]
    published: list[Sent]

    def problems(self) -> list[str]:
        """What is wrong with this ending: empty for an ack, or a dead letter with a reason."""
        found: list[str] = []
        if len(self.settled) != 1:
            found.append(f"settled {self.settled or 'never'} (want exactly one ack)")
        elif self.settled != ["ack"]:
            found.append(f"settled with {self.settled[0]} (want an ack after the effect)")
        found += [f"retried ({s.message.headers})" for s in self.retries]
        for letter in self.dead_letters:
            if letter.code == "consumer-error":
                found.append(f"escaped the consumer's handling: {letter.reason}")
            elif not letter.code or not letter.reason:
                found.append(f"dead-lettered without a code and reason: {letter.message.headers}")
        return found


class InProcess:
    """A service's consumer, as its bootstrap wired it, handling messages without a broker."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime
        self.queues = runtime.queues()
        self.publisher = RecordingPublisher(runtime.service, runtime.settings.exchange)
        self.consumer: Consumer = runtime.consumer_over(
            cast(AbstractQueue, _Named(self.queues.main)), self.publisher
        )

    async def __aenter__(self) -> InProcess:
        for hook in self.runtime.start_hooks:
            await hook()
        return self

    async def __aexit__(self, *_: object) -> None:
        for hook in self.runtime.stop_hooks:
            await hook()

    @property
    def event_types(self) -> tuple[str, ...]:
        return self.queues.routing_keys

    async def deliver(self, *messages: FakeMessage) -> list[Outcome]:
        """Hand ``messages`` to the consumer as one batch; how each ended, in order."""
        before = len(self.publisher.sent)
        await self.consumer.handle([cast(AbstractIncomingMessage, m) for m in messages])
        sent = self.publisher.sent[before:]
        outcomes = []
        for message in messages:
            mine = [s for s in sent if s.exchange == "" and s.message.body == message.body]
            outcomes.append(
                Outcome(
                    settled=list(message.settled),
                    dead_letters=[s for s in mine if s.routing_key == self.queues.dead_letter],
                    retries=[s for s in mine if ".retry." in s.routing_key],
                    published=[s for s in sent if s.exchange == self.publisher.exchange_name],
                )
            )
        return outcomes
