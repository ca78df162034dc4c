"""The validation domain, rule by rule: no broker, plain data in, a verdict out."""

from __future__ import annotations

from typing import Any

import pytest

from ferry_events import ArtifactAccepted, ArtifactRejected, CloudEvent, Reason, decode, encode
from ferry_ingest.domain import Accepted, Limits, Rejected, validate
from ferry_ingest.handlers import to_event

Manifests = dict[str, dict[str, str]]

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: payments
spec:
  replicas: 1
"""
SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: payments
"""


def rejected(artifact: dict[str, Any], manifests: Any, limits: Limits | None = None) -> Rejected:
    outcome = validate(artifact, manifests, limits)
    assert isinstance(outcome, Rejected), outcome
    return outcome


def only(outcome: Rejected, code: str) -> Reason:
    """The one reason with ``code``, after checking there is no other reason at all."""
    assert outcome.codes() == [code], outcome.reasons
    return outcome.reasons[0]


def by_field(outcome: Rejected) -> dict[str | None, Reason]:
    return {r.field: r for r in outcome.reasons}


# --------------------------------------------------------------------------- the example


def test_the_repository_example_is_accepted(
    example_artifact: dict[str, Any], example_manifests: Manifests
) -> None:
    outcome = validate(example_artifact, example_manifests)
    assert isinstance(outcome, Accepted), outcome
    assert outcome.artifact.id == "master-0017d995e3-67e9d69164"
    assert outcome.artifact.service == "payments"
    assert outcome.artifact.application.author_email == "jane@example.com"
    assert outcome.artifact.ci.job_url == "https://ci.example.com/job/payments/1234"
    assert outcome.manifests == example_manifests
    assert sorted(outcome.manifests) == ["dev", "prod", "staging"]


def test_the_accepted_event_keeps_release_manager_field_names(
    example_artifact: dict[str, Any], example_manifests: Manifests
) -> None:
    outcome = validate(example_artifact, example_manifests)
    event = CloudEvent.new(to_event(outcome), source="ferry/artifact-ingest")
    data = decode(encode(event)).data
    assert data["artifact"]["application"]["authorEmail"] == "jane@example.com"
    assert data["artifact"]["ci"]["jobUrl"] == "https://ci.example.com/job/payments/1234"
    assert data["manifests"] == example_manifests
    assert ArtifactAccepted.model_validate(data).artifact.id == example_artifact["id"]
    assert event.subject == "payments"


# --------------------------------------------------------------------------- the spec


def test_missing_fields_are_each_reported_with_their_path(example_manifests: Manifests) -> None:
    outcome = rejected({"application": {}}, example_manifests)
    reasons = by_field(outcome)
    assert set(reasons) == {
        "artifact.id",
        "artifact.service",
        "artifact.application.branch",
        "artifact.application.sha",
    }
    assert reasons["artifact.id"].message == "artifact.id is required"
    assert {r.code for r in outcome.reasons} == {"invalid-artifact"}


@pytest.mark.parametrize(
    ("change", "field", "expected"),
    [
        ({"id": "../../etc"}, "artifact.id", "must be one path segment"),
        ({"id": "a/b"}, "artifact.id", "must be one path segment"),
        ({"id": ""}, "artifact.id", "at least 1 character"),
        ({"service": "Payments"}, "artifact.service", "lowercase DNS label"),
        ({"service": "pay_ments"}, "artifact.service", "lowercase DNS label"),
        ({"namespace": "Bad_NS"}, "artifact.namespace", "lowercase DNS label"),
        ({"stages": "build,test"}, "artifact.stages", "valid list"),
        ({"stages": [{"name": "x"}]}, "artifact.stages[0].id", "is required"),
        ({"ci": {"start": "yesterday"}}, "artifact.ci.start", "datetime"),
        ({"application": {"branch": 7, "sha": "abc"}}, "artifact.application.branch", "string"),
    ],
)
def test_a_wrong_field_is_named_with_a_readable_message(
    example_artifact: dict[str, Any],
    example_manifests: Manifests,
    change: dict[str, Any],
    field: str,
    expected: str,
) -> None:
    example_artifact.update(change)
    reason = only(rejected(example_artifact, example_manifests), "invalid-artifact")
    assert reason.field == field
    assert reason.message.startswith(f"{field}")
    assert expected in reason.message
    assert "Value error" not in reason.message


def test_a_wrong_value_is_quoted_in_the_message(
    example_artifact: dict[str, Any], example_manifests: Manifests
) -> None:
    example_artifact["service"] = "Payments"
    reason = only(rejected(example_artifact, example_manifests), "invalid-artifact")
    assert reason.message.endswith("(got 'Payments')")


