"""git-writer's own metrics, served on ``/metrics`` next to the runtime's."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

COMMITS = Counter("ferry_gitwriter_commits_total", "Commits pushed to the config repo", ["kind"])
PUSHES = Counter(
    "ferry_gitwriter_pushes_total",
    "Pushes to the config repo by outcome (ok, rejected, failed)",
    ["outcome"],
)
DUPLICATES = Counter(
    "ferry_gitwriter_duplicates_total",
    "Events already committed (found in a Ferry-Event-Id trailer): answered, not re-committed",
)
CYCLE_SECONDS = Histogram(
    "ferry_gitwriter_cycle_seconds",
    "One fetch-commit-push cycle for a batch",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BATCH_SIZE = Histogram(
    "ferry_gitwriter_batch_size",
    "Deliveries handled in one cycle",
    buckets=(1, 2, 5, 10, 25, 50, 100, 200, 500),
)
