"""Builders of Kubernetes objects as the API returns them, for tests and the simulator.

Workloads carry Ferry's ``ferry.dev/*`` stamp on their metadata and pod
template (as git-writer writes them); ``*_status`` functions give the status
a controller would write at a point of a rollout; ``pod_for`` makes a pod of
a workload's current template with the container statuses asked for.
"""

from __future__ import annotations

import copy
import hashlib
from datetime import UTC, datetime
from typing import Any

JsonObj = dict[str, Any]


def stamp(
    service: str,
    *,
    environment: str = "dev",
    artifact_id: str = "master-aaaaaaaaaa-bbbbbbbbbb",
    release_id: str = "rel-1",
    author: str = "jane@example.com",
) -> dict[str, str]:
    return {
        "ferry.dev/service": service,
        "ferry.dev/environment": environment,
        "ferry.dev/artifact-id": artifact_id,
        "ferry.dev/release-id": release_id,
        "ferry.dev/author": author,
    }


def workload(
    kind: str,
    name: str,
    *,
    namespace: str = "default",
    artifact_id: str = "master-aaaaaaaaaa-bbbbbbbbbb",
    release_id: str = "rel-1",
    environment: str = "dev",
    author: str = "jane@example.com",
    replicas: int = 1,
    ferry: bool = True,
    annotations: dict[str, str] | None = None,
    image: str | None = None,
) -> JsonObj:
    """A Deployment, StatefulSet, DaemonSet or Job of one container named after it."""
    notes = stamp(
        name,
        environment=environment,
        artifact_id=artifact_id,
        release_id=release_id,
        author=author,
    )
    own = {**(notes if ferry else {}), **(annotations or {})}
    template_notes = dict(notes) if ferry else {}
    spec: JsonObj = {
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}, "annotations": template_notes},
            "spec": {
                "containers": [
                    {"name": name, "image": image or f"registry.example.com/{name}:{artifact_id}"}
                ],
            },
        },
    }
    if kind in ("Deployment", "StatefulSet"):
        spec["replicas"] = replicas
    if kind == "Job":
        spec["template"]["spec"]["restartPolicy"] = "Never"
        spec["backoffLimit"] = 2
        del spec["selector"]
    api = {"Job": "batch/v1"}.get(kind, "apps/v1")
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "annotations": own},
        "spec": spec,
    }


def deployment(name: str, **kwargs: Any) -> JsonObj:
    return workload("Deployment", name, **kwargs)


def with_artifact(obj: JsonObj, artifact_id: str, release_id: str) -> JsonObj:
    """The same workload released with another artifact (what git-writer commits)."""
    new = copy.deepcopy(obj)
    for meta in (new["metadata"], new["spec"]["template"]["metadata"]):
        notes = meta.setdefault("annotations", {})
        notes["ferry.dev/artifact-id"] = artifact_id
        notes["ferry.dev/release-id"] = release_id
    for container in new["spec"]["template"]["spec"]["containers"]:
        container["image"] = container["image"].rsplit(":", 1)[0] + f":{artifact_id}"
    return new


def template_hash(obj: JsonObj) -> str:
    """A stable hash of the pod template, like ``pod-template-hash``."""
    template = repr(sorted(obj["spec"]["template"].items())).encode()
    return hashlib.sha256(template).hexdigest()[:10]


# --------------------------------------------------------------------------- statuses


def _time(at: datetime | None) -> str:
    """A status time as the API writes it (RFC 3339, seconds, UTC); now when not given."""
    return (at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def desired(obj: JsonObj, nodes: int = 1) -> int:
    if obj["kind"] == "DaemonSet":
        return nodes
    if obj["kind"] == "Job":
        return int(obj["spec"].get("completions", 1))
    return int(obj["spec"].get("replicas", 1))


def rollout_status(
    obj: JsonObj,
    *,
    updated: int,
    ready: int,
    available: int | None = None,
    total: int | None = None,
    observed: bool = True,
    nodes: int = 1,
    at: datetime | None = None,
) -> JsonObj:
    """The status a controller writes while (or after) rolling out ``obj``'s current template
    (``at``: when its conditions last changed; now by default)."""
    kind = obj["kind"]
    generation = obj["metadata"].get("generation", 1)
    observed_generation = generation if observed else generation - 1
    available = ready if available is None else available
    want = desired(obj, nodes)
    if kind == "Deployment":
        return {
            "observedGeneration": observed_generation,
            "replicas": want if total is None else total,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "conditions": [
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "NewReplicaSetAvailable"
                    if updated >= want and available >= want
                    else "ReplicaSetUpdated",
                    "lastUpdateTime": _time(at),
                    "lastTransitionTime": _time(at),
                }
            ],
        }
    if kind == "StatefulSet":
        revision = f"{obj['metadata']['name']}-{template_hash(obj)}"
        return {
            "observedGeneration": observed_generation,
            "replicas": want,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "currentReplicas": updated,
            "updateRevision": revision,
            "currentRevision": revision if updated >= want else "previous",
        }
    if kind == "DaemonSet":
        return {
            "observedGeneration": observed_generation,
            "desiredNumberScheduled": want,
            "currentNumberScheduled": want,
            "updatedNumberScheduled": updated,
            "numberReady": ready,
            "numberAvailable": available,
        }
    if kind == "Job":
        return {"active": max(want - updated, 0), "ready": ready}
    raise ValueError(f"no rollout status for {kind}")


