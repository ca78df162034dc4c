"""The watcher's own Prometheus metrics, next to the runtime's on ``/metrics``."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge

FACTS: Final = Counter(
    "ferry_watcher_facts_total", "Rollout facts reported, by outcome.", ["outcome"]
)
WATCH_RESTARTS: Final = Counter(
    "ferry_watcher_watch_restarts_total",
    "Watches restarted, by kind and cause (ended, gone, silent, error).",
    ["kind", "cause"],
)
FOREIGN_FACTS: Final = Counter(
    "ferry_watcher_foreign_facts_total",
    "Rollout facts dropped: the workload names an environment this cluster does not run "
    "(FERRY_CLUSTER_ENVIRONMENTS), by outcome.",
    ["outcome"],
)
SKIPPED: Final = Counter(
    "ferry_watcher_malformed_total", "Objects or lines from the API skipped as malformed.", ["kind"]
)
TRACKED: Final = Gauge("ferry_watcher_tracked", "Ferry objects in the watcher's cache.", ["what"])
PENDING: Final = Gauge("ferry_watcher_pending_reports", "Facts waiting to be published.")