def test_a_rejection_names_what_could_be_read_and_only_valid_names(
    example_artifact: dict[str, Any], example_manifests: Manifests
) -> None:
    example_artifact["service"] = "../payments"
    outcome = rejected(example_artifact, example_manifests)
    assert outcome.service is None  # not a valid name: others use it as a path
    assert outcome.artifact_id == "master-0017d995e3-67e9d69164"
    assert outcome.squad == "checkout"
    assert outcome.author_email == "jane@example.com"
    assert outcome.branch == "master"


def test_a_rejection_of_garbage_names_nothing() -> None:
    outcome = rejected({"id": 5, "application": "x", "squad": ["a"]}, {})
    assert (outcome.artifact_id, outcome.service, outcome.squad) == (None, None, None)
    assert (outcome.author_email, outcome.branch) == (None, None)
    assert "no-manifests" in outcome.codes()


# --------------------------------------------------------------------------- CI results


def test_failed_tests_reject_with_count_and_link(
    example_artifact: dict[str, Any], example_manifests: Manifests
) -> None:
    example_artifact["stages"][1]["data"]["results"]["failed"] = 3
    reason = only(rejected(example_artifact, example_manifests), "tests-failed")
    assert "3 failed tests" in reason.message
    assert "https://ci.example.com/job/payments/1234/tests" in reason.message
    assert reason.field == "artifact.stages[1].data.results.failed"


def test_one_failed_test_without_a_url(
    example_artifact: dict[str, Any], example_manifests: Manifests
) -> None:
    example_artifact["stages"] = [{"id": "test", "data": {"results": {"failed": 1}}}]
    reason = only(rejected(example_artifact, example_manifests), "tests-failed")
    assert "1 failed test." in reason.message
    assert "see" not in reason.message
    assert reason.field == "artifact.stages[0].data.results.failed"


@pytest.mark.parametrize(
    "stages",
    [
        [],
        [{"id": "test", "data": {"results": {"failed": "3"}}}],
        [{"id": "test", "data": {"results": {"failed": True}}}],
        [{"id": "test", "data": {"results": {"failed": -1}}}],
        [{"id": "build"}],
        [{"id": "test", "data": {}}],
        [{"id": "test", "data": {"results": {"passed": 10, "failed": 0}}}],
    ],
)
def test_no_failed_tests_passes(
    example_artifact: dict[str, Any], example_manifests: Manifests, stages: list[Any]
) -> None:
    example_artifact["stages"] = stages
    assert isinstance(validate(example_artifact, example_manifests), Accepted)


# --------------------------------------------------------------------------- environments


@pytest.mark.parametrize("manifests", [{}, {"dev": {}}, {"dev": {}, "prod": {}}])
def test_at_least_one_environment_with_files(
    example_artifact: dict[str, Any], manifests: dict[str, Any]
) -> None:
    reason = only(rejected(example_artifact, manifests), "no-manifests")
    assert reason.field == "manifests"
    assert "at least one environment" in reason.message


def test_environments_without_files_are_left_out(example_artifact: dict[str, Any]) -> None:
    outcome = validate(example_artifact, {"dev": {"d.yaml": DEPLOYMENT}, "prod": {}})
    assert isinstance(outcome, Accepted)
    assert outcome.manifests == {"dev": {"d.yaml": DEPLOYMENT}}


@pytest.mark.parametrize("env", ["Prod", "../prod", "prod_eu", "-dev", "a" * 64, ""])
def test_environment_names_are_dns_labels(example_artifact: dict[str, Any], env: str) -> None:
    reason = only(rejected(example_artifact, {env: {"d.yaml": DEPLOYMENT}}), "invalid-environment")
    assert "DNS label" in reason.message
    assert reason.field == f"manifests.{env}"


def test_environment_allow_list(example_artifact: dict[str, Any]) -> None:
    limits = Limits(environments=frozenset({"dev", "prod"}))
    manifests = {"dev": {"d.yaml": DEPLOYMENT}, "qa": {"d.yaml": DEPLOYMENT}}
    reason = only(rejected(example_artifact, manifests, limits), "environment-not-allowed")
    assert reason.field == "manifests.qa"
    assert "'qa'" in reason.message
    assert "dev, prod" in reason.message
    assert "FERRY_INGEST_ENVIRONMENTS" in reason.message
    assert isinstance(
        validate(example_artifact, {"prod": {"d.yaml": DEPLOYMENT}}, limits), Accepted
    )