def complete_status(obj: JsonObj, nodes: int = 1, *, at: datetime | None = None) -> JsonObj:
    """The status of a finished rollout (``at``: when it finished; now by default)."""
    if obj["kind"] == "Job":
        return job_status(obj, succeeded=True, at=at)
    want = desired(obj, nodes)
    return rollout_status(obj, updated=want, ready=want, nodes=nodes, at=at)


def degraded_status(obj: JsonObj, *, ready: int, finished_at: datetime | None = None) -> JsonObj:
    """A Deployment whose rollout finished (at ``finished_at``) and whose pods stopped being
    ready since: the controller keeps ``Progressing`` at ``NewReplicaSetAvailable`` (the
    rollout is over) and says ``Available`` is ``False``."""
    status = complete_status(obj, at=finished_at)
    status.update(
        readyReplicas=ready, availableReplicas=ready, unavailableReplicas=desired(obj) - ready
    )
    status["conditions"].append(
        {
            "type": "Available",
            "status": "False",
            "reason": "MinimumReplicasUnavailable",
            "message": "Deployment does not have minimum availability.",
            "lastUpdateTime": _time(None),
            "lastTransitionTime": _time(None),
        }
    )
    return status


def job_status(
    obj: JsonObj, *, succeeded: bool, failed_pods: int = 0, at: datetime | None = None
) -> JsonObj:
    if succeeded:
        return {
            "succeeded": desired(obj),
            "completionTime": _time(at),
            "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": _time(at)}],
        }
    return {
        "failed": failed_pods,
        "conditions": [
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
                "lastTransitionTime": _time(at),
            }
        ],
    }


def progress_deadline_status(obj: JsonObj, *, updated: int = 0) -> JsonObj:
    status = rollout_status(obj, updated=updated, ready=0, available=0)
    status["conditions"] = [
        {
            "type": "Progressing",
            "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": f'ReplicaSet "{obj["metadata"]["name"]}-{template_hash(obj)}" has timed '
            "out progressing.",
            "lastUpdateTime": _time(None),
            "lastTransitionTime": _time(None),
        }
    ]
    return status


# --------------------------------------------------------------------------- pods


def container_status(
    name: str,
    *,
    image: str = "",
    ready: bool = True,
    restarts: int = 0,
    waiting: str | None = None,
    waiting_message: str = "",
    terminated: str | None = None,
    last_terminated: str | None = None,
    exit_code: int = 1,
) -> JsonObj:
    state: JsonObj
    if waiting:
        state = {"waiting": {"reason": waiting, "message": waiting_message}}
    elif terminated:
        state = {"terminated": {"reason": terminated, "exitCode": exit_code}}
    else:
        state = {"running": {"startedAt": "2026-11-29T10:00:00Z"}}
    status: JsonObj = {
        "name": name,
        "image": image,
        "ready": ready and not waiting and not terminated,
        "restartCount": restarts,
        "state": state,
        "lastState": {},
    }
    if last_terminated:
        status["lastState"] = {"terminated": {"reason": last_terminated, "exitCode": exit_code}}
    return status


def pod_for(
    obj: JsonObj,
    name: str,
    *,
    containers: list[JsonObj] | None = None,
    owner_uid: str | None = None,
    owner_kind: str = "ReplicaSet",
    phase: str = "Running",
) -> JsonObj:
    """A pod of ``obj``'s current template. ``containers`` defaults to one ready container."""
    template = obj["spec"]["template"]
    specs = template["spec"]["containers"]
    statuses = containers or [
        container_status(c["name"], image=c["image"], ready=True) for c in specs
    ]
    meta: JsonObj = {
        "name": name,
        "namespace": obj["metadata"].get("namespace", "default"),
        "labels": dict(template["metadata"].get("labels", {})),
        "annotations": dict(template["metadata"].get("annotations", {})),
    }
    uid = owner_uid or obj["metadata"].get("uid")
    if uid:
        meta["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": owner_kind, "name": name, "uid": uid}
        ]
    ready = all(s.get("ready") for s in statuses)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": copy.deepcopy(template["spec"]),
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": statuses,
        },
    }
