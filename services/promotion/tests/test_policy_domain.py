"""Policy parsing and evaluation: pure domain code, no broker, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ferry_events import Intent
from ferry_promotion.domain.decision import (
    ALREADY_RUNNING,
    Candidate,
    Facts,
    HistoryEntry,
    Outcome,
    Person,
    ResolutionError,
    RolloutState,
    approval_refusal,
    count_approvals,
    evaluate,
    rollback_target,
)
from ferry_promotion.domain.environments import DEFAULT_ENVIRONMENTS, parse_environments
from ferry_promotion.domain.policies import (
    EMPTY_POLICY,
    ApprovalRule,
    Policy,
    check_environments,
    parse_duration,
    parse_policy,
    policy_from_data,
)
from ferry_promotion.domain.yamldoc import DocumentError

NOW = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)  # a Friday, 15:00 in Copenhagen
ALICE = Person("alice", "alice@example.com")
BOB = Person("bob", "bob@example.com")
ANN = Person("ann", "ann@example.com")


def candidate(**overrides) -> Candidate:
    values = {
        "service": "payments",
        "environment": "prod",
        "intent": Intent.RELEASE,
        "artifact_id": "master-2",
        "branch": "master",
        "author_email": "ann@example.com",
        "requester": ALICE,
    }
    values.update(overrides)
    return Candidate(**values)


def facts(**overrides) -> Facts:
    values = {"now": NOW, "environments": DEFAULT_ENVIRONMENTS}
    values.update(overrides)
    return Facts(**values)


def policy(text: str) -> Policy:
    return parse_policy(text, "payments")


# --------------------------------------------------------------------------- parsing


def test_empty_policy_allows_everything() -> None:
    verdict = evaluate(candidate(), EMPTY_POLICY, facts())
    assert verdict.outcome is Outcome.APPROVE


def test_full_policy_parses() -> None:
    parsed = policy(
        """
autoRelease:
  - {branch: master, environment: dev}
branchRestrictions:
  - {environment: prod, branchRegex: "master|release/.*"}
promotionChain:
  environments: [staging, prod]
freezeWindows:
  - environment: prod
    timezone: Europe/Copenhagen
    weekly: {days: [fri], start: "15:00", end: "23:59"}
  - environment: prod
    timezone: UTC
    start: 2026-12-20T00:00:00
    end: 2027-01-02T00:00:00
    reason: christmas
approvals:
  - {environment: prod, required: 2, excludeAuthor: true, expiresAfter: 2h}
