"""Rollout classification and the tracker: pure functions over plain dicts, no broker, no server."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ferry_events import RolloutFailed, RolloutStarted, WorkloadDegraded
from ferry_kube_sim import objects as k
from ferry_watcher.domain import (
    Fact,
    Malformed,
    RolloutTracker,
    fact_id,
    parse_pod,
    parse_workload,
    pod_failure,
    reduce_log_lines,
)
from ferry_watcher.domain.events import event_data, to_event


def stored(obj: dict[str, Any], uid: str = "uid-1", generation: int = 1) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["metadata"].update(uid=uid, generation=generation, namespace="default")
    return obj


def with_status(obj: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return {**obj, "status": status}


# --------------------------------------------------------------------------- workloads


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet"])
def test_a_replicated_workload_succeeds_only_when_every_replica_is_updated_ready_available(
    kind: str,
) -> None:
    obj = stored(k.workload(kind, "api", replicas=3), generation=2)
    steps = [
        ({}, "progressing"),
        (k.rollout_status(obj, updated=3, ready=3, observed=False, nodes=3), "progressing"),
        (k.rollout_status(obj, updated=2, ready=2, nodes=3), "progressing"),
        (k.rollout_status(obj, updated=3, ready=2, nodes=3), "progressing"),
        (k.rollout_status(obj, updated=3, ready=3, available=2, nodes=3), "progressing"),
        (k.complete_status(obj, nodes=3), "succeeded"),
    ]
    for status, expected in steps:
        view = parse_workload(kind, with_status(obj, status))
        assert view is not None
        assert view.progress.state == expected, status


def test_a_deployment_waits_for_old_replicas_to_go() -> None:
    obj = stored(k.deployment("api", replicas=2))
    status = k.rollout_status(obj, updated=2, ready=2, total=3)
    view = parse_workload("Deployment", with_status(obj, status))
    assert view is not None
    assert view.progress.state == "progressing"


def test_a_deployment_scaled_to_zero_succeeds_once_observed() -> None:
    obj = stored(k.deployment("api", replicas=0))
    view = parse_workload("Deployment", with_status(obj, {"observedGeneration": 1}))
    assert view is not None
    assert view.progress.state == "succeeded"


def test_progress_deadline_exceeded_fails_a_deployment_with_a_message() -> None:
    obj = stored(k.deployment("api", replicas=2))
    view = parse_workload(
        "Deployment", with_status(obj, k.progress_deadline_status(obj, updated=1))
    )
    assert view is not None
    assert view.progress.state == "failed"
    assert view.progress.reason == "ProgressDeadlineExceeded"
    assert "Deployment api did not finish rolling out within its progress deadline" in (
        view.progress.message
    )
    assert "1 of 2 replicas updated" in view.progress.message


def test_a_statefulset_waits_for_its_current_revision() -> None:
    obj = stored(k.workload("StatefulSet", "db", replicas=1))
    status = k.complete_status(obj)
    status["currentRevision"] = "db-old"
    view = parse_workload("StatefulSet", with_status(obj, status))
    assert view is not None
    assert view.progress.state == "progressing"


def test_a_job_succeeds_or_fails_by_its_conditions() -> None:
    job = stored(k.workload("Job", "migrate"))
    running = parse_workload("Job", with_status(job, {"active": 1}))
    done = parse_workload("Job", with_status(job, k.job_status(job, succeeded=True)))
    failed = parse_workload(
        "Job", with_status(job, k.job_status(job, succeeded=False, failed_pods=3))
    )
    assert running is not None
    assert running.progress.state == "progressing"
    assert done is not None
    assert done.progress.state == "succeeded"
    assert failed is not None
    assert failed.progress.state == "failed"
    assert failed.progress.reason == "JobFailed"
    assert failed.progress.message.startswith("Job migrate failed (BackoffLimitExceeded)")


def test_workloads_without_ferry_annotations_are_not_ferrys() -> None:
    assert parse_workload("Deployment", stored(k.deployment("nginx", ferry=False))) is None
    obj = stored(k.deployment("api"))
    obj["metadata"]["annotations"] = {}  # stamped template but unstamped workload
    assert parse_workload("Deployment", obj) is None


def test_the_stamp_comes_from_the_pod_template() -> None:
    obj = stored(k.deployment("api", artifact_id="a-1", release_id="r-1"))
    obj["spec"]["template"]["metadata"]["annotations"]["ferry.dev/artifact-id"] = "a-2"
    view = parse_workload("Deployment", obj)
    assert view is not None
    assert view.stamp.artifact_id == "a-2"
    assert view.stamp.service == "api"
    assert view.selector == {"app": "api"}


@pytest.mark.parametrize(
    ("path", "value", "words"),
    [
        (("spec", "replicas"), "three", "Deployment.spec.replicas should be an integer"),
        (("metadata", "annotations"), ["x"], "Deployment.metadata.annotations should be an object"),
        (("metadata", "uid"), "", "needs metadata.name and metadata.uid"),
        (("status", "conditions"), [1], "Deployment.status.conditions[0] should be an object"),
        (("status", "readyReplicas"), True, "readyReplicas should be an integer"),
    ],
)
def test_a_malformed_workload_says_what_is_wrong(
    path: tuple[str, str], value: Any, words: str
) -> None:
    obj = stored(k.deployment("api"))
    obj.setdefault(path[0], {})[path[1]] = value
    with pytest.raises(Malformed, match=words.replace("[", r"\[").replace("]", r"\]")):
        parse_workload("Deployment", obj)


# --------------------------------------------------------------------------- pods


def pod(*statuses: dict[str, Any], init: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    dep = stored(k.deployment("api"))
    p = k.pod_for(dep, "api-1", containers=list(statuses))
    p["metadata"]["uid"] = "pod-uid"
    p["metadata"]["namespace"] = "default"
    if init:
        p["status"]["initContainerStatuses"] = init
    return p


@pytest.mark.parametrize(
    ("status", "reason", "logs"),
    [
        (
            k.container_status(
                "api", waiting="CrashLoopBackOff", last_terminated="Error", restarts=4
            ),
            "CrashLoopBackOff",
            True,
        ),
        (
            k.container_status("api", waiting="CrashLoopBackOff", last_terminated="OOMKilled"),
            "OOMKilled",
            True,
        ),
        (k.container_status("api", terminated="OOMKilled", exit_code=137), "OOMKilled", True),
        (k.container_status("api", waiting="ErrImagePull"), "ErrImagePull", False),
        (k.container_status("api", waiting="ImagePullBackOff"), "ImagePullBackOff", False),
        (
            k.container_status("api", waiting="CreateContainerConfigError"),
            "CreateContainerConfigError",
            False,
        ),
    ],
)
def test_container_failures_are_recognised(status: dict[str, Any], reason: str, logs: bool) -> None:
    failure = pod_failure(pod(status))
    assert failure is not None
    assert failure.reason == reason
    assert failure.container == "api"
    assert failure.wants_logs is logs


def test_healthy_and_starting_containers_are_not_failures() -> None:
    assert pod_failure(pod(k.container_status("api"))) is None
    assert pod_failure(pod(k.container_status("api", waiting="ContainerCreating"))) is None
    assert pod_failure(pod(k.container_status("api", terminated="Completed", exit_code=0))) is None


def test_an_init_container_failure_counts() -> None:
    failure = pod_failure(
        pod(
            k.container_status("api", waiting="PodInitializing"),
            init=[k.container_status("wait-db", waiting="CrashLoopBackOff")],
        )
    )
    assert failure is not None
    assert failure.container == "wait-db"


def test_a_crash_loop_message_is_for_people() -> None:
    failure = pod_failure(
        pod(
            k.container_status(
                "api", waiting="CrashLoopBackOff", last_terminated="Error", exit_code=3, restarts=4
            )
        )
    )
    assert failure is not None
    assert failure.message == "container api keeps crashing (exit code 3, 4 restart(s))"
    assert failure.restarts == 4


def test_pods_carry_their_stamp_and_owners() -> None:
    view = parse_pod(pod(k.container_status("api")))
    assert view is not None
    assert view.stamp.service == "api"
    assert view.labels == {"app": "api"}
    unstamped = pod(k.container_status("api"))
    unstamped["metadata"]["annotations"] = {}
    assert parse_pod(unstamped) is None


def test_reduce_log_lines_keeps_the_message_of_json_lines_and_the_tail() -> None:
    lines = [
        "plain start",
        "",
        json.dumps({"level": "info", "message": "connecting"}),
        json.dumps({"msg": "failed", "err": "x"}),
        json.dumps({"no": "message"}),
        "{not json",
        "   ",
        "last",
    ]
    assert reduce_log_lines(lines) == [
        "plain start",
        "connecting",
        "failed",
        '{"no": "message"}',
        "{not json",
        "last",
    ]
    assert reduce_log_lines(lines, limit=2) == ["{not json", "last"]
    assert reduce_log_lines(lines, limit=0) == []


# --------------------------------------------------------------------------- the tracker


def view_of(obj: dict[str, Any], status: dict[str, Any] | None = None):
    view = parse_workload(obj["kind"], with_status(obj, status or {}))
    assert view is not None
    return view


def outcomes(facts: list[Fact]) -> list[str]:
    return [f"{f.outcome}:{f.reason}" if f.reason else f.outcome for f in facts]


def test_each_fact_of_a_rollout_is_reported_once() -> None:
    tracker = RolloutTracker()
    obj = stored(k.deployment("api", replicas=2))
    assert outcomes(tracker.workload_seen(view_of(obj))) == ["started"]
    assert tracker.workload_seen(view_of(obj, k.rollout_status(obj, updated=1, ready=1))) == []
    assert outcomes(tracker.workload_seen(view_of(obj, k.complete_status(obj)))) == ["succeeded"]
    assert tracker.workload_seen(view_of(obj, k.complete_status(obj))) == []


def test_a_new_artifact_starts_a_new_rollout_and_a_scale_does_not() -> None:
    tracker = RolloutTracker()
    obj = stored(k.deployment("api"))
    tracker.workload_seen(view_of(obj, k.complete_status(obj)))
    scaled = stored(k.deployment("api", replicas=5), generation=2)
    assert (
        tracker.workload_seen(view_of(scaled, k.rollout_status(scaled, updated=1, ready=1))) == []
    )
    released = stored(k.with_artifact(obj, "a-2", "rel-2"), generation=3)
    facts = tracker.workload_seen(view_of(released))
    assert outcomes(facts) == ["started"]
    assert facts[0].stamp.artifact_id == "a-2"
    assert facts[0].workload.generation == 3


def test_a_rollback_to_an_earlier_artifact_is_a_new_rollout() -> None:
    tracker = RolloutTracker()
    v1 = stored(k.deployment("api", artifact_id="a-1", release_id="rel-1"))
    v2 = stored(k.with_artifact(v1, "a-2", "rel-2"), generation=2)
    back = stored(k.with_artifact(v1, "a-1", "rel-3"), generation=3)
    ids = [f.event_id for v in (v1, v2, back) for f in tracker.workload_seen(view_of(v))]
    assert len(ids) == 3
    assert len(set(ids)) == 3


def test_a_crash_loop_is_one_fact_however_many_restarts() -> None:
    tracker = RolloutTracker()
    obj = stored(k.deployment("api"))
    tracker.workload_seen(view_of(obj))
    facts: list[Fact] = []
    for restarts in range(1, 20):
        p = pod(
            k.container_status(
                "api", waiting="CrashLoopBackOff", last_terminated="Error", restarts=restarts
            )
        )
        p["metadata"]["ownerReferences"] = [{"uid": "rs-1", "kind": "ReplicaSet"}]
        view = parse_pod(p)
        assert view is not None
        facts += tracker.pod_seen(view)
    assert outcomes(facts) == ["failed:CrashLoopBackOff"]
    assert facts[0].logs_from is not None
    assert facts[0].logs_from.pod == "api-1"
    assert facts[0].restarts == 1


def test_err_image_pull_then_back_off_is_one_fact() -> None:
    tracker = RolloutTracker()
    tracker.workload_seen(view_of(stored(k.deployment("api"))))
    first = parse_pod(pod(k.container_status("api", waiting="ErrImagePull")))
    then = parse_pod(pod(k.container_status("api", waiting="ImagePullBackOff")))
    assert first is not None
    assert then is not None
    assert outcomes(tracker.pod_seen(first)) == ["failed:ErrImagePull"]
    assert tracker.pod_seen(then) == []


def test_a_pod_seen_before_its_workload_is_matched_when_the_workload_arrives() -> None:
    tracker = RolloutTracker()
    p = parse_pod(pod(k.container_status("api", waiting="CreateContainerConfigError")))
    assert p is not None
    assert tracker.pod_seen(p) == []
    facts = tracker.workload_seen(view_of(stored(k.deployment("api"))))
    assert outcomes(facts) == ["started", "failed:CreateContainerConfigError"]


def test_pods_of_another_rollout_or_workload_do_not_fail_this_one() -> None:
    tracker = RolloutTracker()
    obj = stored(k.with_artifact(k.deployment("api"), "a-2", "rel-2"))
    tracker.workload_seen(view_of(obj))
    old = parse_pod(
        pod(k.container_status("api", waiting="CrashLoopBackOff"))
    )  # artifact a...b, rel-1
    assert old is not None
    assert tracker.pod_seen(old) == []
    other = pod(k.container_status("api", waiting="CrashLoopBackOff"))
    other["metadata"]["labels"] = {"app": "someone-else"}
    other["metadata"]["ownerReferences"] = [{"uid": "rs-of-someone-else", "kind": "ReplicaSet"}]
    other["metadata"]["annotations"].update(
        {"ferry.dev/artifact-id": "a-2", "ferry.dev/release-id": "rel-2"}
    )
    view = parse_pod(other)
    assert view is not None
    assert tracker.pod_seen(view) == []


def crashing(restarts: int = 1, reason: str = "CrashLoopBackOff"):
    view = parse_pod(
        pod(k.container_status("api", waiting=reason, last_terminated="Error", restarts=restarts))
    )
    assert view is not None
    return view


def test_a_finished_rollout_does_not_fail_afterwards_its_workload_degrades_once() -> None:
    tracker = RolloutTracker()
    obj = stored(k.deployment("api"))
    tracker.workload_seen(view_of(obj, k.complete_status(obj)))
    facts = [f for restarts in range(1, 6) for f in tracker.pod_seen(crashing(restarts))]
    assert outcomes(facts) == ["degraded:CrashLoopBackOff"]
    # the controller keeps the Deployment complete while its pods crash: still no rollout fact
    assert tracker.workload_seen(view_of(obj, k.degraded_status(obj, ready=0))) == []
    assert outcomes(tracker.pod_seen(crashing(reason="ErrImagePull"))) == ["degraded:ErrImagePull"]
    degraded = facts[0]
    assert degraded.event_id == fact_id("uid-1", degraded.stamp, "degraded", "CrashLoopBackOff")
    assert degraded.event_id != fact_id("uid-1", degraded.stamp, "failed", "CrashLoopBackOff")
    assert degraded.logs_from is not None
    event = to_event(degraded, cluster="eu-1", observed_at=datetime.now(UTC), logs=["boom"])
    assert event.type == "ferry.workload.degraded.v1"
    parsed = WorkloadDegraded.model_validate(event.data)
    assert (parsed.reason, parsed.logs, parsed.container) == ("CrashLoopBackOff", ["boom"], "api")
    assert "pod api-1: container api keeps crashing" in parsed.message


LONG_AGO = datetime.now(UTC) - timedelta(days=40)


def test_a_deployment_stays_complete_once_its_controller_said_so() -> None:
    obj = stored(k.deployment("api", replicas=3))
    progress = view_of(obj, k.degraded_status(obj, ready=1, finished_at=LONG_AGO)).progress
    assert progress.state == "succeeded"
    assert progress.finished_at == LONG_AGO.replace(microsecond=0)
    # a new generation the controller has not rolled out yet is not complete
    newer = stored(k.with_artifact(obj, "a-2", "rel-2"), generation=2)
    assert view_of(newer, k.degraded_status(obj, ready=3)).progress.state == "progressing"


def test_after_a_restart_a_long_finished_rollout_is_not_reported_and_a_crash_degrades() -> None:
    before, after = RolloutTracker(), RolloutTracker()
    obj = stored(k.deployment("api", replicas=2))
    done = k.complete_status(obj, at=LONG_AGO)
    assert outcomes(before.workload_seen(view_of(obj))) == ["started"]
    assert outcomes(before.workload_seen(view_of(obj, done))) == ["succeeded"]
    # the watcher restarts: its first list shows the finished rollout
    assert after.workload_seen(view_of(obj, done), first_sight=True) == []
    [degraded] = after.pod_seen(crashing())
    assert degraded.outcome == "degraded"
    [same] = before.pod_seen(crashing())
    assert same.event_id == degraded.event_id  # whichever watcher saw it, one fact


def test_a_crash_already_there_at_first_sight_degrades_whichever_list_comes_first() -> None:
    obj = stored(k.deployment("api", replicas=2))
    status = k.degraded_status(obj, ready=1, finished_at=LONG_AGO)
    workload_first = RolloutTracker()
    assert workload_first.workload_seen(view_of(obj, status), first_sight=True) == []
    assert outcomes(workload_first.pod_seen(crashing())) == ["degraded:CrashLoopBackOff"]
    pods_first = RolloutTracker()
    assert pods_first.pod_seen(crashing()) == []
    facts = pods_first.workload_seen(view_of(obj, status), first_sight=True)
    assert outcomes(facts) == ["degraded:CrashLoopBackOff"]


def test_a_rollout_that_finished_just_before_first_sight_is_reported_under_its_id() -> None:
    live = RolloutTracker()
    obj = stored(k.deployment("api"))
    live.workload_seen(view_of(obj))
    [succeeded] = live.workload_seen(view_of(obj, k.complete_status(obj)))
    restarted = RolloutTracker(catch_up=timedelta(minutes=15))
    facts = restarted.workload_seen(view_of(obj, k.complete_status(obj)), first_sight=True)
    assert [(f.outcome, f.event_id) for f in facts] == [("succeeded", succeeded.event_id)]
    never = RolloutTracker(catch_up=timedelta(0))
    assert never.workload_seen(view_of(obj, k.complete_status(obj)), first_sight=True) == []


def test_a_rollout_in_progress_at_first_sight_still_gets_its_one_result() -> None:
    live, restarted = RolloutTracker(), RolloutTracker()
    obj = stored(k.deployment("api", replicas=2))
    halfway = k.rollout_status(obj, updated=1, ready=1)
    live_ids = [f.event_id for f in live.workload_seen(view_of(obj, halfway))]
    facts = restarted.workload_seen(view_of(obj, halfway), first_sight=True)
    assert outcomes(facts) == ["started"]
    assert outcomes(restarted.pod_seen(crashing())) == ["failed:CrashLoopBackOff"]
    done = restarted.workload_seen(view_of(obj, k.complete_status(obj, at=LONG_AGO)))
    assert outcomes(done) == ["succeeded"]
    live_ids += [f.event_id for f in live.workload_seen(view_of(obj, k.complete_status(obj)))]
    assert [facts[0].event_id, done[0].event_id] == live_ids


def test_a_job_or_a_failed_rollout_found_finished_long_ago_is_not_reported_again() -> None:
    job = stored(k.workload("Job", "migrate"))
    tracker = RolloutTracker()
    assert (
        tracker.workload_seen(view_of(job, k.complete_status(job, at=LONG_AGO)), first_sight=True)
        == []
    )
    failed = stored(k.deployment("api"), uid="uid-2")
    status = k.progress_deadline_status(failed)
    for condition in status["conditions"]:
        condition["lastUpdateTime"] = condition["lastTransitionTime"] = "2026-01-01T00:00:00Z"
    assert tracker.workload_seen(view_of(failed, status), first_sight=True) == []


def test_two_trackers_derive_the_same_ids_and_a_gone_workload_is_forgotten() -> None:
    obj = stored(k.deployment("api"))
    a, b = RolloutTracker(), RolloutTracker()
    ids_a = [f.event_id for f in a.workload_seen(view_of(obj, k.complete_status(obj)))]
    ids_b = [f.event_id for f in b.workload_seen(view_of(obj))]
    ids_b += [f.event_id for f in b.workload_seen(view_of(obj, k.complete_status(obj)))]
    assert ids_a == ids_b
    a.forget_workloads_except("Deployment", set(), None)
    assert a.workload_count == 0
    again = a.workload_seen(view_of(obj, k.complete_status(obj)))
    assert [f.event_id for f in again] == ids_a  # a re-created cache reports again, same ids


def test_fact_ids_depend_on_what_they_report() -> None:
    view = view_of(stored(k.deployment("api")))
    stamp = view.stamp
    assert fact_id("u", stamp, "failed", "ErrImagePull") == fact_id(
        "u", stamp, "failed", "ImagePullBackOff"
    )
    assert fact_id("u", stamp, "failed", "OOMKilled") != fact_id(
        "u", stamp, "failed", "CrashLoopBackOff"
    )
    assert fact_id("u", stamp, "started") != fact_id("v", stamp, "started")
    assert fact_id("u", stamp, "started") != fact_id("u", stamp, "succeeded")


def test_facts_become_rollout_events() -> None:
    obj = stored(k.deployment("api", release_id="rel-9", environment="prod"))
    tracker = RolloutTracker()
    [started] = tracker.workload_seen(view_of(obj))
    at = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    data = event_data(started, cluster="eu-1", observed_at=at, logs=[])
    assert isinstance(data, RolloutStarted)
    assert (data.cluster, data.environment, data.release_id) == ("eu-1", "prod", "rel-9")
    crashed = parse_pod(pod(k.container_status("api", waiting="CrashLoopBackOff", restarts=3)))
    assert crashed is not None
    crashed = type(crashed)(
        **{**{f: getattr(crashed, f) for f in crashed.__slots__}, "stamp": started.stamp}
    )
    [failed] = tracker.pod_seen(crashed)
    event = to_event(failed, cluster="eu-1", observed_at=at, logs=["boom"])
    assert event.id == failed.event_id
    assert event.correlationid == "rel-9"
    parsed = RolloutFailed.model_validate(event.data)
    assert parsed.reason == "CrashLoopBackOff"
    assert parsed.logs == ["boom"]
    assert parsed.restarts == 3


def test_settings_come_from_ferry_variables_and_kubeconfig(monkeypatch: pytest.MonkeyPatch) -> None:
    from ferry_watcher.settings import WatcherSettings

    monkeypatch.setenv("FERRY_CLUSTER_NAME", "eu-1")
    monkeypatch.setenv("FERRY_WATCH_NAMESPACES", "shop, ,payments")
    monkeypatch.setenv("KUBECONFIG", "/etc/ferry/kubeconfig")
    settings = WatcherSettings()
    assert settings.cluster_name == "eu-1"
    assert settings.namespaces == ["shop", "payments"]
    assert str(settings.kubeconfig) == "/etc/ferry/kubeconfig"
    assert settings.http_port == 8083
    monkeypatch.delenv("FERRY_WATCH_NAMESPACES")
    assert WatcherSettings().namespaces == []


def test_a_rollout_that_failed_just_before_first_sight_is_reported_under_its_id() -> None:
    obj = stored(k.deployment("api"))
    live = RolloutTracker()
    live.workload_seen(view_of(obj))
    [failed] = live.workload_seen(view_of(obj, k.progress_deadline_status(obj)))
    restarted = RolloutTracker()
    facts = restarted.workload_seen(view_of(obj, k.progress_deadline_status(obj)), first_sight=True)
    assert [(f.outcome, f.reason, f.event_id) for f in facts] == [
        ("failed", "ProgressDeadlineExceeded", failed.event_id)
    ]
    assert restarted.workload_seen(view_of(obj, k.progress_deadline_status(obj))) == []