def test_an_environment_must_map_file_names_to_text(example_artifact: dict[str, Any]) -> None:
    reason = only(rejected(example_artifact, {"dev": [DEPLOYMENT]}), "invalid-manifests")
    assert reason.field == "manifests.dev"
    assert "got list" in reason.message


def test_a_file_must_be_text(example_artifact: dict[str, Any]) -> None:
    outcome = rejected(example_artifact, {"dev": {"d.yaml": {"kind": "Deployment"}}})
    reason = only(outcome, "invalid-manifests")
    assert reason.field == "manifests.dev.d.yaml"
    assert reason.message == "dev/d.yaml must be YAML text, got dict"


# --------------------------------------------------------------------------- file names


@pytest.mark.parametrize(
    "name", ["../d.yaml", "a/d.yaml", ".hidden.yaml", "d.json", "deployment", "d.yaml/", " d.yaml"]
)
def test_file_names_are_safe_yaml_segments(example_artifact: dict[str, Any], name: str) -> None:
    reason = only(rejected(example_artifact, {"dev": {name: DEPLOYMENT}}), "invalid-file-name")
    assert reason.field == f"manifests.dev.{name}"
    assert "ending in .yaml or .yml" in reason.message


@pytest.mark.parametrize("name", ["d.yaml", "d.yml", "00-Namespace_v2.YAML"])
def test_good_file_names_pass(example_artifact: dict[str, Any], name: str) -> None:
    assert isinstance(validate(example_artifact, {"dev": {name: DEPLOYMENT}}), Accepted)


# --------------------------------------------------------------------------- YAML


def test_unparseable_yaml_names_the_file_and_line(example_artifact: dict[str, Any]) -> None:
    text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: [payments\n"
    reason = only(rejected(example_artifact, {"dev": {"svc.yaml": text}}), "invalid-yaml")
    assert reason.field == "manifests.dev.svc.yaml"
    assert reason.message.startswith(
        "dev/svc.yaml is not valid YAML: while parsing a flow sequence (from line 4): "
    )
    assert reason.message.endswith("at line 5, column 1")


def test_several_documents_and_empty_ones_pass(example_artifact: dict[str, Any]) -> None:
    text = f"---\n# a comment\n---\n{DEPLOYMENT}---\n{SERVICE}---\n"
    assert isinstance(validate(example_artifact, {"dev": {"all.yaml": text}}), Accepted)


def test_each_bad_document_is_reported(example_artifact: dict[str, Any]) -> None:
    text = f"{DEPLOYMENT}---\nkind: Service\nmetadata: {{}}\n---\n- a list\n---\njust text\n"
    outcome = rejected(example_artifact, {"dev": {"all.yaml": text}})
    assert outcome.codes() == ["not-a-kubernetes-object"] * 3
    first, second, third = (r.message for r in outcome.reasons)
    assert first.startswith("dev/all.yaml, document 2: the Service object has no apiVersion")
    assert "metadata.name" in first
    assert first.endswith("(every Kubernetes object needs them)")
    assert second.startswith("dev/all.yaml, document 3: expected a Kubernetes object")
    assert second.endswith("got a list")
    assert "document 4" in third
    assert "'just text'" in third


@pytest.mark.parametrize(
    ("document", "missing"),
    [
        ("kind: Service\nmetadata:\n  name: x\n", "apiVersion"),
        ("apiVersion: v1\nmetadata:\n  name: x\n", "kind"),
        ("apiVersion: v1\nkind: Service\n", "metadata.name"),
        ("apiVersion: v1\nkind: Service\nmetadata: x\n", "metadata.name"),
        ("apiVersion: v1\nkind: Service\nmetadata:\n  name: ''\n", "metadata.name"),
        ("apiVersion: 1\nkind: Service\nmetadata:\n  name: x\n", "apiVersion"),
    ],
)
def test_a_kubernetes_object_needs_api_version_kind_and_name(
    example_artifact: dict[str, Any], document: str, missing: str
) -> None:
    reason = only(
        rejected(example_artifact, {"dev": {"x.yaml": document}}), "not-a-kubernetes-object"
    )
    assert f"has no {missing} " in reason.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: !!python/object/apply:os.system ['true']\n", "could not determine a constructor"),
        ("a: 2026-13-45\n", "month must be in 1..12"),
        ("a: !!float abc\n", "could not convert"),
        ("[" * 3000 + "]" * 3000, "nest"),  # "nested too deeply" or libyaml's "nesting depth"
        ("apiVersion: v1\nkind: \x07\n", "#x0007 is not allowed"),
    ],
)
def test_hostile_or_odd_yaml_is_refused_not_executed(
    example_artifact: dict[str, Any], text: str, expected: str
) -> None:
    reason = only(rejected(example_artifact, {"dev": {"x.yaml": text}}), "invalid-yaml")
    assert expected in reason.message


