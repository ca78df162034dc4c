"""The DORA definitions on small histories, each number computed by hand (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ferry_insights.domain.dora import Window, nearest_rank, report
from ferry_insights.domain.facts import (
    Change,
    Deployment,
    Outcome,
    RollbackRequest,
    RolloutResult,
    first_result,
)

T0 = datetime(2026, 11, 2, tzinfo=UTC)
WINDOW = Window(T0, T0 + timedelta(days=10))
H = timedelta(hours=1)


def deployment(artifact: str, at: datetime, *, failed: bool = False, ok: datetime | None = None):
    return Deployment("prod", "svc", artifact, at, failed, f"ev-{artifact}", ok)


def success(at: datetime, artifact: str = "x") -> RolloutResult:
    return RolloutResult(f"ok-{at:%d%H}", "prod", "svc", artifact, Outcome.SUCCEEDED, at)


def test_no_data_is_null_not_zero() -> None:
    found = report([], {}, [], [], WINDOW)
    keys = found.keys
    assert keys.deployments == 0
    assert keys.deployments_per_day == 0.0
    assert keys.lead_time_median is None
    assert keys.lead_time_p90 is None
    assert keys.change_failure_rate is None
    assert keys.time_to_restore_median is None
    assert [w.start for w, _ in found.weeks] == [T0, T0 + timedelta(days=7)]
    assert found.weeks[1][0].days == 3


def test_one_failure_unrestored() -> None:
    found = report([deployment("a", T0 + H, failed=True)], {}, [], [], WINDOW).keys
    assert (found.deployments, found.change_failure_rate) == (1, 1.0)
    assert found.time_to_restore_median is None
    assert (found.failed, found.unrestored) == (1, 1)
    assert found.lead_time_median is None  # it never succeeded


def test_lead_time_from_committed_at_else_ci_start() -> None:
    changes = {
        ("svc", "a"): Change("svc", "a", committed_at=T0, ci_start=T0 + H),
        ("svc", "b"): Change("svc", "b", ci_start=T0 + 2 * H),  # no committedAt
    }
    deployments = [
        deployment("a", T0 + 3 * H, ok=T0 + 3 * H),  # 3 h from committedAt
        deployment("b", T0 + 4 * H, ok=T0 + 5 * H),  # 3 h from ci.start to its success
    ]
    found = report(deployments, changes, [], [], WINDOW).keys
    assert found.lead_time_median == 3 * 3600
    assert found.change_failure_rate == 0.0


def test_a_rollback_fails_the_deployment_it_replaced_and_restores_at_the_next_success() -> None:
    deployments = [deployment("a", T0 + H, ok=T0 + H), deployment("b", T0 + 5 * H, ok=T0 + 5 * H)]
    rollbacks = [RollbackRequest("rb", "prod", "svc", "r1", T0 + 2 * H)]
    successes = [success(T0 + H, "a"), success(T0 + 2 * H + timedelta(minutes=15), "z")]
    found = report(deployments, {}, rollbacks, successes, WINDOW).keys
    assert (found.deployments, found.failed) == (2, 1)  # a was replaced; b came after
    assert found.change_failure_rate == 0.5
    assert found.time_to_restore_median == 900


def test_a_rollback_after_another_deployment_fails_only_the_latest() -> None:
    deployments = [deployment("a", T0 + H, ok=T0 + H), deployment("b", T0 + 2 * H, ok=T0 + 2 * H)]
    rollbacks = [RollbackRequest("rb", "prod", "svc", "r1", T0 + 3 * H)]
    classified = report(deployments, {}, rollbacks, [], WINDOW)
    assert classified.keys.failed == 1
    assert classified.keys.unrestored == 1


def test_facts_after_the_window_end_do_not_count() -> None:
    end = WINDOW.end
    deployments = [deployment("a", end - H, failed=True), deployment("b", end + H)]
    found = report(deployments, {}, [], [success(end + 2 * H)], WINDOW).keys
    assert found.deployments == 1
    assert found.time_to_restore_median is None


def test_nearest_rank_percentile() -> None:
    assert nearest_rank([5, 1, 4, 2, 3], 0.9) == 5
    assert nearest_rank(list(range(1, 21)), 0.9) == 18
    assert nearest_rank([7], 0.9) == 7
    assert nearest_rank([], 0.9) is None


def test_the_earliest_result_counts_in_any_arrival_order() -> None:
    late_ok = RolloutResult("e2", "prod", "svc", "a", Outcome.SUCCEEDED, T0 + 2 * H)
    early_fail = RolloutResult("e1", "prod", "svc", "a", Outcome.FAILED, T0 + H)
    tie_ok = RolloutResult("e0", "prod", "svc", "a", Outcome.SUCCEEDED, T0 + H)
    orders = [(late_ok, early_fail, tie_ok), (tie_ok, early_fail, late_ok), (early_fail, tie_ok)]
    results = set()
    for order in orders:
        current = None
        for result in order:
            current = first_result(current, result)
        assert current is not None
        results.add((current.at, current.failed_rollout, current.succeeded_at))
    # on a tie the failure counts; the first success is the earliest one
    assert results == {(T0 + H, True, T0 + H)}
