"""git-writer's batch handler on the in-memory runtime: real git and real bare remotes, no
broker. What the broker adds (batching under load, replicas, crashes before the ack) stays in
``test_gitwriter_service.py``."""

from __future__ import annotations

import json
from pathlib import Path

from ferry_events import (
    Actor,
    ArtifactAccepted,
    ArtifactSpec,
    CloudEvent,
    Intent,
    ReleaseApproved,
)
from ferry_gitwriter.bootstrap import build
from ferry_gitwriter.settings import GitWriterSettings
from ferry_testing import git, in_memory, trailer_values

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
ARTIFACT_ID = "master-0017d995e3-67e9d69164"
STORED = "ferry.artifact.stored.v1"


def _accepted(artifact_id: str = ARTIFACT_ID, **manifests: dict[str, str]) -> CloudEvent:
    raw = json.loads((EXAMPLES / "artifact.json").read_text())
    raw["id"] = artifact_id
    every = {
        env.name: {f.name: f.read_text() for f in sorted(env.iterdir())}
        for env in sorted((EXAMPLES / "manifests").iterdir())
    }
    data = ArtifactAccepted(artifact=ArtifactSpec.model_validate(raw), manifests=manifests or every)
    return CloudEvent.new(data, source="ferry/artifact-ingest")


def _settings(remote: Path, data_dir: Path) -> GitWriterSettings:
    return GitWriterSettings(config_repo_url=str(remote), data_dir=data_dir)


def _head(remote: Path) -> str:
    return git("--git-dir", str(remote), "rev-parse", "main").strip()


async def test_an_accepted_artifact_is_committed_and_announced(
    bare_remote: Path, tmp_path: Path
) -> None:
    event = _accepted()
    async with in_memory(build(_settings(bare_remote, tmp_path / "data"))) as broker:
        broker.tap(STORED)
        broker.route(event)
        await broker.drain()
    [stored] = broker.events(STORED)
    assert stored.causationid == event.id
    assert stored.data["commitSha"] == _head(bare_remote)
    assert stored.data["environments"] == ["dev", "prod", "staging"]
    assert trailer_values(bare_remote, "Ferry-Event-Id") == [event.id]


async def test_a_duplicate_gets_the_same_answer_and_no_second_commit(
    bare_remote: Path, tmp_path: Path
) -> None:
    event = _accepted()
    async with in_memory(build(_settings(bare_remote, tmp_path / "data"))) as broker:
        broker.tap()
        broker.route(event)
        await broker.drain()
        broker.route(event)  # a redelivery, as after a lost ack
        await broker.drain()
    first, second = broker.events(STORED)
    assert first.id == second.id
    assert first.data["commitSha"] == second.data["commitSha"] == _head(bare_remote)
    assert trailer_values(bare_remote, "Ferry-Event-Id") == [event.id]


async def test_a_conflicting_build_is_dead_lettered_and_the_rest_of_its_batch_is_stored(
    bare_remote: Path, tmp_path: Path
) -> None:
    original = _accepted()
    conflicting = _accepted(prod={"deployment.yaml": "kind: Something\n"})
    other = _accepted("master-1111111111-2222222222")
    async with in_memory(build(_settings(bare_remote, tmp_path / "data"))) as broker:
        broker.tap()
        for event in (original, conflicting, other):
            broker.route(event)
        await broker.drain()
        [dead] = broker.dead_letters("git-writer")
    assert dead.code == "artifact-conflict"
    assert "builds are immutable" in dead.reason
    assert json.loads(dead.body)["id"] == conflicting.id
    assert len(broker.events(STORED)) == 2
    assert sorted(trailer_values(bare_remote, "Ferry-Event-Id")) == sorted([original.id, other.id])


async def test_a_release_of_an_unknown_build_fails_as_its_own_event(
    bare_remote: Path, tmp_path: Path
) -> None:
    approved = CloudEvent.new(
        ReleaseApproved(
            release_id="rel-1",
            service="payments",
            environment="prod",
            namespace="payments",
            artifact_id="master-9999999999-9999999999",
            intent=Intent.PROMOTE,
            actor=Actor(subject="bob", email="bob@example.com"),
            promoted_from="staging",
        ),
        source="ferry/promotion",
    )
    async with in_memory(build(_settings(bare_remote, tmp_path / "data"))) as broker:
        broker.tap()
        broker.route(_accepted())
        broker.route(approved)
        await broker.drain()
    [failed] = broker.events("ferry.release.failed.v1")
    assert failed.causationid == approved.id
    assert failed.data["releaseId"] == "rel-1"
    assert not broker.dead_letters("git-writer")