"""
    )
    assert parsed.auto_release_targets("master") == ["dev"]
    assert parsed.chained("prod")
    assert not parsed.chained("dev")
    rule = parsed.approval_rule("prod")
    assert rule is not None
    assert rule.required == 2
    assert rule.expires_after == timedelta(hours=2)
    document = parsed.to_document()
    assert document["approvals"][0]["expiresAfter"] == 7200
    assert policy_from_data(document, "payments", DEFAULT_ENVIRONMENTS) == parsed


#: The start of a verification rule, its check's keys to follow (from line 4).
V = "verification:\n  - environment: staging\n    prometheus:\n"


@pytest.mark.parametrize(
    ("text", "field", "line", "words"),
    [
        (
            "approvals:\n  - environment: prod\n    required: 0\n",
            "approvals[0].required",
            3,
            "greater",
        ),
        ("autoRelease:\n  - branch: master\n", "autoRelease[0].environment", 2, "required"),
        (
            "branchRestrictions:\n  - environment: prod\n    branchRegex: '(['\n",
            "branchRestrictions[0].branchRegex",
            3,
            "regular expression",
        ),
        (
            "freezeWindows:\n  - environment: prod\n    timezone: Mars/Olympus\n"
            "    weekly: {days: [mon], start: '1:00', end: '2:00'}\n",
            "freezeWindows[0].timezone",
            3,
            "time zone",
        ),
        (
            "freezeWindows:\n  - environment: prod\n"
            "    start: 2026-01-02T00:00:00\n    end: 2026-01-01T00:00:00\n",
            "freezeWindows[0]",
            2,
            "after start",
        ),
        ("freezeWindows:\n  - environment: prod\n", "freezeWindows[0]", 2, "weekly"),
        (
            "freezeWindows:\n  - environment: prod\n"
            "    weekly: {days: [someday], start: '1:00', end: '2:00'}\n",
            "freezeWindows[0].weekly.days[0]",
            3,
            "mon",
        ),
        ("aprovals: []\n", "aprovals", 1, "not permitted"),
        (
            "approvals:\n  - {environment: prod, expiresAfter: soon}\n",
            "approvals[0].expiresAfter",
            2,
            "duration",
        ),
        ("service: orders\n", "service", 1, "orders"),
        (
            "approvals: []\nrejectOnFailedRollout: 'true'\n",
            "rejectOnFailedRollout",
            2,
            "valid boolean",
        ),
        ("rejectOnFailedRollout: 1\n", "rejectOnFailedRollout", 1, "valid boolean"),
        (
            "promotionChain:\n  environments: [prod]\n  soak: soon\n",
            "promotionChain.soak",
            3,
            "duration",
        ),
        (
            "promotionChain:\n  environments: [prod]\n  soak: 0\n",
            "promotionChain.soak",
            3,
            "more than 0",
        ),
        (
            V + "      query: up\n      for: 10m\n",
            "verification[0].prometheus",
            3,
            "max, min or both",
        ),
        (
            V + "      query: up\n      max: 1\n      min: 2\n      for: 10m\n",
            "verification[0].prometheus",
            3,
            "above max",
        ),
        (
            V + "      query: up\n      max: .nan\n      for: 10m\n",
            "verification[0].prometheus.max",
            5,
            "finite",
        ),
        (
            V + "      query: up\n      max: 1\n      for: forever\n",
            "verification[0].prometheus.for",
            6,
            "duration",
        ),
        (
            V + "      query: '  '\n      max: 1\n      for: 1m\n",
            "verification[0].prometheus.query",
            4,
            "PromQL",
        ),
        (
            V + "      max: 1\n      for: 1m\n",
            "verification[0].prometheus.query",
            3,
            "required",
        ),
        (
            "verification:\n  - environment: Staging\n"
            "    prometheus: {query: up, max: 1, for: 1m}\n",
            "verification[0].environment",
            2,
            "DNS label",
        ),
        (
            "verification:\n  - {environment: staging, prometheus: {query: up, max: 1, for: 1m}}\n"
            "  - {environment: staging, prometheus: {query: up, min: 1, for: 1m}}\n",
            "verification",
            1,
            "twice",
        ),
        ("approvals: [\n", "", 2, "YAML"),
        ("- just\n- a list\n", "", 1, "mapping"),
    ],
)
def test_invalid_policy_names_field_line_and_reason(text, field, line, words) -> None:
    with pytest.raises(DocumentError) as caught:
        policy(text)
    problem = caught.value.problems[0]
    assert problem.field == field
    assert problem.line == line
    assert words in problem.message
    assert f"line {line}" in str(caught.value)


def test_reject_on_failed_rollout_is_off_unless_said_and_said_only_when_on() -> None:
    assert policy("approvals: []\n").reject_on_failed_rollout is False
    assert "rejectOnFailedRollout" not in policy("approvals: []\n").to_document()
    on = policy("rejectOnFailedRollout: true\n")
    assert on.reject_on_failed_rollout is True
    assert on.to_document()["rejectOnFailedRollout"] is True
    assert policy_from_data(on.to_document(), "payments", DEFAULT_ENVIRONMENTS) == on


def test_unknown_environment_is_a_problem_with_its_field() -> None:
    parsed = policy("approvals:\n  - environment: qa\npromotionChain: {environments: [dev]}\n")
    problems = check_environments(parsed, DEFAULT_ENVIRONMENTS)
    assert sorted(p.field for p in problems) == [
        "approvals[0].environment",
        "promotionChain.environments[0]",
    ]
    problems.sort(key=lambda p: p.field)
    assert "unknown environment 'qa'" in problems[0].message
    assert "first environment" in problems[1].message
    with pytest.raises(DocumentError):
        policy_from_data({"approvals": [{"environment": "qa"}]}, "payments", DEFAULT_ENVIRONMENTS)


@pytest.mark.parametrize(
    ("value", "seconds"), [(90, 90), ("30m", 1800), ("24h", 86400), ("2d", 172800), ("1h30m", 5400)]
)
def test_durations(value, seconds) -> None:
    assert parse_duration(value).total_seconds() == seconds


@pytest.mark.parametrize("value", [0, -5, "", "soon", True, "100d"])
def test_bad_durations(value) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_environments_file() -> None:
    envs = parse_environments(
        "environments:\n  - name: dev\n  - name: prod\n    namespace: apps\n    protected: true\n"
    )
    assert envs.names() == ["dev", "prod"]
    assert envs.previous("prod").name == "dev"
    assert envs.previous("dev") is None
    assert envs.namespace_for("prod", "", "payments") == "apps"
    assert envs.namespace_for("prod", "pay", "payments") == "pay"
    assert envs.namespace_for("dev", "", "payments") == "payments"
    assert parse_environments(None) == DEFAULT_ENVIRONMENTS
    with pytest.raises(DocumentError) as caught:
        parse_environments("environments:\n  - name: dev\n  - name: Dev_1\n")
    assert caught.value.problems[0].line == 3


# --------------------------------------------------------------------------- evaluation


def test_already_running_is_a_no_op_rejection() -> None:
    verdict = evaluate(candidate(), EMPTY_POLICY, facts(running_artifact="master-2"))
    assert verdict.outcome is Outcome.REJECT
    assert [v.policy for v in verdict.violations] == [ALREADY_RUNNING]


@pytest.mark.parametrize(
    ("branch", "allowed"),
    [("master", True), ("release/1.2", True), ("feature/x", False), ("", False)],
)
def test_branch_restriction(branch, allowed) -> None:
    rules = policy(
        "branchRestrictions:\n  - {environment: prod, branchRegex: 'master|release/.*'}\n"
    )
    verdict = evaluate(candidate(branch=branch), rules, facts())
    assert (verdict.outcome is Outcome.APPROVE) is allowed
    if not allowed:
        assert verdict.violations[0].policy == "branch-restriction"
        assert "master|release/.*" in verdict.violations[0].message
    other_env = evaluate(candidate(branch=branch, environment="dev"), rules, facts())
    assert other_env.outcome is Outcome.APPROVE


@pytest.mark.parametrize(
    ("state", "outcome"),
    [
        (RolloutState.SUCCEEDED, Outcome.APPROVE),
        (RolloutState.IN_PROGRESS, Outcome.WAIT_FOR_ROLLOUT),
        (RolloutState.FAILED, Outcome.REJECT),
        (RolloutState.NONE, Outcome.REJECT),
    ],
)
def test_promotion_chain(state, outcome) -> None:
    rules = policy("promotionChain: {environments: [prod]}\n")
    verdict = evaluate(
        candidate(),
        rules,
        facts(previous_rollout=state, previous_rollout_reason="CrashLoopBackOff"),
    )
    assert verdict.outcome is outcome
    if state is RolloutState.FAILED:
        assert "CrashLoopBackOff" in verdict.violations[0].message
    if state is RolloutState.NONE:
        assert "staging" in verdict.violations[0].message
    rollback = evaluate(candidate(intent=Intent.ROLLBACK), rules, facts(previous_rollout=state))
    assert rollback.outcome is Outcome.APPROVE


FRIDAY_FREEZE = """
freezeWindows:
  - environment: prod
    timezone: Europe/Copenhagen
    weekly: {days: [fri], start: "15:00", end: "23:59"}
    reason: weekend
