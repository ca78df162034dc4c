"""The pure parts of a preview: the folder diff and the list of policy verdicts."""

from __future__ import annotations

import dataclasses
import difflib
from datetime import UTC, datetime

from ferry_events import Intent, PolicyViolation
from ferry_promotion.domain.decision import (
    Candidate,
    Facts,
    Outcome,
    Person,
    RolloutState,
    Verdict,
    evaluate,
)
from ferry_promotion.domain.environments import DEFAULT_ENVIRONMENTS
from ferry_promotion.domain.policies import EMPTY_POLICY, parse_policy
from ferry_promotion.domain.preview import (
    Change,
    Check,
    CheckVerdict,
    checks,
    folder_diff,
    unified_diff,
)


def test_added_removed_and_changed_files_each_with_a_unified_diff() -> None:
    before = {"a/same.yaml": b"x\n", "a/old.yaml": b"gone\n", "a/edit.yaml": b"one\ntwo\n"}
    after = {"a/same.yaml": b"x\n", "a/new.yaml": b"fresh\n", "a/edit.yaml": b"one\n2\n"}
    changes = folder_diff(before, after)
    assert [(c.path, c.change) for c in changes] == [
        ("a/edit.yaml", Change.CHANGED),
        ("a/new.yaml", Change.ADDED),
        ("a/old.yaml", Change.REMOVED),
    ]
    edit, new, old = changes
    assert edit.diff == ("--- a/a/edit.yaml\n+++ b/a/edit.yaml\n@@ -1,2 +1,2 @@\n one\n-two\n+2\n")
    assert new.diff == "--- /dev/null\n+++ b/a/new.yaml\n@@ -0,0 +1 @@\n+fresh\n"
    assert old.diff == "--- a/a/old.yaml\n+++ /dev/null\n@@ -1 +0,0 @@\n-gone\n"
    assert unified_diff(changes) == edit.diff + new.diff + old.diff


def test_the_diff_is_difflib_s_with_git_s_paths_and_no_change_is_no_entry() -> None:
    old = "".join(f"line {n}\n" for n in range(40)).encode()
    new = old.replace(b"line 3\n", b"line three\n").replace(b"line 30\n", b"")
    [change] = folder_diff({"f": old}, {"f": new})
    expected = "".join(
        difflib.unified_diff(
            old.decode().splitlines(keepends=True),
            new.decode().splitlines(keepends=True),
            "a/f",
            "b/f",
        )
    )
    assert change.diff == expected
    assert change.diff.count("@@ -") == 2  # two hunks, three lines of context each
    assert folder_diff({"f": old}, {"f": old}) == []
    assert folder_diff({}, {}) == []


def test_a_missing_final_newline_is_marked_and_binary_files_are_not_diffed() -> None:
    [change] = folder_diff({"f": b"a\nb"}, {"f": b"a\nc"})
    assert change.diff.endswith(
        "-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n"
    )
    [binary] = folder_diff({"img": b"\x89PNG\x00\x01"}, {"img": b"\x89PNG\x00\x02"})
    assert binary.binary
    assert binary.diff == "Binary files a/img and b/img differ\n"
    [added] = folder_diff({}, {"raw": b"\xff\xfe"})
    assert added.diff == "Binary files /dev/null and b/raw differ\n"


def _candidate(**extra: object) -> Candidate:
    values: dict[str, object] = {
        "service": "payments",
        "environment": "prod",
        "intent": Intent.RELEASE,
        "artifact_id": "feature-1",
        "branch": "feature",
        "author_email": "ann@example.com",
        "requester": Person("bob", "bob@example.com"),
    }
    values.update(extra)
    return Candidate(**values)  # type: ignore[arg-type]


POLICY = parse_policy(
    "branchRestrictions:\n  - environment: prod\n    branchRegex: master\n"
    "promotionChain:\n  environments: [prod]\n"
    "approvals:\n  - environment: prod\n    required: 2\n",
    "payments",
)
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def _by_policy(found: list[Check]) -> dict[str, CheckVerdict]:
    return {c.policy: c.verdict for c in found}


