"""Deciding a release request: plain functions over plain data.

The caller gathers the facts (the policy, the environments, what runs where,
rollout results, approvals granted so far, the clock) and :func:`evaluate`
says what to do: reject (naming every policy that failed and why), wait for a
rollout result or the end of a soak, measure first (a ``verification`` check), wait
for approvals, or approve.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from ferry_events import Intent, PolicyViolation
from ferry_promotion.domain.environments import Environments
from ferry_promotion.domain.policies import ApprovalRule, Policy, Verification
from ferry_promotion.domain.safety import Halt, Mark, safety_violations
from ferry_promotion.domain.verification import Measurement, gate


class Status(StrEnum):
    """The life of a release request (``scheduled`` until its time, when one was given)."""

    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"
    REQUESTED = "requested"
    AWAITING_APPROVAL = "awaiting-approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    COMMITTED = "committed"
    ROLLED_OUT = "rolled-out"
    FAILED = "failed"


class Outcome(StrEnum):
    REJECT = "reject"
    WAIT_FOR_ROLLOUT = "wait-for-rollout"
    AWAIT_APPROVAL = "await-approval"
    APPROVE = "approve"
    #: every policy passes but a ``verification`` check is not measured yet: measure, decide again
    MEASURE = "measure"


class RolloutState(StrEnum):
    """What is known about an artifact's rollout in one environment."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    IN_PROGRESS = "in-progress"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Person:
    subject: str
    email: str = ""

    def same_as(self, other: Person) -> bool:
        if self.subject and self.subject == other.subject:
            return True
        return bool(self.email) and self.email.lower() == other.email.lower()


@dataclass(frozen=True, slots=True)
class Candidate:
    """A release request with its target artifact resolved."""

    service: str
    environment: str
    intent: Intent
    artifact_id: str
    branch: str
    author_email: str
    requester: Person
    requester_authorized: bool = True
    requester_is_admin: bool = False
    override_freeze: bool = False
    reason: str = ""
    #: a rollback the policy asked for (``autoRollback``) after a failed rollout
    auto_rollback: bool = False
    #: the environment a promote takes its artifact from
    promoted_from: str | None = None


@dataclass(frozen=True, slots=True)
class Facts:
    """The current state the decision is made against."""

    now: datetime
    environments: Environments
    running_artifact: str | None = None
    previous_rollout: RolloutState = RolloutState.NONE
    previous_rollout_reason: str = ""
    #: when the artifact first rolled out successfully in the environment before
    previous_succeeded_at: datetime | None = None
    #: when its rollout there last failed (a crash after the success counts)
    previous_failed_at: datetime | None = None
    approvers: tuple[Person, ...] = ()
    policy_error: str | None = None
    #: the halt that stops the environment (``halts.yaml``), if any
    halt: Halt | None = None
    #: the mark on the candidate artifact (``rejected/<service>.yaml``), if any
    mark: Mark | None = None
    #: what the ``verification`` check gating this request measured (None: not yet)
    measured: Measurement | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    violations: tuple[PolicyViolation, ...] = ()
    detail: str = ""
    #: when a soak ends: the request is decided again then (``WAIT_FOR_ROLLOUT``)
    due_at: datetime | None = None
    #: the check to measure before deciding again (``MEASURE``)
    verification: Verification | None = None
    approval_rule: ApprovalRule | None = None
    approvals_missing: int = 0
    freeze_overridden: str = ""
    notes: tuple[str, ...] = field(default=())


ALREADY_RUNNING = "already-running"


def approval_refusal(
    rule: ApprovalRule, requester: Person, author_email: str, approver: Person
) -> str | None:
    """Why ``approver`` may not approve this release, or None when they may."""
    if approver.same_as(requester):
        return "the requester of a release cannot approve it; ask someone else"
    if rule.exclude_author and author_email and approver.email.lower() == author_email.lower():
        return (
            f"{approver.email} wrote the change and this environment's policy "
            "(excludeAuthor) needs someone else to approve it"
        )
    return None


def count_approvals(
    rule: ApprovalRule, requester: Person, author_email: str, approvers: tuple[Person, ...]
) -> int:
    """Distinct eligible approvers."""
    counted: list[Person] = []
    for person in approvers:
        if approval_refusal(rule, requester, author_email, person) is not None:
            continue
        if any(person.same_as(seen) for seen in counted):
            continue
        counted.append(person)
    return len(counted)


def _chain(candidate: Candidate, policy: Policy, facts: Facts) -> PolicyViolation | str | None:
    """A violation, a wait reason (str), or None when the promotion chain is satisfied."""
    if candidate.intent is Intent.ROLLBACK or not policy.chained(candidate.environment):
        return None
    previous = facts.environments.previous(candidate.environment)
    if previous is None:
        return None
    state = facts.previous_rollout
    if state is RolloutState.SUCCEEDED:
        return None
    if state is RolloutState.IN_PROGRESS:
        return (
            f"waiting for {candidate.artifact_id} to roll out in {previous.name} "
            f"(promotion chain of {candidate.environment})"
        )
    if state is RolloutState.FAILED:
        why = f": {facts.previous_rollout_reason}" if facts.previous_rollout_reason else ""
        message = (
            f"{candidate.artifact_id} failed to roll out in {previous.name}{why}; "
            f"{candidate.environment} accepts only what rolled out successfully there"
        )
    else:
        message = (
            f"{candidate.artifact_id} has not rolled out successfully in {previous.name}; "
            f"{candidate.environment} accepts only what did (release it to {previous.name} first)"
        )
    return PolicyViolation(policy="promotion-chain", message=message)