"""


@pytest.mark.parametrize(
    ("moment", "frozen"),
    [
        (datetime(2026, 11, 27, 14, 0, tzinfo=UTC), True),  # Fri 15:00 CET
        (datetime(2026, 11, 27, 13, 59, tzinfo=UTC), False),  # Fri 14:59 CET
        (datetime(2026, 11, 27, 22, 58, tzinfo=UTC), True),  # Fri 23:58 CET
        (datetime(2026, 11, 28, 10, 0, tzinfo=UTC), False),  # Saturday
        (datetime(2026, 11, 26, 15, 0, tzinfo=UTC), False),  # Thursday
    ],
)
def test_weekly_freeze_in_its_time_zone(moment, frozen) -> None:
    verdict = evaluate(candidate(), policy(FRIDAY_FREEZE), facts(now=moment))
    assert (verdict.outcome is Outcome.REJECT) is frozen
    if frozen:
        assert verdict.violations[0].policy == "freeze-window"
        assert "weekend" in verdict.violations[0].message


def test_weekly_freeze_over_midnight() -> None:
    rules = policy(
        "freezeWindows:\n  - environment: prod\n"
        "    weekly: {days: [fri], start: '22:00', end: '06:00'}\n"
    )
    assert (
        evaluate(candidate(), rules, facts(now=datetime(2026, 11, 28, 5, 0, tzinfo=UTC))).outcome
        is Outcome.REJECT
    )
    assert (
        evaluate(candidate(), rules, facts(now=datetime(2026, 11, 28, 7, 0, tzinfo=UTC))).outcome
        is Outcome.APPROVE
    )


def test_absolute_freeze_and_admin_override() -> None:
    rules = policy(
        "freezeWindows:\n  - environment: prod\n    timezone: America/New_York\n"
        "    start: 2026-11-27T08:00:00\n    end: 2026-11-27T10:00:00\n"
    )
    assert evaluate(candidate(), rules, facts()).outcome is Outcome.REJECT  # 09:00 in New York
    after = facts(now=NOW + timedelta(hours=2))
    assert evaluate(candidate(), rules, after).outcome is Outcome.APPROVE
    admin = candidate(requester_is_admin=True, override_freeze=True, reason="hotfix")
    verdict = evaluate(admin, rules, facts())
    assert verdict.outcome is Outcome.APPROVE
    assert "freeze overridden" in verdict.notes[0]
    no_reason = evaluate(candidate(requester_is_admin=True, override_freeze=True), rules, facts())
    assert "needs a reason" in no_reason.violations[0].message
    not_admin = evaluate(candidate(override_freeze=True, reason="please"), rules, facts())
    assert "only an admin" in not_admin.violations[0].message


def test_approvals_needed_then_counted() -> None:
    rules = policy("approvals:\n  - {environment: prod, required: 2, excludeAuthor: true}\n")
    verdict = evaluate(candidate(), rules, facts())
    assert verdict.outcome is Outcome.AWAIT_APPROVAL
    assert verdict.approvals_missing == 2
    # the requester and the author do not count; duplicates do not count twice
    some = facts(approvers=(ALICE, ANN, BOB, Person("bob", "bob@example.com")))
    assert evaluate(candidate(), rules, some).approvals_missing == 1
    enough = facts(approvers=(BOB, Person("dave", "dave@example.com")))
    assert evaluate(candidate(), rules, enough).outcome is Outcome.APPROVE


def test_approval_refusals() -> None:
    rule = ApprovalRule(environment="prod", required=1, exclude_author=True)
    assert "requester" in approval_refusal(rule, ALICE, "ann@example.com", ALICE)
    assert "wrote the change" in approval_refusal(rule, ALICE, "ann@example.com", ANN)
    assert approval_refusal(rule, ALICE, "ann@example.com", BOB) is None
    lenient = ApprovalRule(environment="prod")
    assert approval_refusal(lenient, ALICE, "ann@example.com", ANN) is None
    assert count_approvals(lenient, ALICE, "", (ANN, BOB, ALICE)) == 2


def test_every_failed_policy_is_named() -> None:
    rules = policy(
        FRIDAY_FREEZE
        + "branchRestrictions:\n  - {environment: prod, branchRegex: master}\n"
        + "promotionChain: {environments: [prod]}\n"
        + "approvals:\n  - {environment: prod}\n"
    )
    verdict = evaluate(
        candidate(branch="feature", requester_authorized=False), rules, facts(policy_error=None)
    )
    assert verdict.outcome is Outcome.REJECT
    assert [v.policy for v in verdict.violations] == [
        "authorization",
        "branch-restriction",
        "promotion-chain",
        "freeze-window",
    ]


def test_invalid_policy_file_refuses_releases() -> None:
    verdict = evaluate(candidate(), EMPTY_POLICY, facts(policy_error="line 3: approvals: bad"))
    assert verdict.outcome is Outcome.REJECT
    assert verdict.violations[0].policy == "policy-invalid"


def test_auto_release_needs_a_rule() -> None:
    rules = policy("autoRelease:\n  - {branch: master, environment: dev}\n")
    ok = evaluate(candidate(intent=Intent.AUTO_RELEASE, environment="dev"), rules, facts())
    assert ok.outcome is Outcome.APPROVE
    denied = evaluate(candidate(intent=Intent.AUTO_RELEASE, environment="staging"), rules, facts())
    assert denied.violations[0].policy == "auto-release"


def test_unknown_environment() -> None:
    verdict = evaluate(candidate(environment="qa"), EMPTY_POLICY, facts())
    assert verdict.violations[0].policy == "environment"


# --------------------------------------------------------------------------- rollback targets


def _entry(artifact: str, minutes: int) -> HistoryEntry:
    return HistoryEntry(artifact, f"sha-{artifact}-{minutes}", NOW - timedelta(minutes=minutes))


HISTORY = [_entry("a3", 1), _entry("a3", 2), _entry("a2", 3), _entry("a1", 4)]


def test_rollback_to_previous() -> None:
    assert rollback_target(HISTORY, "a3", None, "prod").artifact_id == "a2"


def test_rollback_to_named() -> None:
    assert rollback_target(HISTORY, "a3", "a1", "prod").artifact_id == "a1"


@pytest.mark.parametrize(
    ("history", "running", "named", "policy_name", "words"),
    [
        (HISTORY, "a3", "a9", "rollback", "never released"),
        (HISTORY, "a3", "a3", ALREADY_RUNNING, "already runs"),
        ([], None, None, "rollback", "nothing has been released"),
        ([_entry("a1", 1)], "a1", None, "rollback", "only release"),
    ],
)
def test_rollback_refusals(history, running, named, policy_name, words) -> None:
    with pytest.raises(ResolutionError) as caught:
        rollback_target(history, running, named, "prod")
    assert caught.value.violation.policy == policy_name
    assert words in caught.value.violation.message


def test_unknown_environment_is_named_with_the_other_problems() -> None:
    document = {
        "service": "other",
        "approvals": [{"environment": "qa", "required": 0}],
        "autoRelease": [{"branch": "master", "environment": "preprod"}],
        "promotionChain": {"environments": ["uat"]},
        "freezeWindows": [{"environment": "prod", "timezone": "Mars/Olympus"}],
    }
    with pytest.raises(DocumentError) as caught:
        policy_from_data(document, "payments", DEFAULT_ENVIRONMENTS)
    found = {p.field: p.message for p in caught.value.problems}
    assert "unknown environment 'preprod'" in found["autoRelease[0].environment"]
    assert "unknown environment 'qa'" in found["approvals[0].environment"]
    assert "unknown environment 'uat'" in found["promotionChain.environments[0]"]
    assert "approvals[0].required" in found
    assert any(field.startswith("freezeWindows[0]") for field in found)
