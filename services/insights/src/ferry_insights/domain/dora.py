"""The four DORA keys over one environment and one window, from plain facts.

The definitions (docs/insights.md says the same for people):

- A **deployment** is the first ``rollout.succeeded`` or ``rollout.failed`` of an artifact in
  the environment (:class:`~ferry_insights.domain.facts.Deployment`); it happened at that
  result's ``observedAt`` and belongs to the window that contains it.
- **Lead time for changes** of a deployment: from the change's time (``committedAt``, else
  ``ci.start``) to the first ``rollout.succeeded`` of the artifact there. A deployment with no
  success, or whose change time is unknown, or later than the success, has none.
- A deployment **failed** when its first result was ``rollout.failed``, or when a rollback of
  the service in that environment was requested after it and before any other deployment of
  the service there. **Change failure rate** = failed deployments / deployments.
- **Time to restore** of a failed deployment: from its failure (the failure's ``observedAt``, or
  the rollback request's ``time`` when it was rolled back after a successful rollout) to the
  next ``rollout.succeeded`` of the service in that environment. Unrestored: none.
- The answer is what was known at the window's end: no fact observed later counts.
- A filter (a service, a squad) chooses the deployments counted; the other deployments of the
  environment still count as "another deployment" for a rollback.
- Medians of an even count are the mean of the middle two; ``p90`` is the nearest-rank
  percentile (the ``ceil(0.9 n)``-th smallest value).
- The weekly series splits the window into 7-day buckets from its start (the last one may be
  shorter); a deployment's numbers count in the bucket of its deployment time.
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ferry_insights.domain.facts import Change, Deployment, RollbackRequest, RolloutResult

WEEK = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Window:
    """``[start, end)``: the deployments counted, and what was known at ``end``."""

    start: datetime
    end: datetime

    @classmethod
    def days_before(cls, end: datetime, days: int) -> Window:
        return cls(end - timedelta(days=days), end)

    @property
    def days(self) -> float:
        return (self.end - self.start) / timedelta(days=1)

    def weeks(self) -> list[Window]:
        buckets: list[Window] = []
        start = self.start
        while start < self.end:
            buckets.append(Window(start, min(start + WEEK, self.end)))
            start += WEEK
        return buckets


@dataclass(frozen=True, slots=True)
class Classified:
    """One deployment with its DORA numbers."""

    deployment: Deployment
    failed: bool
    lead_time: float | None
    restore: float | None
    failed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Keys:
    """The four keys over some deployments (None: no data)."""

    deployments: int
    deployments_per_day: float | None
    lead_time_median: float | None
    lead_time_p90: float | None
    change_failure_rate: float | None
    time_to_restore_median: float | None
    failed: int = 0
    unrestored: int = 0


@dataclass(frozen=True, slots=True)
class Report:
    window: Window
    keys: Keys
    weeks: list[tuple[Window, Keys]]


def median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def nearest_rank(values: Sequence[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def classify(
    deployments: Iterable[Deployment],
    changes: Mapping[tuple[str, str], Change],
    rollbacks: Iterable[RollbackRequest],
    successes: Iterable[RolloutResult],
    window: Window,
) -> list[Classified]:
    """Each deployment in the window with its failure, lead time and time to restore.

    ``successes`` are the ``rollout.succeeded`` results of the environment (any artifact),
    ``rollbacks`` its rollback requests; facts after the window's end are ignored.
    """
    counted = sorted(
        (d for d in deployments if window.start <= d.at < window.end),
        key=lambda d: (d.at, d.event_id),
    )
    by_service: dict[str, list[datetime]] = defaultdict(list)
    for deployment in counted:
        by_service[deployment.service].append(deployment.at)
    rollback_times: dict[str, list[datetime]] = defaultdict(list)
    for rollback in rollbacks:
        if rollback.requested_at < window.end:
            rollback_times[rollback.service].append(rollback.requested_at)
    success_times: dict[str, list[datetime]] = defaultdict(list)
    for success in successes:
        if success.observed_at < window.end:
            success_times[success.service].append(success.observed_at)
    for times in (*rollback_times.values(), *success_times.values()):
        times.sort()

    out: list[Classified] = []
    for deployment in counted:
        failed_at: datetime | None = deployment.at if deployment.failed_rollout else None
        if failed_at is None:
            failed_at = _rolled_back_at(
                deployment.at, by_service[deployment.service], rollback_times[deployment.service]
            )
        restore: float | None = None
        if failed_at is not None:
            restored_at = _first_after(success_times[deployment.service], failed_at)
            if restored_at is not None:
                restore = (restored_at - failed_at).total_seconds()
        out.append(
            Classified(
                deployment=deployment,
                failed=failed_at is not None,
                lead_time=_lead_time(deployment, changes, window),
                restore=restore,
                failed_at=failed_at,
            )
        )
    return out


def _lead_time(
    deployment: Deployment, changes: Mapping[tuple[str, str], Change], window: Window
) -> float | None:
    succeeded_at = deployment.succeeded_at
    if succeeded_at is None or succeeded_at >= window.end:
        return None
    change = changes.get((deployment.service, deployment.artifact_id))
    changed_at = change.changed_at if change else None
    if changed_at is None or changed_at > succeeded_at:
        return None
    return (succeeded_at - changed_at).total_seconds()


def _first_after(ordered: Sequence[datetime], moment: datetime) -> datetime | None:
    index = bisect_right(ordered, moment)
    return ordered[index] if index < len(ordered) else None


def _rolled_back_at(
    at: datetime, deployments: Sequence[datetime], rollbacks: Sequence[datetime]
) -> datetime | None:
    """The first rollback after ``at``, unless another deployment came in between."""
    rollback = _first_after(rollbacks, at)
    if rollback is None:
        return None
    following = _first_after(deployments, at)
    if following is not None and following < rollback:
        return None
    return rollback


def summarise(classified: Sequence[Classified], days: float) -> Keys:
    count = len(classified)
    leads = [c.lead_time for c in classified if c.lead_time is not None]
    failed = [c for c in classified if c.failed]
    restores = [c.restore for c in failed if c.restore is not None]
    return Keys(
        deployments=count,
        deployments_per_day=count / days if days > 0 else None,
        lead_time_median=median(leads),
        lead_time_p90=nearest_rank(leads, 0.9),
        change_failure_rate=len(failed) / count if count else None,
        time_to_restore_median=median(restores),
        failed=len(failed),
        unrestored=len(failed) - len(restores),
    )


def report(
    deployments: Iterable[Deployment],
    changes: Mapping[tuple[str, str], Change],
    rollbacks: Iterable[RollbackRequest],
    successes: Iterable[RolloutResult],
    window: Window,
    *,
    counted: Callable[[Deployment], bool] | None = None,
) -> Report:
    """The keys over the deployments ``counted`` chooses (a service, a squad: every one when
    None). Whether a deployment failed is decided among every deployment of the environment:
    a filter never changes it."""
    classified = classify(deployments, changes, rollbacks, successes, window)
    if counted is not None:
        classified = [c for c in classified if counted(c.deployment)]
    weeks = []
    for week in window.weeks():
        inside = [c for c in classified if week.start <= c.deployment.at < week.end]
        weeks.append((week, summarise(inside, week.days)))
    return Report(window=window, keys=summarise(classified, window.days), weeks=weeks)
