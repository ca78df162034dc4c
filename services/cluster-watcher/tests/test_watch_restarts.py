"""What a restart or a second watcher must not change: each fact once, a later crash of a
finished rollout reported as ``ferry.workload.degraded.v1``, never as a failed rollout. The
real kubernetes_asyncio client against the API test server, on the real broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ferry_events import CloudEvent
from ferry_kube_sim import KubeApiServer
from ferry_kube_sim import objects as k
from ferry_testing import EventTap

pytestmark = pytest.mark.amqp

STARTED = "ferry.rollout.started.v1"
SUCCEEDED = "ferry.rollout.succeeded.v1"
FAILED = "ferry.rollout.failed.v1"
DEGRADED = "ferry.workload.degraded.v1"
ROLLOUT = (STARTED, SUCCEEDED, FAILED)

#: When the rollout of a "long-succeeded" Deployment finished, by its status.
LONG_AGO = datetime.now(UTC) - timedelta(days=3)


def of(name: str, events: list[CloudEvent]) -> list[CloudEvent]:
    return [e for e in events if e.data["workload"]["name"] == name]


async def settle(kube: KubeApiServer, tap: EventTap, name: str) -> None:
    """A sentinel: once its failure is reported, everything seen before has been too."""
    dep = kube.create(k.deployment(name))
    kube.create(
        k.pod_for(dep, f"{name}-1", containers=[k.container_status(name, waiting="ErrImagePull")])
    )
    await tap.wait_one(FAILED, lambda e: e.data["workload"]["name"] == name)


def crash(kube: KubeApiServer, dep: dict, pod: str) -> None:
    """The pods of ``dep``'s finished rollout crash: a crash-looping pod, the Deployment's
    status as its controller writes it then (still complete, no longer available)."""
    kube.create(
        k.pod_for(
            dep,
            pod,
            owner_uid="rs-uid-1",
            containers=[
                k.container_status(
                    "payments", waiting="CrashLoopBackOff", last_terminated="Error", restarts=4
                )
            ],
        )
    )
    kube.update_status(
        "Deployment",
        dep["metadata"]["namespace"],
        dep["metadata"]["name"],
        k.degraded_status(dep, ready=0, finished_at=LONG_AGO),
    )


async def test_a_restart_after_success_then_a_crash_is_one_degraded_and_no_rollout_result(
    kube: KubeApiServer, watcher, event_tap: EventTap
) -> None:
    async with watcher():
        dep = kube.create(k.deployment("payments", release_id="rel-1", replicas=2))
        kube.update_status("Deployment", "default", "payments", k.complete_status(dep, at=LONG_AGO))
        await event_tap.wait_one(SUCCEEDED)
    before = len(event_tap.events)
    async with watcher():
        crash(kube, dep, "payments-abc")
        degraded = await event_tap.wait_one(DEGRADED)
        # the crash loop goes on; the watcher restarts again while it does
    async with watcher():
        await settle(kube, event_tap, "sentinel")
    after = of("payments", event_tap.events[before:])
    assert [e.type for e in after] == [DEGRADED, DEGRADED]  # the second start: the same fact
    assert len({e.id for e in after}) == 1
    assert [e.type for e in of("payments", event_tap.events)].count(SUCCEEDED) == 1
    data = degraded.data
    assert data["reason"] == "CrashLoopBackOff"
    assert data["releaseId"] == "rel-1"
    assert "pod payments-abc: container payments keeps crashing" in data["message"]
    assert degraded.correlationid == "rel-1"


async def test_a_crash_of_a_finished_rollout_seen_live_is_degraded_not_failed(
    kube: KubeApiServer, watcher, event_tap: EventTap
) -> None:
    async with watcher():
        dep = kube.create(k.deployment("payments", release_id="rel-1"))
        kube.update_status("Deployment", "default", "payments", k.complete_status(dep))
        await event_tap.wait_one(SUCCEEDED)
        crash(kube, dep, "payments-abc")
        await event_tap.wait_one(DEGRADED)
        await settle(kube, event_tap, "sentinel")
    assert [e.type for e in of("payments", event_tap.events)] == [STARTED, SUCCEEDED, DEGRADED]


async def test_a_rollout_in_progress_at_the_restart_still_gets_its_one_result(
    kube: KubeApiServer, watcher, event_tap: EventTap
) -> None:
    async with watcher():
        dep = kube.create(k.deployment("payments", release_id="rel-1", replicas=2))
        first = await event_tap.wait_one(STARTED)
    kube.update_status(
        "Deployment", "default", "payments", k.rollout_status(dep, updated=1, ready=1)
    )
    async with watcher():
        again = await event_tap.wait_for(STARTED, count=2)
        kube.update_status("Deployment", "default", "payments", k.complete_status(dep))
        done = await event_tap.wait_one(SUCCEEDED)
        await settle(kube, event_tap, "sentinel")
    assert again[1].id == first.id  # a duplicate consumers drop
    assert [e.type for e in of("payments", event_tap.events)] == [STARTED, STARTED, SUCCEEDED]
    assert done.data["releaseId"] == "rel-1"


async def test_a_long_finished_job_and_failed_rollout_are_not_reported_again_at_start(
    kube: KubeApiServer, watcher, event_tap: EventTap
) -> None:
    job = kube.create(k.workload("Job", "migrate"))
    kube.update_status("Job", "default", "migrate", k.complete_status(job, at=LONG_AGO))
    stuck = kube.create(k.deployment("stuck"))
    status = k.progress_deadline_status(stuck)
    for condition in status["conditions"]:
        condition["lastUpdateTime"] = condition["lastTransitionTime"] = "2026-01-01T00:00:00Z"
    kube.update_status("Deployment", "default", "stuck", status)
    async with watcher():
        await settle(kube, event_tap, "sentinel")
    assert [e.data["workload"]["name"] for e in event_tap.events if e.type in ROLLOUT] == [
        "sentinel",
        "sentinel",
    ]


async def test_two_watchers_of_one_cluster_report_each_fact_under_one_id(
    kube: KubeApiServer, watcher, event_tap: EventTap
) -> None:
    async with watcher(), watcher():
        dep = kube.create(k.deployment("payments", release_id="rel-1"))
        kube.update_status("Deployment", "default", "payments", k.complete_status(dep))
        await event_tap.wait_for(SUCCEEDED, count=2)
        crash(kube, dep, "payments-abc")
        await event_tap.wait_for(DEGRADED, count=2)
        # one of the pair restarts: it reports nothing new, and nothing twice
        async with watcher():
            await settle(kube, event_tap, "sentinel")
    by_type: dict[str, set[str]] = {}
    for event in of("payments", event_tap.events):
        by_type.setdefault(event.type, set()).add(event.id)
    assert {t: len(v) for t, v in by_type.items()} == {STARTED: 1, SUCCEEDED: 1, DEGRADED: 1}
