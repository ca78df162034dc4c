"""From a fact to the event that reports it: a rollout fact, or a workload degraded."""

from __future__ import annotations

from datetime import datetime

from ferry_events import (
    CloudEvent,
    RolloutFact,
    RolloutFailed,
    RolloutStarted,
    RolloutSucceeded,
    Workload,
    WorkloadDegraded,
)
from ferry_watcher.domain.tracker import Fact

SOURCE = "ferry/cluster-watcher"


def event_data(fact: Fact, *, cluster: str, observed_at: datetime, logs: list[str]) -> RolloutFact:
    common = {
        "cluster": cluster,
        "environment": fact.stamp.environment,
        "namespace": fact.workload.namespace,
        "service": fact.stamp.service,
        "artifact_id": fact.stamp.artifact_id,
        "release_id": fact.stamp.release_id,
        "author": fact.stamp.author,
        "workload": Workload(
            kind=fact.workload.kind,
            name=fact.workload.name,
            uid=fact.workload.uid,
            generation=fact.workload.generation,
        ),
        "observed_at": observed_at,
    }
    if fact.outcome == "started":
        return RolloutStarted.model_validate(common)
    if fact.outcome == "succeeded":
        return RolloutSucceeded.model_validate(common)
    model = WorkloadDegraded if fact.outcome == "degraded" else RolloutFailed
    return model.model_validate(
        {
            **common,
            "reason": fact.reason,
            "message": fact.message,
            "container": fact.container,
            "logs": logs,
            "restarts": fact.restarts,
        }
    )


def to_event(fact: Fact, *, cluster: str, observed_at: datetime, logs: list[str]) -> CloudEvent:
    """The envelope: its id is the fact's (derived), its correlation the release's."""
    data = event_data(fact, cluster=cluster, observed_at=observed_at, logs=logs)
    return CloudEvent.new(
        data,
        source=SOURCE,
        event_id=fact.event_id,
        correlation_id=fact.stamp.release_id or fact.stamp.artifact_id,
        time=observed_at,
    )
