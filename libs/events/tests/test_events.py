from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

import ferry_events
from ferry_events import (
    Actor,
    ArtifactSpec,
    CloudEvent,
    EventRegistry,
    Intent,
    MalformedEvent,
    PayloadTooLarge,
    ReleaseRequested,
    UnknownEventType,
    UnknownEventVersion,
    decode,
    default_registry,
    derived_id,
    encode,
)
from ferry_events.schema import schemas
from ferry_events.types import EventData

ROOT = Path(__file__).resolve().parents[3]


def _request() -> ReleaseRequested:
    return ReleaseRequested(
        release_id="r-1",
        service="payments",
        environment="prod",
        intent=Intent.PROMOTE,
        from_environment="staging",
        actor=Actor(subject="jane", email="jane@example.com"),
        requested_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


def test_wire_fields_are_camel_case_and_round_trip() -> None:
    event = CloudEvent.new(_request(), source="ferry/promotion")
    body = json.loads(encode(event))
    assert body["specversion"] == "1.0"
    assert body["type"] == "ferry.release.requested.v1"
    assert body["subject"] == "payments"
    assert body["correlationid"] == event.id
    assert body["data"]["releaseId"] == "r-1"
    assert body["data"]["fromEnvironment"] == "staging"
    assert "release_id" not in body["data"]
    decoded, data = default_registry.parse(decode(encode(event)))
    assert decoded == event
    assert data == _request()


def test_caused_event_inherits_correlation_and_derives_its_id() -> None:
    cause = CloudEvent.new(_request(), source="ferry/promotion", correlation_id="corr-1")
    first = CloudEvent.new(_request(), source="ferry/x", cause=cause)
    again = CloudEvent.new(_request(), source="ferry/x", cause=cause)
    assert first.correlationid == "corr-1"
    assert first.causationid == cause.id
    assert first.id == again.id == derived_id(cause.id, "ferry.release.requested.v1")


def test_binary_mode_is_read_from_ce_headers() -> None:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "abc",
        "ce-source": "ci",
        "ce-type": "ferry.release.requested.v1",
        "ce-time": "2026-01-02T03:04:05Z",
        "ce-correlationid": "c-9",
    }
    body = json.dumps(_request().to_wire()).encode()
    event = decode(body, headers=headers, content_type="application/json")
    assert event.id == "abc"
    assert event.correlationid == "c-9"
    _, data = default_registry.parse(event)
    assert isinstance(data, ReleaseRequested)
    assert data.from_environment == "staging"


def test_cloudevents_sdk_amqp_prefix_is_accepted() -> None:
    headers = {
        "cloudEvents:specversion": "1.0",
        "cloudEvents:id": "x1",
        "cloudEvents:source": "ci",
        "cloudEvents:type": "ferry.release.requested.v1",
        "cloudEvents:time": "2026-01-02T03:04:05Z",
    }
    event = decode(json.dumps(_request().to_wire()).encode(), headers=headers)
    assert event.correlationid == "x1"  # defaults to its own id


def test_oversized_payload_is_refused_with_sizes() -> None:
    with pytest.raises(PayloadTooLarge, match="over the limit of 1024 bytes"):
        decode(b"{" + b" " * 2000 + b"}", max_bytes=1024)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"specversion": "0.3"}', "specversion must be '1.0'"),
        (b'{"specversion": "1.0", "id": "x"}', "source"),
    ],
)
def test_malformed_envelopes_say_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(MalformedEvent, match=message):
        decode(body)


def test_data_that_fails_its_schema_names_the_field() -> None:
    event = CloudEvent.new(_request(), source="t").model_copy(update={"data": {"service": 3}})
    with pytest.raises(MalformedEvent, match="releaseId: Field required"):
        default_registry.parse(event)


def test_unknown_type_and_version_are_refused_specifically() -> None:
    base = CloudEvent.new(_request(), source="t")
    with pytest.raises(UnknownEventType, match=r"unknown event type 'ferry\.nope\.v1'"):
        default_registry.parse(base.model_copy(update={"type": "ferry.nope.v1"}))
    with pytest.raises(UnknownEventVersion, match="knows version"):
        default_registry.parse(base.model_copy(update={"type": "ferry.release.requested.v7"}))
    with pytest.raises(UnknownEventType, match="not of the form"):
        default_registry.parse(base.model_copy(update={"type": "release"}))


def test_older_versions_are_upcast_through_a_chain() -> None:
    class ThingV3(EventData):
        event_type = "ferry.thing.happened.v3"
        name: str
        size: int

    registry = EventRegistry([ThingV3])
    registry.register_upcaster("ferry.thing.happened", 1, lambda d: {**d, "name": d.pop("title")})
    registry.register_upcaster("ferry.thing.happened", 2, lambda d: {**d, "size": 0})
    old = CloudEvent(
        id="1",
        source="t",
        type="ferry.thing.happened.v1",
        time=datetime.now(UTC),
        correlationid="1",
        data={"title": "x"},
    )
    event, data = registry.parse(old)
    assert event.type == "ferry.thing.happened.v3"
    assert data == ThingV3(name="x", size=0)


