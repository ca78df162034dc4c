"""Soak and verification (issue 14, item 4) as pure decisions: when a soak makes a request
wait and until when, when a failure ends it, which requests a check gates, and how samples
are judged (never a pass without data)."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
import yaml

from ferry_events import Intent
from ferry_promotion.domain.decision import Outcome, RolloutState, evaluate
from ferry_promotion.domain.verification import Measurement, Samples, judge

from .test_policy_domain import NOW, candidate, facts, policy

SOAK = "promotionChain: {environments: [prod], soak: 30m}\n"
CHECK = (
    "verification:\n  - environment: staging\n"
    "    prometheus: {query: 'rate(errors[1m])', max: 0.01, for: 10m}\n"
)


def test_a_soak_waits_until_it_ends_then_lets_the_request_through() -> None:
    rules = policy(SOAK)
    rolled_out = NOW - timedelta(minutes=10)
    soaking = evaluate(
        candidate(),
        rules,
        facts(previous_rollout=RolloutState.SUCCEEDED, previous_succeeded_at=rolled_out),
    )
    assert soaking.outcome is Outcome.WAIT_FOR_ROLLOUT
    assert soaking.due_at == rolled_out + timedelta(minutes=30)
    assert "soaks in staging until 2026-11-27 14:20:00 UTC (30m" in soaking.detail
    soaked = evaluate(
        candidate(),
        rules,
        facts(
            now=rolled_out + timedelta(minutes=30),
            previous_rollout=RolloutState.SUCCEEDED,
            previous_succeeded_at=rolled_out,
        ),
    )
    assert soaked.outcome is Outcome.APPROVE
    # a rollback is no promotion: no chain, no soak
    back = evaluate(candidate(intent=Intent.ROLLBACK), rules, facts())
    assert back.outcome is Outcome.APPROVE


def test_a_failure_in_the_environment_before_during_the_soak_rejects() -> None:
    rolled_out = NOW - timedelta(minutes=10)
    verdict = evaluate(
        candidate(),
        policy(SOAK),
        facts(
            previous_rollout=RolloutState.SUCCEEDED,
            previous_rollout_reason="CrashLoopBackOff: back-off",
            previous_succeeded_at=rolled_out,
            previous_failed_at=rolled_out + timedelta(minutes=5),
        ),
    )
    assert verdict.outcome is Outcome.REJECT
    [violation] = verdict.violations
    assert violation.policy == "soak"
    assert "failed in staging at 2026-11-27 13:55:00 UTC: CrashLoopBackOff" in violation.message
    # a failure before the success (an earlier attempt) does not count against the soak
    earlier = evaluate(
        candidate(),
        policy(SOAK),
        facts(
            now=rolled_out + timedelta(hours=1),
            previous_rollout=RolloutState.SUCCEEDED,
            previous_succeeded_at=rolled_out,
            previous_failed_at=rolled_out - timedelta(minutes=1),
        ),
    )
    assert earlier.outcome is Outcome.APPROVE


def test_a_check_is_measured_only_once_everything_else_passes() -> None:
    freeze = "{environment: prod, weekly: {days: [fri], start: '00:00', end: '23:59'}}"
    rules = policy(CHECK + f"freezeWindows: [{freeze}]\n")
    frozen = evaluate(candidate(), rules, facts())
    assert frozen.outcome is Outcome.REJECT  # no point asking Prometheus
    rules = policy(CHECK)
    verdict = evaluate(candidate(), rules, facts())
    assert verdict.outcome is Outcome.MEASURE
    assert verdict.verification is not None
    assert verdict.verification.environment == "staging"
    # what is promoted out of staging: a promote from there, a release to the one after it
    assert (
        evaluate(candidate(intent=Intent.PROMOTE, promoted_from="staging"), rules, facts()).outcome
        is Outcome.MEASURE
    )
    for untouched in (
        candidate(intent=Intent.ROLLBACK),
        candidate(environment="staging"),
        candidate(environment="staging", intent=Intent.PROMOTE, promoted_from="dev"),
    ):
        assert evaluate(untouched, rules, facts()).outcome is Outcome.APPROVE


def test_a_failed_measurement_rejects_with_its_value_and_a_kept_one_is_noted() -> None:
    rules = policy(CHECK)
    failed = Measurement("staging", False, "'rate(errors[1m])' ... reached 0.5", 0.5)
    verdict = evaluate(candidate(), rules, facts(measured=failed))
    assert verdict.outcome is Outcome.REJECT
    assert [(v.policy, v.message) for v in verdict.violations] == [("verification", failed.message)]
    kept = Measurement("staging", True, "stayed at most 0.01", 0.001)
    passed = evaluate(candidate(), rules, facts(measured=kept))
    assert passed.outcome is Outcome.APPROVE
    assert passed.notes == ("verification passed: stayed at most 0.01",)


@pytest.mark.parametrize(
    ("bounds", "samples", "passed", "words", "value"),
    [
        ("max: 0.01", Samples((0.001, 0.002), 1), True, "stayed at most 0.01", 0.002),
        (
            "max: 0.01",
            Samples((0.001, 0.5, 0.002), 1),
            False,
            "reached 0.5; it must stay at most 0.01",
            0.5,
        ),
        ("min: 0.9", Samples((0.95, 0.7), 2), False, "fell to 0.7; it must stay at least 0.9", 0.7),
        ("min: 0.9, max: 1", Samples((0.95, 1.0), 1), True, "at least 0.9 and at most 1", 1.0),
        ("max: 1", Samples(()), False, "returned no data", None),
        (
            "max: 1",
            Samples(error="Prometheus is unreachable (ClientConnectorError)"),
            False,
            "could not evaluate",
            None,
        ),
        ("max: 1", Samples((0.1, math.nan), 1), False, "NaN", math.nan),
    ],
)
def test_samples_are_judged_against_every_bound(bounds, samples, passed, words, value) -> None:
    rules = policy(
        "verification:\n  - environment: staging\n"
        f"    prometheus: {{query: 'up', {bounds}, for: 90s}}\n"
    )
    rule = rules.verification_of("staging")
    assert rule is not None
    measured = judge(rule, samples)
    assert measured.passed is passed
    assert words in measured.message
    assert "'up' over the last 90s in staging" in measured.message
    if value is None or not math.isnan(value):
        assert measured.value == value
    else:
        assert measured.value is not None
        assert math.isnan(measured.value)


def test_the_new_keys_survive_a_round_trip_through_the_api_document() -> None:
    parsed = policy(SOAK.replace("[prod]", "[staging, prod]") + CHECK)
    document = parsed.to_document()
    assert document["promotionChain"]["soak"] == 1800
    assert document["verification"][0]["prometheus"] == {
        "query": "rate(errors[1m])",
        "max": 0.01,
        "for": 600,
    }
    assert policy(yaml.safe_dump(document)) == parsed
