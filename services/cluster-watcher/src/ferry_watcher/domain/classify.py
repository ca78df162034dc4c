"""Rollout classification: pure functions from a workload's or pod's JSON to what it means.

The rules follow ``kubectl rollout status``: a rollout is complete when the
controller has observed the current generation and every desired replica is
updated, ready and available (and no old replica is left); a Job is complete
or failed by its conditions. A Deployment also stays complete once its
controller said so (``Progressing`` with reason ``NewReplicaSetAvailable`` and
no old replica), even when its pods crash later: that is how a watcher started
later still knows the rollout finished. A pod's containers say why a rollout
cannot finish: crash loops, image pulls, configuration errors, the OOM killer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final

from ferry_watcher.domain.model import (
    ContainerFailure,
    Malformed,
    PodView,
    Progress,
    WorkloadRef,
    WorkloadView,
    integer,
    mapping,
    metadata,
    sequence,
    stamp_of,
    string_map,
    text,
    timestamp,
)

PROGRESSING: Final = Progress("progressing")
SUCCEEDED: Final = Progress("succeeded")

IMAGE_PULL_REASONS: Final = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName"})
CONFIG_REASONS: Final = frozenset({"CreateContainerConfigError", "CreateContainerError"})

#: Reasons that are the same fact seen at two moments (the first pull error, then the back-off).
REASON_FAMILY: Final = {
    "ErrImagePull": "ImagePull",
    "ImagePullBackOff": "ImagePull",
    "InvalidImageName": "ImagePull",
    "CreateContainerConfigError": "CreateContainer",
    "CreateContainerError": "CreateContainer",
}


def reason_family(reason: str) -> str:
    return REASON_FAMILY.get(reason, reason)


# --------------------------------------------------------------------------- workloads


def _conditions(status: Mapping[str, Any], where: str) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for i, cond in enumerate(sequence(status, "conditions", where)):
        if not isinstance(cond, Mapping):
            raise Malformed(f"{where}.conditions[{i}] should be an object")
        out[text(cond, "type", f"{where}.conditions[{i}]")] = cond
    return out


def _since(condition: Mapping[str, Any], where: str) -> datetime | None:
    """When a condition last changed (``lastUpdateTime``, else ``lastTransitionTime``)."""
    at = timestamp(condition, "lastUpdateTime", f"{where}.conditions")
    return at or timestamp(condition, "lastTransitionTime", f"{where}.conditions")


def _caught_up(meta: Mapping[str, Any], status: Mapping[str, Any], kind: str) -> bool:
    generation = integer(meta, "generation", f"{kind}.metadata")
    return integer(status, "observedGeneration", f"{kind}.status") >= generation


def deployment_progress(obj: Mapping[str, Any]) -> Progress:
    meta = mapping(obj, "metadata", "Deployment")
    spec = mapping(obj, "spec", "Deployment")
    status = mapping(obj, "status", "Deployment")
    where = "Deployment.status"
    desired = integer(spec, "replicas", "Deployment.spec", default=1)
    updated = integer(status, "updatedReplicas", where)
    ready = integer(status, "readyReplicas", where)
    available = integer(status, "availableReplicas", where)
    total = integer(status, "replicas", where)
    progressing = _conditions(status, where).get("Progressing")
    if not _caught_up(meta, status, "Deployment"):
        return PROGRESSING
    progressing = progressing or {}
    reason = text(progressing, "reason", where)
    if reason == "ProgressDeadlineExceeded":
        name = text(meta, "name", "Deployment.metadata")
        detail = text(progressing, "message", where)
        return Progress(
            "failed",
            "ProgressDeadlineExceeded",
            f"Deployment {name} did not finish rolling out within its progress deadline "
            f"({updated} of {desired} replicas updated, {available} available)"
            + (f": {detail}" if detail else ""),
            _since(progressing, where),
        )
    if reason == "NewReplicaSetAvailable" and total <= updated:
        # The controller found the rollout complete, and keeps saying so however the
        # replicas fare afterwards (until the next rollout): the rollout is over.
        return Progress("succeeded", finished_at=_since(progressing, where))
    if updated >= desired and ready >= desired and available >= desired and total <= updated:
        return SUCCEEDED
    return PROGRESSING


def statefulset_progress(obj: Mapping[str, Any]) -> Progress:
    meta = mapping(obj, "metadata", "StatefulSet")
    spec = mapping(obj, "spec", "StatefulSet")
    status = mapping(obj, "status", "StatefulSet")
    where = "StatefulSet.status"
    desired = integer(spec, "replicas", "StatefulSet.spec", default=1)
    ready = integer(status, "readyReplicas", where)
    updated = integer(status, "updatedReplicas", where)
    # availableReplicas is newer than readyReplicas; a server without it counts ready ones.
    available = integer(status, "availableReplicas", where, default=ready)
    if not _caught_up(meta, status, "StatefulSet"):
        return PROGRESSING
    update_revision = text(status, "updateRevision", where)
    current_revision = text(status, "currentRevision", where)
    if update_revision and current_revision and update_revision != current_revision:
        return PROGRESSING
    if updated >= desired and ready >= desired and available >= desired:
        return SUCCEEDED
    return PROGRESSING


def daemonset_progress(obj: Mapping[str, Any]) -> Progress:
    meta = mapping(obj, "metadata", "DaemonSet")
    status = mapping(obj, "status", "DaemonSet")
    where = "DaemonSet.status"
    desired = integer(status, "desiredNumberScheduled", where)
    updated = integer(status, "updatedNumberScheduled", where)
    ready = integer(status, "numberReady", where)
    available = integer(status, "numberAvailable", where)
    if not _caught_up(meta, status, "DaemonSet") or "desiredNumberScheduled" not in status:
        return PROGRESSING
    if updated >= desired and ready >= desired and available >= desired:
        return SUCCEEDED
    return PROGRESSING


def job_progress(obj: Mapping[str, Any]) -> Progress:
    meta = mapping(obj, "metadata", "Job")
    status = mapping(obj, "status", "Job")
    where = "Job.status"
    conditions = _conditions(status, where)
    complete = conditions.get("Complete")
    if complete is not None and text(complete, "status", where) == "True":
        finished = timestamp(status, "completionTime", where) or _since(complete, where)
        return Progress("succeeded", finished_at=finished)
    failed = conditions.get("Failed")
    if failed is not None and text(failed, "status", where) == "True":
        name = text(meta, "name", "Job.metadata")
        reason = text(failed, "reason", where) or "Failed"
        detail = text(failed, "message", where)
        failures = integer(status, "failed", where)
        return Progress(
            "failed",
            "JobFailed",
            f"Job {name} failed ({reason}) after {failures} failed pod(s)"
            + (f": {detail}" if detail else ""),
            _since(failed, where),
        )
    return PROGRESSING


PROGRESS = {
    "Deployment": deployment_progress,
    "StatefulSet": statefulset_progress,
    "DaemonSet": daemonset_progress,
    "Job": job_progress,
}


def parse_workload(kind: str, obj: Mapping[str, Any]) -> WorkloadView | None:
    """The watcher's view of a workload, or ``None`` if it does not carry Ferry's stamp.

    The stamp is read from the pod template (what the pods run), falling back to
    the workload's own metadata.
    """
    meta, namespace, name, uid = metadata(obj, kind)
    spec = mapping(obj, "spec", kind)
    template_meta = mapping(
        mapping(spec, "template", f"{kind}.spec"), "metadata", f"{kind}.spec.template"
    )
    own = string_map(meta, "annotations", f"{kind}.metadata")
    template = string_map(template_meta, "annotations", f"{kind}.spec.template.metadata")
    if not any(k.startswith("ferry.dev/") for k in own):
        return None
    stamp = stamp_of({**own, **template})
    if stamp is None:
        return None
    selector = string_map(
        mapping(spec, "selector", f"{kind}.spec"), "matchLabels", f"{kind}.spec.selector"
    )
    ref = WorkloadRef(kind, namespace, name, uid, integer(meta, "generation", f"{kind}.metadata"))
    return WorkloadView(ref, stamp, selector, PROGRESS[kind](obj))


# --------------------------------------------------------------------------- pods


def _container_failure(status: Mapping[str, Any], where: str) -> ContainerFailure | None:
    name = text(status, "name", where)
    restarts = integer(status, "restartCount", where)
    state = mapping(status, "state", where)
    last = mapping(mapping(status, "lastState", where), "terminated", f"{where}.lastState")
    waiting = mapping(state, "waiting", f"{where}.state")
    terminated = mapping(state, "terminated", f"{where}.state")
    waiting_reason = text(waiting, "reason", f"{where}.state.waiting")
    waiting_message = text(waiting, "message", f"{where}.state.waiting")
    for term in (terminated, last):
        if text(term, "reason", f"{where}.terminated") == "OOMKilled":
            return ContainerFailure(
                "OOMKilled",
                f"container {name} was killed for using more memory than its limit "
                f"(OOMKilled, exit code {integer(term, 'exitCode', where, default=137)}, "
                f"{restarts} restart(s))",
                name,
                restarts,
                wants_logs=True,
            )
    if waiting_reason == "CrashLoopBackOff":
        exit_code = integer(last, "exitCode", f"{where}.lastState.terminated", default=-1)
        exited = f"exit code {exit_code}, " if exit_code >= 0 else ""
        return ContainerFailure(
            "CrashLoopBackOff",
            f"container {name} keeps crashing ({exited}{restarts} restart(s))",
            name,
            restarts,
            wants_logs=True,
        )
    if waiting_reason in IMAGE_PULL_REASONS:
        return ContainerFailure(
            waiting_reason,
            f"container {name} cannot pull its image {text(status, 'image', where)!r} "
            f"({waiting_reason})" + (f": {waiting_message}" if waiting_message else ""),
            name,
            restarts,
            wants_logs=False,
        )
    if waiting_reason in CONFIG_REASONS:
        return ContainerFailure(
            waiting_reason,
            f"container {name} cannot be created ({waiting_reason})"
            + (f": {waiting_message}" if waiting_message else ""),
            name,
            restarts,
            wants_logs=False,
        )
    return None


def pod_failure(obj: Mapping[str, Any]) -> ContainerFailure | None:
    """The first container (init containers first) that cannot run, if any."""
    status = mapping(obj, "status", "Pod")
    for field in ("initContainerStatuses", "containerStatuses"):
        for i, cs in enumerate(sequence(status, field, "Pod.status")):
            where = f"Pod.status.{field}[{i}]"
            if not isinstance(cs, Mapping):
                raise Malformed(f"{where} should be an object")
            failure = _container_failure(cs, where)
            if failure is not None:
                return failure
    return None


def parse_pod(obj: Mapping[str, Any]) -> PodView | None:
    """The watcher's view of a pod, or ``None`` if it does not carry Ferry's stamp."""
    meta, namespace, name, uid = metadata(obj, "Pod")
    stamp = stamp_of(string_map(meta, "annotations", "Pod.metadata"))
    if stamp is None:
        return None
    owners: set[str] = set()
    for i, ref in enumerate(sequence(meta, "ownerReferences", "Pod.metadata")):
        if not isinstance(ref, Mapping):
            raise Malformed(f"Pod.metadata.ownerReferences[{i}] should be an object")
        owners.add(text(ref, "uid", f"Pod.metadata.ownerReferences[{i}]"))
    return PodView(
        namespace=namespace,
        name=name,
        uid=uid,
        stamp=stamp,
        labels=string_map(meta, "labels", "Pod.metadata"),
        owner_uids=frozenset(owners),
        failure=pod_failure(obj),
    )


# --------------------------------------------------------------------------- logs


def reduce_log_lines(lines: Iterable[str], limit: int = 20) -> list[str]:
    """The last ``limit`` non-empty log lines; a JSON line is reduced to its message."""
    out: list[str] = []
    for raw in lines:
        line = raw.rstrip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                parsed = json.loads(line)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                for key in ("message", "msg"):
                    value = parsed.get(key)
                    if isinstance(value, str) and value:
                        line = value
                        break
        out.append(line)
    return out[-limit:] if limit > 0 else []