def _soak(
    candidate: Candidate, policy: Policy, facts: Facts
) -> PolicyViolation | tuple[str, datetime] | None:
    """After a satisfied promotion chain: a violation (it failed there since), a wait reason
    with the end of the soak, or None when the artifact has soaked long enough."""
    soak = policy.soak(candidate.environment)
    previous = facts.environments.previous(candidate.environment)
    since = facts.previous_succeeded_at
    if soak is None or previous is None or since is None:
        return None
    failed = facts.previous_failed_at
    if failed is not None and failed >= since:
        why = f": {facts.previous_rollout_reason}" if facts.previous_rollout_reason else ""
        return PolicyViolation(
            policy="soak",
            message=(
                f"{candidate.artifact_id} failed in {previous.name} at "
                f"{failed:%Y-%m-%d %H:%M:%S} UTC{why}, after it rolled out there; "
                f"{candidate.environment} accepts only what ran there for {_span(soak)} "
                "without a failure"
            ),
        )
    ends = since + soak
    if facts.now < ends:
        return (
            f"{candidate.artifact_id} soaks in {previous.name} until {ends:%Y-%m-%d %H:%M:%S} "
            f"UTC ({_span(soak)} after it rolled out there; soak of {candidate.environment})",
            ends,
        )
    return None


def _verified(
    candidate: Candidate, policy: Policy, facts: Facts, notes: tuple[str, ...]
) -> Verdict | tuple[str, ...]:
    """The ``verification`` check gating the request: the verdict it forces (measure first,
    or reject), else the notes with what a kept check measured."""
    check = gate(
        policy,
        facts.environments,
        environment=candidate.environment,
        intent=candidate.intent,
        promoted_from=candidate.promoted_from,
    )
    if check is None:
        return notes
    if facts.measured is None or facts.measured.environment != check.environment:
        return Verdict(Outcome.MEASURE, verification=check, notes=notes)
    if not facts.measured.passed:
        violation = PolicyViolation(policy="verification", message=facts.measured.message)
        return Verdict(Outcome.REJECT, (violation,), notes=notes)
    return (*notes, f"verification passed: {facts.measured.message}")