def test_artifact_spec_reads_release_manager_artifact_json() -> None:
    spec = ArtifactSpec.model_validate_json(
        (ROOT / "examples" / "artifact.json").read_text(encoding="utf-8")
    )
    assert spec.application.author_email
    assert spec.stage("test") is not None
    assert spec.failed_tests() == 0
    assert spec.application.committed_at == datetime(2026, 11, 28, 9, 58, 40, tzinfo=UTC)


def test_committed_at_is_optional_and_camel_case_on_the_wire() -> None:
    """An artifact.json without ``application.committedAt`` (every release-manager one) still
    reads; with it, the field round-trips under its camelCase name."""
    raw = json.loads((ROOT / "examples" / "artifact.json").read_text(encoding="utf-8"))
    del raw["application"]["committedAt"]
    spec = ArtifactSpec.model_validate(raw)
    assert spec.application.committed_at is None
    assert "committedAt" not in spec.to_wire()["application"]  # type: ignore[operator]
    raw["application"]["committedAt"] = "2026-11-28T10:58:40+01:00"
    wire = ArtifactSpec.model_validate(raw).to_wire()["application"]
    committed = datetime.fromisoformat(wire["committedAt"])  # type: ignore[index]
    assert committed == datetime(2026, 11, 28, 9, 58, 40, tzinfo=UTC)


@pytest.mark.parametrize("bad_id", ["../etc", "a/b", ".hidden", "", "x" * 200])
def test_artifact_ids_must_be_safe_path_segments(bad_id: str) -> None:
    with pytest.raises(ValueError, match="id"):
        ArtifactSpec.model_validate(
            {"id": bad_id, "service": "svc", "application": {"branch": "m", "sha": "s"}}
        )


def test_every_event_type_is_registered_and_versioned() -> None:
    types = default_registry.types()
    assert len(types) == len(ferry_events.ALL_EVENT_TYPES) == 22
    assert all(t.startswith("ferry.") and t.endswith(".v1") for t in types)


def test_checked_in_json_schemas_are_current() -> None:
    directory = ROOT / "docs" / "events"
    wanted = schemas()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in directory.glob("*.json")}
    stale = sorted(name for name in wanted if on_disk.get(name) != wanted[name])
    extra = sorted(set(on_disk) - set(wanted))
    assert not stale, f"docs/events is stale ({stale}); run 'make schemas' and commit the result"
    assert not extra, f"docs/events has schemas of no event type ({extra}); run 'make schemas'"


def test_public_surface_is_pinned() -> None:
    """Adding to or removing from the public surface is a deliberate change: update this list."""
    expected = {
        "ALL_ENVIRONMENTS",
        "ALL_EVENT_TYPES",
        "CI",
        "DATA_CONTENT_TYPE",
        "DEFAULT_MAX_BYTES",
        "DNS_LABEL",
        "STRUCTURED_CONTENT_TYPE",
        "Actor",
        "Application",
        "ApprovalDenied",
        "ApprovalGranted",
        "ApprovalRequested",
        "ArtifactAccepted",
        "ArtifactMarkChangeRequested",
        "ArtifactMarkChanged",
        "ArtifactPublished",
        "ArtifactRejected",
        "ArtifactSpec",
        "ArtifactStored",
        "CloudEvent",
        "EventData",
        "EventError",
        "EventRegistry",
        "HaltChangeRequested",
        "HaltChanged",
        "Intent",
        "MalformedEvent",
        "Manifests",
        "PayloadTooLarge",
        "PolicyChangeRequested",
        "PolicyChanged",
        "PolicyViolation",
        "Reason",
        "ReleaseApproved",
        "ReleaseCommitted",
        "ReleaseFailed",
        "ReleaseRejected",
        "ReleaseRequested",
        "RolloutFact",
        "RolloutFailed",
        "RolloutStarted",
        "RolloutSucceeded",
        "Stage",
        "TypeMismatch",
        "UnknownEventType",
        "UnknownEventVersion",
        "Upcaster",
        "WireModel",
        "Workload",
        "WorkloadDegraded",
        "binary_attributes",
        "decode",
        "default_registry",
        "derived_id",
        "describe_errors",
        "encode",
        "is_safe_segment",
        "split_type",
        "utcnow",
        "DEFAULT_YAML_LIMITS",
        "YamlLimitExceeded",
        "YamlLimits",
        "check_yaml_limits",
        "load_yaml_document",
        "load_yaml_documents",
        "mask_secrets",
        "mask_url",
        "ARTIFACT_FILE",
        "MANIFEST_SUFFIXES",
        "InvalidManifest",
        "Stamp",
        "environment_files",
        "stamp_manifest",
    }
    assert set(ferry_events.__all__) == expected
    for name in expected:
        assert hasattr(ferry_events, name), name
