"""The walking skeleton: a build from CI through artifact-ingest and git-writer into the
config repository, with both services running in-process on one broker namespace.

``example_artifact`` / ``published`` / ``push_and_wait`` are meant to be reused: a
``ferry artifact push`` variant only replaces how the ``ArtifactPublished`` is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ferry_events import ArtifactPublished, CloudEvent, derived_id
from ferry_gitwriter.bootstrap import build as build_git_writer
from ferry_gitwriter.settings import GitWriterSettings
from ferry_ingest.bootstrap import build as build_ingest
from ferry_ingest.settings import IngestSettings
from ferry_testing import BrokerNamespace, EventTap, git, log_subjects, running, show

pytestmark = pytest.mark.amqp

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
OUTCOMES = ("ferry.artifact.stored.v1", "ferry.artifact.rejected.v1")


def example_artifact() -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """``examples/artifact.json`` and ``examples/manifests/`` as CI sends them (fresh copies)."""
    artifact = json.loads((EXAMPLES / "artifact.json").read_text())
    manifests = {
        env.name: {f.name: f.read_text() for f in sorted(env.iterdir()) if f.is_file()}
        for env in sorted((EXAMPLES / "manifests").iterdir())
        if env.is_dir()
    }
    return copy.deepcopy(artifact), manifests


def published(artifact: dict[str, Any], manifests: dict[str, dict[str, str]]) -> CloudEvent:
    """The event CI publishes for one build."""
    return CloudEvent.new(
        ArtifactPublished(artifact=artifact, manifests=manifests), source="ferry/ci"
    )


async def push_and_wait(
    ns: BrokerNamespace, tap: EventTap, event: CloudEvent, *, timeout: float = 20.0
) -> CloudEvent:
    """Publish ``event`` and wait for how its life ends: stored, or rejected."""
    await ns.publish(event)
    async with asyncio.timeout(timeout):
        while True:
            for outcome in tap.events:
                if outcome.type in OUTCOMES and outcome.correlationid == event.correlationid:
                    return outcome
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def skeleton(ns: BrokerNamespace, remote: Path, data_dir: Path) -> AsyncIterator[None]:
    """artifact-ingest and git-writer, in-process, writing to ``remote``."""
    ingest = build_ingest(IngestSettings(**ns.settings()))
    writer = build_git_writer(
        GitWriterSettings(**ns.settings(), data_dir=data_dir, config_repo_url=str(remote))
    )
    async with running(ingest), running(writer):
        yield


async def test_published_artifact_is_validated_and_committed_to_the_config_repo(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    artifact, manifests = example_artifact()
    event = published(artifact, manifests)
    async with skeleton(broker_ns, bare_remote, tmp_path / "data"):
        stored = await push_and_wait(broker_ns, event_tap, event)
    artifact_id = artifact["id"]
    assert stored.type == "ferry.artifact.stored.v1"
    [accepted] = event_tap.of_type("ferry.artifact.accepted.v1")
    assert accepted.causationid == event.id
    assert stored.causationid == accepted.id
    assert stored.correlationid == accepted.correlationid == event.correlationid
    head = git("--git-dir", str(bare_remote), "rev-parse", "main").strip()
    assert stored.data["commitSha"] == head
    assert stored.data["path"] == f"builds/payments/{artifact_id}"
    assert stored.data["environments"] == ["dev", "prod", "staging"]
    assert log_subjects(bare_remote) == [f"[builds/payments] store {artifact_id}"]
    trailers = git("--git-dir", str(bare_remote), "log", "-1", "--format=%(trailers)", "main")
    assert trailers.strip().splitlines() == [
        f"Ferry-Event-Id: {derived_id(event.id, 'ferry.artifact.accepted.v1')}",
        f"Ferry-Artifact-Id: {artifact_id}",
        "Ferry-Service: payments",
        "Ferry-Actor: jane@example.com",
    ]
    assert json.loads(show(bare_remote, f"builds/payments/{artifact_id}/artifact.json")) == artifact
    files = git("--git-dir", str(bare_remote), "ls-tree", "-r", "--name-only", "main").split()
    assert files == [f"builds/payments/{artifact_id}/artifact.json"] + [
        f"builds/payments/{artifact_id}/{env}/{name}"
        for env in sorted(manifests)
        for name in sorted(manifests[env])
    ]
    assert (
        show(bare_remote, f"builds/payments/{artifact_id}/dev/deployment.yaml")
        == (manifests["dev"]["deployment.yaml"])
    )


async def test_artifact_with_failed_tests_is_rejected_and_never_committed(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    artifact, manifests = example_artifact()
    test_stage = next(s for s in artifact["stages"] if s["id"] == "test")
    test_stage["data"]["results"]["failed"] = 3
    event = published(artifact, manifests)
    async with skeleton(broker_ns, bare_remote, tmp_path / "data"):
        rejected = await push_and_wait(broker_ns, event_tap, event)
    assert rejected.type == "ferry.artifact.rejected.v1"
    assert rejected.data["artifactId"] == artifact["id"]
    assert [r["code"] for r in rejected.data["reasons"]] == ["tests-failed"]
    assert event_tap.of_type("ferry.artifact.stored.v1") == []
    assert git("--git-dir", str(bare_remote), "for-each-ref").strip() == ""  # no commit at all