def _span(duration: timedelta) -> str:
    seconds = int(duration.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    parts.append(f"{seconds}s" if seconds or not any(parts) else "")
    return "".join(parts)


def _gatekeeping(candidate: Candidate, policy: Policy, facts: Facts) -> list[PolicyViolation]:
    """The policy file, the environment, the requester's rights and the auto-release rule."""
    found: list[PolicyViolation] = []
    if facts.policy_error is not None:
        found.append(PolicyViolation(policy="policy-invalid", message=facts.policy_error))
    if facts.environments.get(candidate.environment) is None:
        found.append(
            PolicyViolation(
                policy="environment",
                message=(
                    f"unknown environment {candidate.environment!r}; the environments are "
                    f"{', '.join(facts.environments.names())}"
                ),
            )
        )
    if not candidate.requester_authorized:
        who = candidate.requester.email or candidate.requester.subject
        found.append(
            PolicyViolation(
                policy="authorization",
                message=(
                    f"{who} may not release to {candidate.environment}: it needs "
                    f"releaser:{candidate.environment} or admin"
                ),
            )
        )
    if candidate.intent is Intent.AUTO_RELEASE and candidate.environment not in (
        policy.auto_release_targets(candidate.branch)
    ):
        found.append(
            PolicyViolation(
                policy="auto-release",
                message=(
                    f"no auto-release rule sends branch {candidate.branch!r} to "
                    f"{candidate.environment}"
                ),
            )
        )
    if candidate.auto_rollback and not policy.rolls_back(candidate.environment):
        found.append(
            PolicyViolation(
                policy="auto-rollback",
                message=f"no autoRollback rule rolls back {candidate.environment}",
            )
        )
    return found


def _branches(candidate: Candidate, policy: Policy) -> list[PolicyViolation]:
    return [
        PolicyViolation(
            policy="branch-restriction",
            message=(
                f"{candidate.environment} accepts only branches matching "
                f"{rule.branch_regex!r}; {candidate.artifact_id} was built from "
                f"{candidate.branch or '(unknown branch)'!r}"
            ),
        )
        for rule in policy.branch_rules(candidate.environment)
        if not rule.allows(candidate.branch)
    ]


def _freezes(
    candidate: Candidate, policy: Policy, facts: Facts
) -> tuple[list[PolicyViolation], str]:
    """Violations of active freeze windows, and the window an admin overrode (if any)."""
    found: list[PolicyViolation] = []
    overridden = ""
    if candidate.auto_rollback:
        return found, overridden  # it puts back what ran before the failure
    for window in policy.freezes(candidate.environment):
        if not window.contains(facts.now):
            continue
        if candidate.override_freeze and candidate.requester_is_admin and candidate.reason.strip():
            overridden = window.describe()
            continue
        if candidate.override_freeze and not candidate.requester_is_admin:
            hint = "; only an admin can override a freeze"
        elif candidate.override_freeze:
            hint = "; an override needs a reason"
        else:
            hint = "; an admin can override it with a reason"
        found.append(
            PolicyViolation(
                policy="freeze-window",
                message=f"{candidate.environment} is frozen: {window.describe()}{hint}",
            )
        )
    return found, overridden


def evaluate(candidate: Candidate, policy: Policy, facts: Facts) -> Verdict:
    """Decide ``candidate`` under ``policy`` and ``facts``.

    Releasing what already runs is a no-op, rejected as ``already-running``.
    Otherwise every failing policy is named (a halt of the environment and a mark
    on the artifact first); with none, a promotion chain
    still waiting for the environment before, or a soak not over yet, makes the request
    wait; a ``verification`` check not measured yet asks for the measurement (and a
    failed one rejects); missing approvals make it await approval, and else it is
    approved. An auto-rollback (policy ``autoRollback``) puts back what ran before a
    failure: it needs no approval and no freeze window stops it.
    """
    if facts.running_artifact is not None and facts.running_artifact == candidate.artifact_id:
        return Verdict(
            Outcome.REJECT,
            (
                PolicyViolation(
                    policy=ALREADY_RUNNING,
                    message=(
                        f"{candidate.artifact_id} already runs in {candidate.environment}; "
                        "nothing to release"
                    ),
                ),
            ),
        )
    violations = safety_violations(candidate.intent, candidate.environment, facts.halt, facts.mark)
    violations += _gatekeeping(candidate, policy, facts) + _branches(candidate, policy)
    chain = _chain(candidate, policy, facts)
    soak = _soak(candidate, policy, facts) if chain is None else None
    for found in (chain, soak):
        if isinstance(found, PolicyViolation):
            violations.append(found)
    frozen, overridden = _freezes(candidate, policy, facts)
    violations += frozen
    notes: tuple[str, ...] = (f"freeze overridden by an admin: {overridden}",) if overridden else ()
    if violations:
        return Verdict(Outcome.REJECT, tuple(violations), notes=notes)
    wait = (chain, None) if isinstance(chain, str) else soak
    if isinstance(wait, tuple):
        return Verdict(Outcome.WAIT_FOR_ROLLOUT, detail=wait[0], due_at=wait[1], notes=notes)
    verified = _verified(candidate, policy, facts, notes)
    if isinstance(verified, Verdict):
        return verified
    notes = verified
    approval = None if candidate.auto_rollback else policy.approval_rule(candidate.environment)
    if approval is not None:
        granted = count_approvals(
            approval, candidate.requester, candidate.author_email, facts.approvers
        )
        if granted < approval.required:
            others = "the requester and the author" if approval.exclude_author else "the requester"
            return Verdict(
                Outcome.AWAIT_APPROVAL,
                detail=(
                    f"{candidate.environment} needs {approval.required} approval(s) from "
                    f"someone other than {others}; {granted} so far"
                ),
                approval_rule=approval,
                approvals_missing=approval.required - granted,
                freeze_overridden=overridden,
                notes=notes,
            )
    return Verdict(Outcome.APPROVE, freeze_overridden=overridden, notes=notes)


# --------------------------------------------------------------------------- target resolution


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One release commit of a service in an environment (from the git trailers)."""

    artifact_id: str
    commit_sha: str
    at: datetime
    intent: str = ""
    actor: str = ""
    release_id: str = ""
    promoted_from: str = ""
    environment: str = ""
    service: str = ""


class ResolutionError(ValueError):
    """The request names something that cannot be released; ``policy`` names the rule."""

    def __init__(self, policy: str, message: str) -> None:
        super().__init__(message)
        self.violation = PolicyViolation(policy=policy, message=message)


def rollback_target(
    history: list[HistoryEntry], running: str | None, named: str | None, environment: str
) -> HistoryEntry:
    """What a rollback goes back to. ``history`` is newest first.

    Without ``named``: the release before the one that runs now (the newest
    entry with a different artifact). With ``named``: that artifact, which
    must have been released to this environment before.
    """
    current = running if running is not None else (history[0].artifact_id if history else None)
    if named is not None:
        if named == current:
            raise ResolutionError(
                ALREADY_RUNNING, f"{named} already runs in {environment}; nothing to roll back"
            )
        for entry in history:
            if entry.artifact_id == named:
                return entry
        raise ResolutionError(
            "rollback",
            f"{named} was never released to {environment}; a rollback goes back to an "
            "earlier release of this environment (see `ferry history`)",
        )
    if current is None:
        raise ResolutionError(
            "rollback", f"nothing has been released to {environment} yet; nothing to roll back to"
        )
    for entry in history:
        if entry.artifact_id != current:
            return entry
    raise ResolutionError(
        "rollback",
        f"{current} is the only release {environment} has had; there is no earlier one",
    )