# --------------------------------------------------------------------------- limits


def test_a_file_over_the_limit_is_not_parsed(example_artifact: dict[str, Any]) -> None:
    limits = Limits(max_file_bytes=1024)
    text = "{ not yaml at all " + "x" * 2000
    reason = only(rejected(example_artifact, {"dev": {"big.yaml": text}}, limits), "file-too-large")
    assert reason.message == (
        f"dev/big.yaml is {len(text)} bytes, over the limit of 1 KiB per file "
        "(FERRY_INGEST_MAX_FILE_BYTES)"
    )


def test_file_size_counts_utf8_bytes(example_artifact: dict[str, Any]) -> None:
    text = SERVICE + "# " + "é" * 600 + "\n"  # 600 characters, 1200 bytes
    limits = Limits(max_file_bytes=1024)
    only(rejected(example_artifact, {"dev": {"s.yaml": text}}, limits), "file-too-large")


def test_the_total_over_the_limit(example_artifact: dict[str, Any]) -> None:
    limits = Limits(max_file_bytes=1024, max_total_bytes=2 * len(SERVICE) + 1)
    manifests = {env: {"s.yaml": SERVICE} for env in ("dev", "staging", "prod")}
    reason = only(rejected(example_artifact, manifests, limits), "manifests-too-large")
    assert f"{3 * len(SERVICE)} bytes together" in reason.message
    assert "FERRY_INGEST_MAX_TOTAL_BYTES" in reason.message
    exactly = {env: {"s.yaml": SERVICE} for env in ("dev", "prod")}
    assert isinstance(validate(example_artifact, exactly, limits), Accepted)


def test_too_many_files_in_one_environment(example_artifact: dict[str, Any]) -> None:
    limits = Limits(max_files_per_environment=2)
    files = {f"{i}.yaml": SERVICE for i in range(3)}
    reason = only(rejected(example_artifact, {"dev": files}, limits), "too-many-files")
    assert reason.message.startswith("environment 'dev' has 3 files, more than the limit of 2")
    assert isinstance(
        validate(example_artifact, {"dev": dict(list(files.items())[:2])}, limits), Accepted
    )


# --------------------------------------------------------------------------- all at once


def test_every_problem_is_reported_at_once(example_artifact: dict[str, Any]) -> None:
    example_artifact["stages"][1]["data"]["results"]["failed"] = 2
    del example_artifact["application"]["sha"]
    example_artifact["namespace"] = "Payments"
    manifests = {
        "dev": {"d.yaml": DEPLOYMENT, "broken.yaml": "a: [", "notes.txt": SERVICE},
        "Prod": {"d.yaml": "kind: Deployment\n"},
    }
    outcome = rejected(example_artifact, manifests)
    assert sorted(outcome.codes()) == sorted(
        [
            "invalid-artifact",  # application.sha
            "invalid-artifact",  # namespace
            "tests-failed",  # read even though the spec is wrong
            "invalid-yaml",
            "invalid-file-name",
            "invalid-environment",
            "not-a-kubernetes-object",
        ]
    )
    assert {r.field for r in outcome.reasons} == {
        "artifact.application.sha",
        "artifact.namespace",
        "artifact.stages[1].data.results.failed",
        "manifests.dev.broken.yaml",
        "manifests.dev.notes.txt",
        "manifests.Prod",
        "manifests.Prod.d.yaml",
    }
    assert outcome.artifact_id == "master-0017d995e3-67e9d69164"
    assert outcome.service == "payments"


def test_a_rejection_with_hostile_names_still_travels(example_artifact: dict[str, Any]) -> None:
    """Lone surrogates and control characters (valid in JSON) cannot break the rejected event."""
    example_artifact["squad"] = "team\ud800"
    manifests = {"dev\ud800": {"d\x00.yaml": "kind: \ud800"}, "dev": {"x\ud801.yaml": SERVICE}}
    outcome = rejected(example_artifact, manifests)
    assert sorted(outcome.codes()) == [
        "invalid-environment",
        "invalid-file-name",
        "invalid-file-name",
        "invalid-yaml",
    ]
    event = CloudEvent.new(to_event(outcome), source="ferry/artifact-ingest")
    data = ArtifactRejected.model_validate(decode(encode(event)).data)
    assert data.squad == "team\\ud800"
    assert {r.field for r in data.reasons} >= {
        "manifests.dev\\ud800",
        "manifests.dev.x\\ud801.yaml",
    }
