"""git-writer against the real broker and real bare remotes: every change end to end,
idempotency, batching, concurrent pushes, a remote that is down, and a crash before the ack."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import yaml
from prometheus_client import REGISTRY

from ferry_events import (
    Actor,
    ArtifactAccepted,
    ArtifactSpec,
    CloudEvent,
    Intent,
    PolicyChangeRequested,
    ReleaseApproved,
    encode,
)
from ferry_gitwriter.bootstrap import build
from ferry_gitwriter.settings import GitWriterSettings
from ferry_runtime import CODE_HEADER, REASON_HEADER, ServiceQueues
from ferry_testing import (
    BrokerNamespace,
    EventTap,
    ServiceProcess,
    clone,
    git,
    log_subjects,
    running,
    show,
    trailer_values,
)

pytestmark = pytest.mark.amqp

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
ARTIFACT_ID = "master-0017d995e3-67e9d69164"
STORED = "ferry.artifact.stored.v1"


def _spec(artifact_id: str = ARTIFACT_ID) -> ArtifactSpec:
    raw = json.loads((EXAMPLES / "artifact.json").read_text())
    raw["id"] = artifact_id
    return ArtifactSpec.model_validate(raw)


def _manifests() -> dict[str, dict[str, str]]:
    return {
        env.name: {f.name: f.read_text() for f in sorted(env.iterdir())}
        for env in sorted((EXAMPLES / "manifests").iterdir())
    }


def accepted(artifact_id: str = ARTIFACT_ID, **manifests: dict[str, str]) -> CloudEvent:
    data = ArtifactAccepted(artifact=_spec(artifact_id), manifests=manifests or _manifests())
    return CloudEvent.new(data, source="ferry/artifact-ingest")


def approved(
    artifact_id: str = ARTIFACT_ID,
    release_id: str = "rel-1",
    namespace: str = "payments",
    sequence: int | None = None,
) -> CloudEvent:
    data = ReleaseApproved(
        sequence=sequence,
        release_id=release_id,
        service="payments",
        environment="prod",
        namespace=namespace,
        artifact_id=artifact_id,
        intent=Intent.PROMOTE,
        actor=Actor(subject="bob", email="bob@example.com", name="Bob Builder"),
        promoted_from="staging",
        author_email="jane@example.com",
    )
    return CloudEvent.new(data, source="ferry/promotion")


def settings(ns: BrokerNamespace, remote: Path | None, data_dir: Path) -> GitWriterSettings:
    extra: dict[str, Any] = {"config_repo_url": str(remote)} if remote else {}
    return GitWriterSettings(**ns.settings(), data_dir=data_dir, **extra)


def process_env(config: GitWriterSettings) -> dict[str, str]:
    """The environment that gives ``python -m ferry_gitwriter`` these settings.

    The queues' arguments (retry delays) must match those of in-process replicas.
    """
    return {
        "FERRY_AMQP_URL": config.amqp_url,
        "FERRY_EXCHANGE": config.exchange,
        "FERRY_QUEUE_PREFIX": config.queue_prefix,
        "FERRY_RETRY_DELAYS": json.dumps(list(config.retry_delays)),
        "FERRY_MAX_ATTEMPTS": str(config.max_attempts),
        "FERRY_CONFIG_REPO_URL": config.config_repo_url,
        "FERRY_DATA_DIR": str(config.data_dir),
        "FERRY_HTTP_PORT": "0",
        "FERRY_LOG_FORMAT": "json",
        "FERRY_GIT_AUTHOR_NAME": config.git_author_name,
        "FERRY_GIT_MAX_BATCH": str(config.git_max_batch),
    }


def hook(remote: Path, name: str, script: str) -> None:
    path = remote / "hooks" / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def count_pushes(remote: Path, counter: Path) -> None:
    hook(remote, "post-receive", f'echo pushed >> "{counter}"')


def pushes(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def head(remote: Path) -> str:
    return git("--git-dir", str(remote), "rev-parse", "main").strip()


async def publish_all(ns: BrokerNamespace, events: list[CloudEvent]) -> None:
    """Publish ``events`` in order on one confirming channel (``ns.publish`` connects each time)."""
    connection = await aio_pika.connect(ns.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.declare_exchange(
            ns.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        for event in events:
            message = aio_pika.Message(
                encode(event),
                content_type="application/cloudevents+json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            await exchange.publish(message, routing_key=event.type)


# --------------------------------------------------------------------------- the three changes


async def test_artifact_is_stored_in_an_empty_remote(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    event = accepted()
    async with running(build(settings(broker_ns, bare_remote, tmp_path / "data"))):
        await broker_ns.publish(event)
        stored = await event_tap.wait_one(STORED)
    assert stored.causationid == event.id
    assert stored.data["commitSha"] == head(bare_remote)
    assert stored.data["path"] == f"builds/payments/{ARTIFACT_ID}"
    assert stored.data["environments"] == ["dev", "prod", "staging"]
    assert log_subjects(bare_remote) == [f"[builds/payments] store {ARTIFACT_ID}"]
    assert trailer_values(bare_remote, "Ferry-Event-Id") == [event.id]
    assert trailer_values(bare_remote, "Ferry-Artifact-Id") == [ARTIFACT_ID]
    spec = json.loads(show(bare_remote, f"builds/payments/{ARTIFACT_ID}/artifact.json"))
    assert spec == json.loads((EXAMPLES / "artifact.json").read_text())
    manifest = show(bare_remote, f"builds/payments/{ARTIFACT_ID}/prod/deployment.yaml")
    assert manifest == (EXAMPLES / "manifests/prod/deployment.yaml").read_text()
    author = git("--git-dir", str(bare_remote), "log", "-1", "--format=%an <%ae>|%cn", "main")
    assert author.strip() == "Jane Doe <jane@example.com>|Ferry"


async def test_default_remote_is_created_under_the_data_dir(
    broker_ns: BrokerNamespace, event_tap: EventTap, tmp_path: Path
) -> None:
    async with running(build(settings(broker_ns, None, tmp_path / "data"))):
        await broker_ns.publish(accepted())
        stored = await event_tap.wait_one(STORED)
    remote = tmp_path / "data" / "config.git"
    assert stored.data["commitSha"] == head(remote)
    assert (tmp_path / "data" / "git-writer" / "config.git" / "HEAD").exists()


async def test_release_replaces_the_environment_folder_with_stamped_workloads(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    release = approved()
    async with running(build(settings(broker_ns, bare_remote, tmp_path / "data"))):
        await publish_all(broker_ns, [accepted(), release])
        committed = await event_tap.wait_one("ferry.release.committed.v1")
        # the same release approved again (a new event): the folder already holds it
        repeat = await broker_ns.publish(approved())
        again = await event_tap.wait_one(
            "ferry.release.committed.v1", lambda e: e.causationid == repeat.id
        )
        # a release of a build that does not exist fails with a reason
        await broker_ns.publish(approved(artifact_id="master-missing", release_id="rel-3"))
        failed = await event_tap.wait_one("ferry.release.failed.v1")
    folder = "environments/prod/payments/payments"
    assert committed.data["commitSha"] == head(bare_remote)
    assert committed.data.get("noChange", False) is False
    assert committed.data["namespace"] == "payments"
    assert again.data["noChange"] is True
    assert again.data["commitSha"] == committed.data["commitSha"]
    assert failed.data["reason"] == "unknown-artifact"
    assert "master-missing" in failed.data["message"]
    assert log_subjects(bare_remote) == [
        f"[prod/payments] promote {ARTIFACT_ID} by bob@example.com",
        f"[builds/payments] store {ARTIFACT_ID}",
    ]
    trailers = git("--git-dir", str(bare_remote), "log", "-1", "--format=%(trailers)", "main")
    assert trailers.strip().splitlines() == [
        f"Ferry-Event-Id: {release.id}",
        "Ferry-Release-Id: rel-1",
        f"Ferry-Artifact-Id: {ARTIFACT_ID}",
        "Ferry-Service: payments",
        "Ferry-Environment: prod",
        "Ferry-Intent: promote",
        "Ferry-Actor: bob@example.com",
        "Ferry-Promoted-From: staging",
    ]
    author = git("--git-dir", str(bare_remote), "log", "-1", "--format=%an <%ae>", "main")
    assert author.strip() == "Bob Builder <bob@example.com>"
    files = git("--git-dir", str(bare_remote), "ls-tree", "-r", "--name-only", "main", folder)
    assert files.split() == [
        f"{folder}/{n}" for n in ("artifact.json", "deployment.yaml", "service.yaml")
    ]
    deployment = yaml.safe_load(show(bare_remote, f"{folder}/deployment.yaml"))
    expected = {
        "ferry.dev/service": "payments",
        "ferry.dev/environment": "prod",
        "ferry.dev/artifact-id": ARTIFACT_ID,
        "ferry.dev/release-id": "rel-1",
        "ferry.dev/author": "jane@example.com",
    }
    assert deployment["metadata"]["annotations"] == expected
    assert deployment["spec"]["template"]["metadata"]["annotations"] == expected
    service = show(bare_remote, f"{folder}/service.yaml")
    assert service == (EXAMPLES / "manifests/prod/service.yaml").read_text()


async def test_a_delayed_retry_of_an_older_release_fails_naming_the_newer_and_changes_nothing(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    older_artifact, newer_artifact = ARTIFACT_ID, "master-1117d995e3-67e9d69164"
    async with running(build(settings(broker_ns, bare_remote, tmp_path / "data"))):
        await publish_all(broker_ns, [accepted(older_artifact), accepted(newer_artifact)])
        await event_tap.wait_for(STORED, count=2)
        await broker_ns.publish(approved(newer_artifact, release_id="rel-2", sequence=2))
        committed = await event_tap.wait_one("ferry.release.committed.v1")
        tip = head(bare_remote)
        # the approval of #1, retried late, arrives after #2 is committed
        late = await broker_ns.publish(approved(older_artifact, release_id="rel-1", sequence=1))
        failed = await event_tap.wait_one(
            "ferry.release.failed.v1", lambda e: e.causationid == late.id
        )
        assert head(bare_remote) == tip  # nothing committed
        # a rollback to the older artifact is a new request, numbered higher: it is committed
        await broker_ns.publish(approved(older_artifact, release_id="rel-3", sequence=3))
        rolled_back = await event_tap.wait_one(
            "ferry.release.committed.v1", lambda e: e.data["releaseId"] == "rel-3"
        )
    assert committed.data["releaseId"] == "rel-2"
    assert failed.data["reason"] == "superseded"
    assert "rel-2" in failed.data["message"]
    assert "#2" in failed.data["message"]
    assert rolled_back.data["commitSha"] == head(bare_remote)
    folder = "environments/prod/payments/payments"
    deployment = yaml.safe_load(show(bare_remote, f"{folder}/deployment.yaml"))
    assert deployment["metadata"]["annotations"]["ferry.dev/release-id"] == "rel-3"
    sequences = git(
        "--git-dir",
        str(bare_remote),
        "log",
        "--format=%(trailers:key=Ferry-Sequence,valueonly)",
        "main",
        "--",
        folder,
    )
    assert sequences.split() == ["3", "2"]


def name_status(remote: Path, revision: str) -> list[str]:
    """``<status> <path>`` for each file ``revision`` changed."""
    out = git(
        "--git-dir", str(remote), "show", "--format=", "--no-renames", "--name-status", revision
    )
    return [" ".join(line.split()) for line in out.splitlines() if line.strip()]


async def test_release_to_another_namespace_removes_the_old_folder_in_the_same_commit(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    config = settings(broker_ns, bare_remote, tmp_path / "data")
    async with running(build(config)):
        await publish_all(broker_ns, [accepted(), approved(release_id="r1", namespace="legacy")])
        await event_tap.wait_one("ferry.release.committed.v1")
    # queued while git-writer is down, so that they are written in one cycle: the second
    # sees the first's move only in the batch's own, not yet pushed, changes
    await publish_all(
        broker_ns,
        [
            approved(release_id="r2", namespace="payments"),
            approved(release_id="r3", namespace="blue"),
        ],
    )
    async with running(build(config)):
        results = await event_tap.wait_for("ferry.release.committed.v1", count=3)
    assert [e.data["namespace"] for e in results] == ["legacy", "payments", "blue"]
    tree = git(
        "--git-dir", str(bare_remote), "ls-tree", "-r", "--name-only", "main", "environments"
    )
    assert sorted({path.rsplit("/", 1)[0] for path in tree.split()}) == [
        "environments/prod/blue/payments"
    ]
    files = ("artifact.json", "deployment.yaml", "service.yaml")
    to_payments, to_blue = (results[1].data["commitSha"], results[2].data["commitSha"])
    assert name_status(bare_remote, to_payments) == [
        *(f"D environments/prod/legacy/payments/{f}" for f in files),
        *(f"A environments/prod/payments/payments/{f}" for f in files),
    ]
    assert name_status(bare_remote, to_blue) == [
        *(f"A environments/prod/blue/payments/{f}" for f in files),
        *(f"D environments/prod/payments/payments/{f}" for f in files),
    ]
    message = git("--git-dir", str(bare_remote), "log", "-1", "--format=%B", to_blue)
    assert (
        "Moves payments in prod to namespace blue from payments: "
        "removes environments/prod/payments/payments/"
    ) in message
    assert trailer_values(bare_remote, "Ferry-Release-Id")[:3] == ["r3", "r2", "r1"]


async def test_policy_is_applied_then_deleted(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    actor = Actor(subject="ops", email="ops@example.com")
    policy = {"autoRelease": [{"branch": "master", "environment": "dev"}], "chain": ["dev"]}
    apply = PolicyChangeRequested(request_id="p1", service="payments", policy=policy, actor=actor)
    delete = PolicyChangeRequested(request_id="p2", service="payments", policy=None, actor=actor)
    async with running(build(settings(broker_ns, bare_remote, tmp_path / "data"))):
        await broker_ns.publish(apply)
        applied = await event_tap.wait_one("ferry.policy.changed.v1")
        content = show(bare_remote, "policies/payments.yaml")
        await broker_ns.publish(delete)
        deleted = await event_tap.wait_one(
            "ferry.policy.changed.v1", lambda e: e.data["requestId"] == "p2"
        )
    assert list(yaml.safe_load(content)) == ["autoRelease", "chain"]
    assert applied.data["commitSha"] != deleted.data["commitSha"] == head(bare_remote)
    assert deleted.data["deleted"] is True
    assert log_subjects(bare_remote) == [
        "[policies/payments] delete by ops@example.com",
        "[policies/payments] apply by ops@example.com",
    ]
    tree = git("--git-dir", str(bare_remote), "ls-tree", "-r", "--name-only", "main")
    assert "policies/payments.yaml" not in tree


# --------------------------------------------------------------------------- reliability


async def test_duplicate_event_makes_one_commit_and_the_same_answer_twice(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    event = accepted()
    async with running(build(settings(broker_ns, bare_remote, tmp_path / "data"))):
        await broker_ns.publish(event)
        await event_tap.wait_one(STORED)
        await broker_ns.publish(event)  # a redelivery, as after a lost ack
        first, second = await event_tap.wait_for(STORED, count=2)
    assert first.id == second.id  # derived from the cause: consumers drop the duplicate
    assert first.data["commitSha"] == second.data["commitSha"] == head(bare_remote)
    assert trailer_values(bare_remote, "Ferry-Event-Id") == [event.id]


async def test_conflicting_build_is_dead_lettered_and_the_rest_of_the_batch_is_stored(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    original = accepted()
    conflicting = accepted(prod={"deployment.yaml": "kind: Something\n"})
    other = accepted("master-1111111111-2222222222")
    async with running(build(settings(broker_ns, bare_remote, tmp_path / "data"))):
        await publish_all(broker_ns, [original, conflicting, other])
        await event_tap.wait_for(STORED, count=2)
        [dead] = await broker_ns.dead_letters("git-writer")
    headers = dead.headers or {}
    assert headers[CODE_HEADER] == "artifact-conflict"
    assert "builds are immutable" in str(headers[REASON_HEADER])
    assert json.loads(dead.body)["id"] == conflicting.id
    assert sorted(trailer_values(bare_remote, "Ferry-Event-Id")) == sorted([original.id, other.id])


async def test_concurrent_push_is_fetched_and_reapplied_into_a_linear_history(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    other: list[Path] = []
    raced: list[str] = []

    def someone_pushes_first() -> None:  # runs after git-writer's fetch, before its push
        if other and not raced:
            raced.append(commit_and_push(other[0], "policies/manual.yaml", "by hand\n"))

    config = settings(broker_ns, bare_remote, tmp_path / "data")
    async with running(build(config, before_push=someone_pushes_first)):
        await broker_ns.publish(accepted())
        await event_tap.wait_one(STORED)
        other.append(clone(bare_remote, tmp_path / "someone-else"))
        second = await broker_ns.publish(accepted("master-1111111111-2222222222"))
        stored = await event_tap.wait_one(STORED, lambda e: e.causationid == second.id)
    assert log_subjects(bare_remote) == [
        "[builds/payments] store master-1111111111-2222222222",
        "someone else's change",
        f"[builds/payments] store {ARTIFACT_ID}",
    ]
    parents = git("--git-dir", str(bare_remote), "log", "--format=%P", "main").split("\n")
    assert all(len(p.split()) <= 1 for p in parents)  # linear: no merges, nothing forced
    assert git("--git-dir", str(bare_remote), "rev-parse", "main~1").strip() == raced[0]
    assert show(bare_remote, "policies/manual.yaml") == "by hand\n"
    assert stored.data["commitSha"] == head(bare_remote)


def commit_and_push(repo: Path, path: str, content: str) -> str:
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    (repo / path).write_text(content)
    git("add", path, cwd=repo)
    git("commit", "--quiet", "-m", "someone else's change", cwd=repo)
    git("push", "--quiet", "origin", "main", cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo).strip()


async def test_unreachable_remote_dead_letters_bad_events_at_once_and_retries_the_rest(
    broker_ns: BrokerNamespace, tmp_path: Path
) -> None:
    config = settings(broker_ns, tmp_path / "nowhere.git", tmp_path / "data")
    async with running(build(config)):
        pass  # declares the queue
    good = accepted()
    bad = [
        accepted("master-1111111111-2222222222", prod={"../../escape.yaml": "kind: X\n"}),
        approved(namespace="../kube-system"),
        CloudEvent.new(
            PolicyChangeRequested(
                request_id="p1", service="../etc", policy={}, actor=Actor(subject="ops")
            ),
            source="ferry/promotion",
        ),
    ]
    await publish_all(broker_ns, [bad[0], good, *bad[1:]])  # one batch, the good one inside
    async with running(build(config)):
        refused = await broker_ns.dead_letters("git-writer", count=3)
        [exhausted] = await broker_ns.dead_letters("git-writer", timeout=20)
    # judged before the remote was touched: dead-lettered on the first attempt, never retried
    assert sorted(json.loads(m.body)["id"] for m in refused) == sorted(e.id for e in bad)
    for message in refused:
        headers = message.headers or {}
        assert headers[CODE_HEADER] == "unsafe-path"
        assert headers["x-ferry-attempts"] == 1
        assert "x-ferry-last-error" not in headers
        assert "is not" in str(headers[REASON_HEADER])
    # the good one needs the remote: retried, then dead-lettered with the git error
    headers = exhausted.headers or {}
    assert json.loads(exhausted.body)["id"] == good.id
    assert headers[CODE_HEADER] == "retries-exhausted"
    assert headers["x-ferry-attempts"] == 4
    reason = str(headers[REASON_HEADER])
    assert "(config-repo-unavailable)" in reason
    assert "cannot fetch the config repo" in reason


async def test_failed_push_writes_nothing_and_the_next_cycle_starts_from_the_remote(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    hook(bare_remote, "pre-receive", 'echo "remote is down for maintenance" >&2; exit 1')
    first = accepted()
    async with running(build(settings(broker_ns, bare_remote, tmp_path / "data"))):
        await broker_ns.publish(first)
        [dead] = await broker_ns.dead_letters("git-writer", timeout=20)
        assert git("--git-dir", str(bare_remote), "for-each-ref").strip() == ""  # nothing pushed
        (bare_remote / "hooks" / "pre-receive").unlink()
        second = accepted("master-1111111111-2222222222")
        await broker_ns.publish(second)
        stored = await event_tap.wait_one(STORED)
    reason = str((dead.headers or {})[REASON_HEADER])
    assert "cannot push to the config repo" in reason
    assert "remote is down for maintenance" in reason
    assert trailer_values(bare_remote, "Ferry-Event-Id") == [second.id]  # the first left no trace
    assert stored.data["commitSha"] == head(bare_remote)


async def test_a_burst_is_written_with_one_push_per_batch(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    counter = tmp_path / "pushes"
    count_pushes(bare_remote, counter)
    config = settings(broker_ns, bare_remote, tmp_path / "data")
    async with running(build(config)):
        pass  # declares the queue
    burst = [accepted(f"master-{i:010d}-burst") for i in range(30)]
    await publish_all(broker_ns, burst)  # queued while git-writer is down
    cycles_before = REGISTRY.get_sample_value("ferry_gitwriter_batch_size_count") or 0
    async with running(build(config)):
        await event_tap.wait_for(STORED, count=30, timeout=30)
    cycles = (REGISTRY.get_sample_value("ferry_gitwriter_batch_size_count") or 0) - cycles_before
    assert len(log_subjects(bare_remote)) == 30
    assert pushes(counter) == cycles  # one push per batch
    assert cycles <= 2  # the first message may be taken alone; the rest come together


async def test_killed_before_its_ack_the_redelivered_event_makes_no_second_commit(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    # The first push reaches the remote, then its post-receive hook holds the pusher
    # until the test has killed git-writer: the commit is made but never acked.
    pushed, release = tmp_path / "pushed", tmp_path / "release"
    hook(
        bare_remote,
        "post-receive",
        f'if [ ! -e "{pushed}" ]; then touch "{pushed}"; i=0; '
        f'while [ ! -e "{release}" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; fi',
    )
    config = settings(broker_ns, bare_remote, tmp_path / "data")
    first = ServiceProcess("ferry_gitwriter", process_env(config), tmp_path / "first.log").start()
    try:
        await wait_for_queue(broker_ns, "git-writer")
        event = await broker_ns.publish(accepted())
        await wait_until(pushed.exists, first.logs)
        first.kill()
    finally:
        release.touch()
        first.kill()
    assert event_tap.of_type(STORED) == []  # it died before answering (and before acking)
    async with running(build(config)):  # restarted on the same data dir (in-process: faster)
        stored = await event_tap.wait_one(STORED, timeout=30)
    assert trailer_values(bare_remote, "Ferry-Event-Id") == [event.id]
    assert stored.data["commitSha"] == head(bare_remote)


async def wait_for_queue(ns: BrokerNamespace, service: str, timeout: float = 30) -> int:
    """Wait until ``service``'s queue exists and has a consumer; returns the consumer count.

    (On a single-active-consumer queue the broker counts only the active consumer.)
    """
    name = ServiceQueues(service, ns.queue_prefix, (), ()).main
    connection = await aio_pika.connect(ns.amqp_url)
    async with connection, asyncio.timeout(timeout):
        while True:
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
                count = queue.declaration_result.consumer_count
                if count:
                    return count
                await channel.close()
            except aio_pika.exceptions.ChannelClosed:
                pass
            await asyncio.sleep(0.1)


async def wait_until(
    condition: Callable[[], bool], logs: Callable[[], str], timeout: float = 30
) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"condition not met in {timeout}s; service logs:\n{logs()}")


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_hot_standby_takes_over_when_the_active_replica_is_killed_mid_burst(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    # The active replica's third push reaches the remote, then the post-receive hook holds
    # it until the test has killed the replica: killed mid-burst, that batch pushed but
    # neither answered nor acked.
    count, halfway, release = tmp_path / "pushes", tmp_path / "halfway", tmp_path / "release"
    hook(
        bare_remote,
        "post-receive",
        f'echo pushed >> "{count}"; '
        f'if [ "$(wc -l < "{count}")" -eq 3 ]; then touch "{halfway}"; i=0; '
        f'while [ ! -e "{release}" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; fi',
    )
    replica = {"git_max_batch": 4}
    active_settings = settings(broker_ns, bare_remote, tmp_path / "active").model_copy(
        update={**replica, "git_author_name": "replica-a"}
    )
    standby_settings = settings(broker_ns, bare_remote, tmp_path / "standby").model_copy(
        update={**replica, "git_author_name": "replica-b"}
    )
    env = process_env(active_settings)
    burst = [accepted(f"master-{i:010d}-standby") for i in range(24)]
    ids = {event.id for event in burst}

    def answered() -> set[str]:
        return {str(e.causationid) for e in event_tap.of_type(STORED)}

    active = ServiceProcess("ferry_gitwriter", env, tmp_path / "active.log").start()
    try:
        await wait_for_queue(broker_ns, "git-writer")
        async with running(build(standby_settings)):
            # both are subscribed (running() returns once the standby's basic.consume is ok);
            # the queue is single-active-consumer, so the broker counts only the active one
            assert await wait_for_queue(broker_ns, "git-writer") == 1
            batches, duplicates = (
                metric("ferry_gitwriter_batch_size_count"),
                metric("ferry_gitwriter_duplicates_total"),
            )
            await publish_all(broker_ns, burst)
            await wait_until(halfway.exists, active.logs)
            assert metric("ferry_gitwriter_batch_size_count") == batches  # the standby idled
            # killed with a batch pushed but not answered (nor acked)
            assert 0 < len(answered()) < len(trailer_values(bare_remote, "Ferry-Event-Id"))
            active.kill()
            release.touch()
            await wait_until(lambda: answered() == ids, active.logs)
            # the batch pushed before the kill came back and was answered from the trailers
            assert metric("ferry_gitwriter_duplicates_total") > duplicates
    finally:
        release.touch()
        active.kill()
    log = git("--git-dir", str(bare_remote), "log", "--reverse", "--format=%cn %H", "main")
    committers = [line.split()[0] for line in log.splitlines()]
    by_a = committers.count("replica-a")
    assert committers == ["replica-a"] * by_a + ["replica-b"] * (len(burst) - by_a)
    assert 3 <= by_a < len(burst)  # at least its three pushes' worth before it was killed
    events = git(
        "--git-dir",
        str(bare_remote),
        "log",
        "--format=%H %(trailers:key=Ferry-Event-Id,valueonly)",
        "main",
    )
    commit_of = {
        event_id: sha
        for sha, event_id in (line.split() for line in events.splitlines() if line.strip())
    }
    assert sorted(trailer_values(bare_remote, "Ferry-Event-Id")) == sorted(ids)  # once each
    for result in event_tap.of_type(STORED):
        assert result.data["commitSha"] == commit_of[str(result.causationid)]


def _deep_deployment(depth: int) -> str:
    nested = "leaf"
    for _ in range(depth):
        nested = f"{{a: {nested}}}"
    return (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: payments\nspec:\n"
        f"  template:\n    spec:\n      deep: {nested}\n"
    )


async def test_a_600_deep_manifest_fails_only_its_own_release_in_a_burst(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    ids = [f"master-{i:010d}-deep" for i in range(4)]
    poisoned = "master-9999999999-deep"
    artifacts = [accepted(artifact_id) for artifact_id in ids]
    artifacts.append(accepted(poisoned, prod={"deployment.yaml": _deep_deployment(600)}))
    releases = [approved(a, release_id=f"rel-{n}") for n, a in enumerate([*ids, poisoned])]
    config = settings(broker_ns, bare_remote, tmp_path / "data")
    async with running(build(config)):
        pass  # declares the queue
    await publish_all(broker_ns, artifacts + releases)  # one burst, batched together
    async with running(build(config)):
        stored = await event_tap.wait_for(STORED, count=5, timeout=30)
        failed = await event_tap.wait_one("ferry.release.failed.v1", timeout=30)
        committed = await event_tap.wait_for("ferry.release.committed.v1", count=4, timeout=30)
    assert sorted(e.data["artifact"]["id"] for e in stored) == sorted([*ids, poisoned])
    assert failed.data["artifactId"] == poisoned
    assert failed.data["reason"] == "invalid-manifest"
    assert "nested more than 64 levels deep" in failed.data["message"]
    assert sorted(e.data["artifactId"] for e in committed) == sorted(ids)
    assert await broker_ns.dead_letters("git-writer", timeout=1) == []
