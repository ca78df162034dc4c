"""The watcher's decisions: pure functions and an in-memory tracker over plain dicts. No I/O."""

from ferry_watcher.domain.classify import (
    parse_pod,
    parse_workload,
    pod_failure,
    reason_family,
    reduce_log_lines,
)
from ferry_watcher.domain.model import (
    KINDS,
    WORKLOAD_KINDS,
    ContainerFailure,
    Malformed,
    PodView,
    Progress,
    Stamp,
    WorkloadRef,
    WorkloadView,
)
from ferry_watcher.domain.scope import EnvironmentScope
from ferry_watcher.domain.tracker import Fact, LogSource, RolloutTracker, fact_id

__all__ = [
    "KINDS",
    "WORKLOAD_KINDS",
    "ContainerFailure",
    "EnvironmentScope",
    "Fact",
    "LogSource",
    "Malformed",
    "PodView",
    "Progress",
    "RolloutTracker",
    "Stamp",
    "WorkloadRef",
    "WorkloadView",
    "fact_id",
    "parse_pod",
    "parse_workload",
    "pod_failure",
    "reason_family",
    "reduce_log_lines",
]