def test_every_applicable_policy_gets_the_verdict_the_decision_gave() -> None:
    candidate = _candidate()
    facts = Facts(now=NOW, environments=DEFAULT_ENVIRONMENTS)
    verdict = evaluate(candidate, POLICY, facts)
    assert verdict.outcome is Outcome.REJECT
    found = checks(candidate, POLICY, facts, verdict)
    assert _by_policy(found) == {
        "environment": CheckVerdict.PASSED,
        "halted": CheckVerdict.PASSED,
        "rejected-artifact": CheckVerdict.PASSED,
        "policy-invalid": CheckVerdict.PASSED,
        "authorization": CheckVerdict.PASSED,
        "already-running": CheckVerdict.PASSED,
        "branch-restriction": CheckVerdict.FAILED,
        "promotion-chain": CheckVerdict.FAILED,
        "approvals": CheckVerdict.NEEDS_APPROVAL,
    }
    failed = {c.message for c in found if c.verdict is CheckVerdict.FAILED}
    assert failed == {v.message for v in verdict.violations}

    on_master = _candidate(branch="master", artifact_id="master-1")
    waiting = Facts(
        now=NOW, environments=DEFAULT_ENVIRONMENTS, previous_rollout=RolloutState.IN_PROGRESS
    )
    verdict = evaluate(on_master, POLICY, waiting)
    assert verdict.outcome is Outcome.WAIT_FOR_ROLLOUT
    assert _by_policy(checks(on_master, POLICY, waiting, verdict))["promotion-chain"] == (
        CheckVerdict.WAITING
    )
    rolled = Facts(
        now=NOW, environments=DEFAULT_ENVIRONMENTS, previous_rollout=RolloutState.SUCCEEDED
    )
    verdict = evaluate(on_master, POLICY, rolled)
    assert verdict.outcome is Outcome.AWAIT_APPROVAL
    [approvals] = [c for c in checks(on_master, POLICY, rolled, verdict) if c.policy == "approvals"]
    assert approvals.verdict is CheckVerdict.NEEDS_APPROVAL
    assert "needs 2 approval(s)" in approvals.message


def test_already_running_alone_a_rollback_without_halt_and_unknown_rules_listed() -> None:
    facts = Facts(now=NOW, environments=DEFAULT_ENVIRONMENTS, running_artifact="feature-1")
    candidate = _candidate()
    verdict = evaluate(candidate, POLICY, facts)
    assert [c.policy for c in checks(candidate, POLICY, facts, verdict)] == ["already-running"]

    back = _candidate(intent=Intent.ROLLBACK)
    plain = Facts(now=NOW, environments=DEFAULT_ENVIRONMENTS)
    names = [
        c.policy for c in checks(back, EMPTY_POLICY, plain, evaluate(back, EMPTY_POLICY, plain))
    ]
    assert names == ["environment", "policy-invalid", "authorization", "already-running"]

    novel = Verdict(Outcome.REJECT, (PolicyViolation(policy="verification", message="0.2 > 0.01"),))
    listed = checks(back, EMPTY_POLICY, plain, novel)
    assert listed[-1] == Check("verification", CheckVerdict.FAILED, "0.2 > 0.01")


def test_a_soak_and_a_verification_get_their_verdicts() -> None:
    from datetime import timedelta

    from ferry_promotion.domain.verification import Measurement

    policy = parse_policy(
        "promotionChain:\n  environments: [prod]\n  soak: 30m\n"
        "verification:\n  - environment: staging\n    prometheus:\n"
        "      query: 'errors'\n      max: 0.01\n      for: 10m\n",
        "payments",
    )
    candidate = _candidate(branch="master", artifact_id="master-1", promoted_from="staging")
    soaking = Facts(
        now=NOW,
        environments=DEFAULT_ENVIRONMENTS,
        previous_rollout=RolloutState.SUCCEEDED,
        previous_succeeded_at=NOW - timedelta(minutes=10),
        measured=Measurement("staging", True, "errors 0.001 <= 0.01"),
    )
    verdict = evaluate(candidate, policy, soaking)
    assert verdict.outcome is Outcome.WAIT_FOR_ROLLOUT
    found = {c.policy: c for c in checks(candidate, policy, soaking, verdict)}
    assert found["promotion-chain"].verdict is CheckVerdict.PASSED
    assert found["soak"].verdict is CheckVerdict.WAITING
    assert "soaks in staging until" in found["soak"].message
    assert found["soak"].message == verdict.detail

    soaked = dataclasses.replace(
        soaking,
        previous_succeeded_at=NOW - timedelta(hours=1),
        measured=Measurement("staging", False, "errors 0.2 > 0.01", 0.2),
    )
    verdict = evaluate(candidate, policy, soaked)
    assert verdict.outcome is Outcome.REJECT
    found = {c.policy: c for c in checks(candidate, policy, soaked, verdict)}
    assert (found["soak"].verdict, found["verification"].verdict) == (
        CheckVerdict.PASSED,
        CheckVerdict.FAILED,
    )
    assert found["verification"].message == "errors 0.2 > 0.01"
    assert found["soak"].message == "the artifact ran in staging for 30 min first"
