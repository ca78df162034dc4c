"""The cluster-watcher through the real kubernetes_asyncio client against the API test server,
reporting on the real broker."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from prometheus_client import REGISTRY

from ferry_events import CloudEvent
from ferry_kube_sim import KubeApiServer
from ferry_kube_sim import objects as k
from ferry_testing import EventTap, running
from ferry_watcher.bootstrap import build
from ferry_watcher.domain import fact_id
from ferry_watcher.domain.model import stamp_of as stamp_of_annotations
from ferry_watcher.settings import WatcherSettings

pytestmark = pytest.mark.amqp

STARTED = "ferry.rollout.started.v1"
SUCCEEDED = "ferry.rollout.succeeded.v1"
FAILED = "ferry.rollout.failed.v1"
DEGRADED = "ferry.workload.degraded.v1"


def about(name: str):
    return lambda e: e.data["workload"]["name"] == name


def skipped(kind: str) -> float:
    return REGISTRY.get_sample_value("ferry_watcher_malformed_total", {"kind": kind}) or 0.0


async def settle(kube: KubeApiServer, tap: EventTap, name: str) -> None:
    """A sentinel: once its failure (seen on the pod watch) is reported, every earlier pod
    change has been handled too (one watch stream, one reporter queue, both in order)."""
    dep = kube.create(k.deployment(name))
    kube.create(
        k.pod_for(dep, f"{name}-1", containers=[k.container_status(name, waiting="ErrImagePull")])
    )
    await tap.wait_one(FAILED, about(name))


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet", "Job"])
async def test_a_rollout_is_reported_started_then_succeeded(
    kind: str, kube: KubeApiServer, watcher, event_tap: EventTap
) -> None:
    async with watcher():
        obj = kube.create(
            k.workload(
                kind,
                "payments",
                namespace="shop",
                artifact_id="master-1111111111-2222222222",
                release_id="rel-42",
                environment="staging",
                author="jane@example.com",
                replicas=2,
            )
        )
        started = await event_tap.wait_one(STARTED)
        kube.update_status(kind, "shop", "payments", k.rollout_status(obj, updated=1, ready=0))
        await asyncio.sleep(0.1)
        assert event_tap.of_type(SUCCEEDED) == []
        kube.update_status(kind, "shop", "payments", k.complete_status(obj))
        succeeded = await event_tap.wait_one(SUCCEEDED)
    for event in (started, succeeded):
        assert event.source == "ferry/cluster-watcher"
        assert event.subject == "payments"
        assert event.correlationid == "rel-42"
        data = event.data
        assert data["cluster"] == "test-cluster"
        assert data["environment"] == "staging"
        assert data["namespace"] == "shop"
        assert data["service"] == "payments"
        assert data["artifactId"] == "master-1111111111-2222222222"
        assert data["releaseId"] == "rel-42"
        assert data["author"] == "jane@example.com"
        assert data["workload"] == {
            "kind": kind,
            "name": "payments",
            "uid": obj["metadata"]["uid"],
            "generation": 1,
        }
    assert started.id != succeeded.id


async def test_a_deployment_is_not_done_while_old_replicas_remain(
    kube: KubeApiServer, watcher, event_tap: EventTap
) -> None:
    async with watcher():
        obj = kube.create(k.deployment("payments", replicas=2))
        kube.update_status("Deployment", "default", "payments", k.complete_status(obj))
        await event_tap.wait_one(SUCCEEDED)
        new = kube.update(k.with_artifact(obj, "master-3333333333-4444444444", "rel-2"))
        assert new["metadata"]["generation"] == 2
        started = await event_tap.wait_one(STARTED, lambda e: e.data["releaseId"] == "rel-2")
        # the controller has not seen generation 2 yet: the old status must not count
        kube.update_status("Deployment", "default", "payments", k.complete_status(obj))
        kube.update_status(
            "Deployment", "default", "payments", k.rollout_status(new, updated=2, ready=2, total=3)
        )
        kube.update_status("Deployment", "default", "payments", k.complete_status(new))
        done = await event_tap.wait_one(SUCCEEDED, lambda e: e.data["releaseId"] == "rel-2")
    assert started.data["workload"]["generation"] == 2
    assert done.data["artifactId"] == "master-3333333333-4444444444"
    assert len(event_tap.of_type(SUCCEEDED)) == 2


async def test_a_crash_loop_is_reported_once_with_the_containers_last_log_messages(
    kube: KubeApiServer, watcher, event_tap: EventTap
) -> None:
    async with watcher():
        dep = kube.create(k.deployment("payments", release_id="rel-7"))
        kube.set_pod_log(
            "default",
            "payments-abc",
            "payments",
            "starting payments\n"
            + json.dumps({"level": "error", "message": "cannot reach database at db:5432"})
            + "\n"
            + json.dumps({"level": "fatal", "msg": "giving up after 3 attempts"})
            + "\n",
        )
        pod = k.pod_for(
            dep,
            "payments-abc",
            owner_uid="rs-uid-1",  # owned by a ReplicaSet: matched by selector and stamp
            containers=[
                k.container_status("payments", terminated="Error", restarts=0, exit_code=3)
            ],
        )
        kube.create(pod)
        for restarts in range(1, 6):
            pod["status"]["containerStatuses"] = [
                k.container_status(
                    "payments",
                    waiting="CrashLoopBackOff",
                    waiting_message="back-off 10s restarting failed container",
                    last_terminated="Error",
                    restarts=restarts,
                    exit_code=3,
                )
            ]
            kube.update_status("Pod", "default", "payments-abc", pod["status"])
        failed = await event_tap.wait_one(FAILED, about("payments"))
        await settle(kube, event_tap, "sentinel")
    assert len(event_tap.of_type(FAILED)) == 2  # payments once, and the sentinel
    data = failed.data
    assert data["reason"] == "CrashLoopBackOff"
    assert data["container"] == "payments"
    assert 1 <= data["restarts"] <= 5
    assert "keeps crashing (exit code 3" in data["message"]
    assert "payments-abc" in data["message"]
    assert data["logs"] == [
        "starting payments",
        "cannot reach database at db:5432",
        "giving up after 3 attempts",
    ]
    assert data["releaseId"] == "rel-7"


@pytest.mark.parametrize(
    ("waiting", "last", "reason", "words"),
    [
        ("ErrImagePull", None, "ErrImagePull", "cannot pull its image"),
        ("ImagePullBackOff", None, "ImagePullBackOff", "cannot pull its image"),
        (
            "CreateContainerConfigError",
            None,
            "CreateContainerConfigError",
            'secret "payments-db" not found',
        ),
        ("CrashLoopBackOff", "OOMKilled", "OOMKilled", "more memory than its limit"),
    ],
)
async def test_a_pod_that_cannot_run_fails_the_rollout_with_its_reason(
    waiting: str,
    last: str | None,
    reason: str,
    words: str,
    kube: KubeApiServer,
    watcher,
    event_tap: EventTap,
) -> None:
    async with watcher():
        dep = kube.create(k.workload("StatefulSet", "ledger"))
        message = 'secret "payments-db" not found' if "Config" in waiting else "pull failed"
        kube.create(
            k.pod_for(
                dep,
                "ledger-0",
                owner_kind="StatefulSet",
                containers=[
                    k.container_status(
                        "ledger",
                        image="registry.example.com/ledger:x",
                        waiting=waiting,
                        waiting_message=message,
                        last_terminated=last,
                        exit_code=137,
                        restarts=2 if last else 0,
                    )
                ],
            )
        )
        failed = await event_tap.wait_one(FAILED)
    assert failed.data["reason"] == reason
    assert words in failed.data["message"]
    assert failed.data["workload"]["kind"] == "StatefulSet"
    assert failed.data["workload"]["uid"] == dep["metadata"]["uid"]


async def test_image_pull_errors_then_back_off_are_one_fact(
    kube: KubeApiServer, watcher, event_tap: EventTap
) -> None:
    async with watcher():
        dep = kube.create(k.deployment("payments"))
        pod = kube.create(
            k.pod_for(
                dep,
                "payments-1",
                containers=[k.container_status("payments", waiting="ErrImagePull")],
            )
        )
        await event_tap.wait_one(FAILED, about("payments"))
        pod["status"]["containerStatuses"] = [
            k.container_status("payments", waiting="ImagePullBackOff")
        ]
        kube.update_status("Pod", "default", "payments-1", pod["status"])
        await settle(kube, event_tap, "sentinel")
    assert [e.data["workload"]["name"] for e in event_tap.of_type(FAILED)] == [
        "payments",
        "sentinel",
    ]


async def test_progress_deadline_and_failed_job_are_reported(
    kube: KubeApiServer, watcher, event_tap: EventTap
) -> None:
    async with watcher():
        dep = kube.create(k.deployment("payments"))
        job = kube.create(k.workload("Job", "migrate"))
        kube.update_status("Deployment", "default", "payments", k.progress_deadline_status(dep))
        kube.update_status(
            "Job", "default", "migrate", k.job_status(job, succeeded=False, failed_pods=3)
        )
        deadline = await event_tap.wait_one(FAILED, about("payments"))
        failed_job = await event_tap.wait_one(FAILED, about("migrate"))
    assert deadline.data["reason"] == "ProgressDeadlineExceeded"
    assert "did not finish rolling out within its progress deadline" in deadline.data["message"]
    assert failed_job.data["reason"] == "JobFailed"
    assert "BackoffLimitExceeded" in failed_job.data["message"]
    assert "3 failed pod(s)" in failed_job.data["message"]


def stamp_of(obj: dict[str, Any]):
    stamp = stamp_of_annotations(obj["spec"]["template"]["metadata"]["annotations"])
    assert stamp is not None
    return stamp


def ids(events: list[CloudEvent]) -> list[str]:
    return [e.id for e in events]


async def test_410_in_the_middle_of_a_rollout_relists_and_misses_nothing(
    kube: KubeApiServer, watcher, event_tap: EventTap
) -> None:
    async with watcher(watch_list_page_size=2):
        a = kube.create(k.deployment("a", replicas=2))
        b = kube.create(k.deployment("b"))
        await event_tap.wait_for(STARTED, count=2)
        kube.update_status("Deployment", "default", "a", k.rollout_status(a, updated=1, ready=1))
        lists_before = kube.list_requests
        # the watches go deaf, the rollouts move on, the history is compacted, the streams drop
        kube.stall_streams()
        kube.update_status("Deployment", "default", "a", k.complete_status(a))
        kube.update(k.with_artifact(b, "master-5555555555-6666666666", "rel-2"))
        c = kube.create(k.deployment("c"))
        kube.compact()
        kube.cut_streams()
        await event_tap.wait_one(SUCCEEDED, about("a"))
        await event_tap.wait_one(STARTED, lambda e: e.data["releaseId"] == "rel-2")
        await event_tap.wait_one(STARTED, about("c"))
        kube.update_status("Deployment", "default", "c", k.complete_status(c))
        await event_tap.wait_one(SUCCEEDED, about("c"))
    assert kube.list_requests > lists_before  # it re-listed
    started = event_tap.of_type(STARTED)
    assert sorted((e.data["workload"]["name"], e.data["releaseId"]) for e in started) == [
        ("a", "rel-1"),
        ("b", "rel-1"),
        ("b", "rel-2"),
        ("c", "rel-1"),
    ]
    everything = ids(event_tap.events)
    assert len(everything) == len(set(everything))  # nothing twice


async def test_a_cut_stream_is_resumed_from_where_it_was(
    kube: KubeApiServer, watcher, event_tap: EventTap
) -> None:
    async with watcher():
        dep = kube.create(k.deployment("payments"))
        await event_tap.wait_one(STARTED)
        watches, lists = kube.watch_requests, kube.list_requests
        assert kube.cut_streams() >= 1
        kube.update_status("Deployment", "default", "payments", k.complete_status(dep))
        await event_tap.wait_one(SUCCEEDED)
    assert kube.watch_requests > watches
    assert kube.list_requests == lists  # resumed from its resourceVersion, no re-list needed
    assert len(event_tap.events) == 2


async def test_a_silent_watch_is_treated_as_dead_and_restarted(
    kube: KubeApiServer, watcher, event_tap: EventTap
) -> None:
    async with watcher(watch_inactivity_timeout=1.0):
        dep = kube.create(k.deployment("payments"))
        await event_tap.wait_one(STARTED)
        kube.stall_streams()  # connections stay open, nothing more comes, not even bookmarks
        kube.update_status("Deployment", "default", "payments", k.complete_status(dep))
        await event_tap.wait_one(SUCCEEDED, timeout=10)
    assert (
        REGISTRY.get_sample_value(
            "ferry_watcher_watch_restarts_total", {"kind": "Deployment", "cause": "silent"}
        )
        or 0
    ) >= 1


async def test_a_rollout_that_finished_while_no_watcher_watched_is_reported_at_start(
    kube: KubeApiServer, watcher, event_tap: EventTap
) -> None:
    async with watcher():
        dep = kube.create(k.deployment("payments", replicas=3))
        await event_tap.wait_one(STARTED)
        kube.update_status(
            "Deployment", "default", "payments", k.rollout_status(dep, updated=1, ready=1)
        )
    # it finishes while the watcher is down; the status says when (just now)
    kube.update_status("Deployment", "default", "payments", k.complete_status(dep))
    async with watcher():
        succeeded = await event_tap.wait_one(SUCCEEDED)
        await settle(kube, event_tap, "sentinel")
    assert [e.type for e in event_tap.events if about("payments")(e)] == [STARTED, SUCCEEDED]
    assert succeeded.id == fact_id(dep["metadata"]["uid"], stamp_of(dep), "succeeded")


async def test_two_replicas_report_the_same_facts_under_the_same_ids(
    kube: KubeApiServer, watcher, event_tap: EventTap
) -> None:
    async with watcher(), watcher():
        dep = kube.create(k.deployment("payments"))
        kube.create(
            k.pod_for(
                dep,
                "payments-1",
                containers=[k.container_status("payments", waiting="ErrImagePull")],
            )
        )
        kube.update_status("Deployment", "default", "payments", k.complete_status(dep))
        await event_tap.wait_for(SUCCEEDED, count=2)
        await event_tap.wait_for(STARTED, count=2)
    by_type: dict[str, set[str]] = {}
    for event in event_tap.events:
        by_type.setdefault(event.type, set()).add(event.id)
    assert len(event_tap.of_type(STARTED)) == 2
    # the pod's ErrImagePull and the Deployment's completion come on two watch streams, so
    # each replica may see them in either order: seen before the completion it is a failed
    # rollout, after it a degraded workload (docs/cluster-watcher.md); either fact, from
    # whichever replicas saw it so, carries one id
    assert {t: len(v) for t, v in by_type.items() if t not in (FAILED, DEGRADED)} == {
        STARTED: 1,
        SUCCEEDED: 1,
    }
    assert len(by_type.get(FAILED, set())) <= 1
    assert len(by_type.get(DEGRADED, set())) <= 1


async def test_workloads_without_ferry_annotations_and_other_namespaces_are_ignored(
    kube: KubeApiServer, watcher, event_tap: EventTap
) -> None:
    async with watcher(watch_namespaces="shop"):
        plain = kube.create(k.deployment("nginx", namespace="shop", ferry=False))
        kube.create(
            k.pod_for(
                plain,
                "nginx-1",
                containers=[k.container_status("nginx", waiting="CrashLoopBackOff")],
            )
        )
        kube.update_status("Deployment", "shop", "nginx", k.complete_status(plain))
        elsewhere = kube.create(k.deployment("payments", namespace="other"))
        kube.update_status("Deployment", "other", "payments", k.complete_status(elsewhere))
        mine = kube.create(k.deployment("payments", namespace="shop"))
        kube.update_status("Deployment", "shop", "payments", k.complete_status(mine))
        await event_tap.wait_one(SUCCEEDED)
        await settle_namespaced(kube, event_tap)
    assert {(e.data["namespace"], e.data["service"]) for e in event_tap.events} == {
        ("shop", "payments"),
        ("shop", "sentinel"),
    }


async def settle_namespaced(kube: KubeApiServer, tap: EventTap) -> None:
    dep = kube.create(k.deployment("sentinel", namespace="shop"))
    kube.create(
        k.pod_for(
            dep, "sentinel-1", containers=[k.container_status("sentinel", waiting="ErrImagePull")]
        )
    )
    await tap.wait_one(FAILED, about("sentinel"))


async def test_malformed_objects_are_logged_and_skipped_without_stopping_the_watch(
    kube: KubeApiServer, watcher, event_tap: EventTap
) -> None:
    bad = k.deployment("broken-at-start")
    bad["spec"]["replicas"] = "three"
    kube.create(bad)  # in the initial list
    before = skipped("Deployment")
    async with watcher():
        await kube.wait_for_streams(5)
        kube.emit_raw("Deployment", "this is not JSON")
        kube.emit_raw("Deployment", json.dumps({"type": "ADDED"}))
        worse = k.deployment("broken-later")
        worse["metadata"]["annotations"]["ferry.dev/artifact-id"] = 17
        kube.create(worse)
        pod = k.deployment("x")
        kube.create(
            {
                "kind": "Pod",
                "metadata": {"name": "p", "annotations": k.stamp("x")},
                "status": {"containerStatuses": "oops"},
            }
        )
        kube.create(pod)
        fine = kube.create(k.deployment("fine"))
        kube.update_status("Deployment", "default", "fine", k.complete_status(fine))
        await event_tap.wait_one(SUCCEEDED, about("fine"))
    names = {e.data["workload"]["name"] for e in event_tap.events}
    assert "broken-at-start" not in names
    assert "broken-later" not in names
    assert {"fine", "x"} <= names
    assert skipped("Deployment") - before == 4
    assert skipped("Pod") >= 1


async def test_a_kubeconfig_written_after_start_is_picked_up(
    kube: KubeApiServer, broker_ns, event_tap: EventTap, tmp_path
) -> None:
    path = tmp_path / "later" / "kubeconfig"
    settings = WatcherSettings(
        **{**broker_ns.settings(), "kubeconfig": path, "watch_backoff_max": 0.2}
    )
    app = build(settings)
    async with running(app.runtime):
        await asyncio.sleep(0.3)
        assert (await app.runtime.readiness.report())["kubernetes"] is False
        kube.write_kubeconfig(path)
        await app.wait_synced()
        assert (await app.runtime.readiness.report())["kubernetes"] is True
        kube.create(k.deployment("payments"))
        await event_tap.wait_one(STARTED)


async def test_what_was_there_before_the_watcher_started_is_listed_in_pages_and_reported(
    kube: KubeApiServer, watcher, event_tap: EventTap
) -> None:
    for i in range(5):
        obj = kube.create(k.deployment(f"svc-{i}", namespace=f"team-{i % 2}"))
        kube.update_status("Deployment", f"team-{i % 2}", f"svc-{i}", k.complete_status(obj))
    async with watcher(watch_list_page_size=2):
        done = await event_tap.wait_for(SUCCEEDED, count=5)
    assert sorted(e.data["service"] for e in done) == [f"svc-{i}" for i in range(5)]
    pages = [r for r in kube.requests if "/deployments?" in r and "watch" not in r]
    assert len(pages) == 3  # 2 + 2 + 1
    assert sum("continue=" in r for r in pages) == 2


async def test_an_api_server_restart_is_survived_by_backoff_and_relist(
    kube: KubeApiServer, watcher, event_tap: EventTap
) -> None:
    async with watcher():
        kube.create(k.deployment("payments"))
        await event_tap.wait_one(STARTED)
        await kube.stop()  # the API goes away: connections refused while it is down
        await asyncio.sleep(0.5)
        async with KubeApiServer(port=kube.port, bookmark_interval=0.5) as restarted:
            # a fresh server (its history starts after the old resourceVersions: 410, re-list)
            obj = restarted.create(k.deployment("payments"))
            restarted.update_status("Deployment", "default", "payments", k.complete_status(obj))
            done = await event_tap.wait_one(SUCCEEDED, timeout=20)
            relists = [r for r in restarted.requests if "/deployments?" in r and "watch" not in r]
            assert relists  # the old resourceVersion was too old for the new server: re-listed
    assert done.data["workload"]["uid"] == obj["metadata"]["uid"]
    assert (
        REGISTRY.get_sample_value(
            "ferry_watcher_watch_restarts_total", {"kind": "Deployment", "cause": "error"}
        )
        or 0
    ) >= 1
