"""What a release would change, before it is asked for: plain functions over plain data.

:func:`folder_diff` compares the files that run in an environment with the files a
release would write there (stamped by ``ferry_events.environment_files``, exactly as
git-writer stamps them) and gives each added, removed or changed file with its unified
diff. :func:`checks` lists every policy that applies to the request, each with its
verdict, from the real decision's :class:`~ferry_promotion.domain.decision.Verdict`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from ferry_events import Intent, PolicyViolation
from ferry_promotion.domain.decision import (
    ALREADY_RUNNING,
    Candidate,
    Facts,
    Outcome,
    RolloutState,
    Verdict,
)
from ferry_promotion.domain.environments import Environments
from ferry_promotion.domain.policies import Policy
from ferry_promotion.domain.safety import HALTED, REJECTED_ARTIFACT
from ferry_promotion.domain.verification import gate

#: The release id a preview stamps with: a release gets its id when it is requested.
PREVIEW_RELEASE_ID: Final = "<new-release-id>"


class Change(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


@dataclass(frozen=True, slots=True)
class FileChange:
    """One file the release adds, removes or changes; ``diff`` is its unified diff."""

    path: str
    change: Change
    diff: str
    binary: bool = False


def _lines(content: bytes) -> list[str] | None:
    """The lines of a text file (each with its ending), or None when it is not UTF-8 text."""
    try:
        text = content.decode()
    except UnicodeDecodeError:
        return None
    if "\x00" in text:
        return None
    return text.splitlines(keepends=True)


def _unified(path: str, before: bytes | None, after: bytes | None) -> tuple[str, bool]:
    old = [] if before is None else _lines(before)
    new = [] if after is None else _lines(after)
    source = "/dev/null" if before is None else f"a/{path}"
    target = "/dev/null" if after is None else f"b/{path}"
    if old is None or new is None:
        return f"Binary files {source} and {target} differ\n", True
    out: list[str] = []
    for line in difflib.unified_diff(old, new, source, target, n=3):
        out.append(line)
        if not line.endswith("\n"):
            out.append("\n\\ No newline at end of file\n")
    return "".join(out), False


def folder_diff(before: Mapping[str, bytes], after: Mapping[str, bytes]) -> list[FileChange]:
    """Every file that differs between ``before`` and ``after`` (keyed by path), by path."""
    changes: list[FileChange] = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if old == new:
            continue
        kind = Change.ADDED if old is None else Change.REMOVED if new is None else Change.CHANGED
        diff, binary = _unified(path, old, new)
        changes.append(FileChange(path, kind, diff, binary))
    return changes


def unified_diff(changes: list[FileChange]) -> str:
    """The whole change as one unified diff, file after file."""
    return "".join(change.diff for change in changes)


# --------------------------------------------------------------------------- verdicts


class CheckVerdict(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    WAITING = "waiting"
    NEEDS_APPROVAL = "needs-approval"


@dataclass(frozen=True, slots=True)
class Check:
    """One policy that applies to the request, and what it says now."""

    policy: str
    verdict: CheckVerdict
    message: str


def _applicable(
    candidate: Candidate, policy: Policy, environments: Environments
) -> list[tuple[str, str]]:
    """The policies that apply to ``candidate``, each with what it checks."""
    intent, environment = candidate.intent, candidate.environment
    found = [("environment", f"{environment} is one of the environments (environments.yaml)")]
    if intent is not Intent.ROLLBACK:  # a rollback goes through a halt and past a mark
        found += [
            (HALTED, f"{environment} is not halted (halts.yaml)"),
            (REJECTED_ARTIFACT, "the artifact is not marked bad (rejected/<service>.yaml)"),
        ]
    found += [
        ("policy-invalid", "the service's policy file is valid"),
        ("authorization", f"the requester may release to {environment}"),
        (ALREADY_RUNNING, f"the artifact does not already run in {environment}"),
    ]
    found += [
        ("branch-restriction", f"the artifact's branch matches {rule.branch_regex!r}")
        for rule in policy.branch_rules(environment)
    ]
    previous = environments.previous(environment)
    if intent is not Intent.ROLLBACK and policy.chained(environment) and previous is not None:
        found.append(("promotion-chain", f"the artifact rolled out in {previous.name} first"))
        soak = policy.soak(environment)
        if soak is not None:
            minutes = f"{soak.total_seconds() / 60:g} min"
            found.append(("soak", f"the artifact ran in {previous.name} for {minutes} first"))
    check = gate(
        policy,
        environments,
        environment=environment,
        intent=intent,
        promoted_from=candidate.promoted_from,
    )
    if check is not None:
        found.append(("verification", f"the verification of {check.environment} passes"))
    found += [
        ("freeze-window", f"not inside the freeze window {window.describe()}")
        for window in policy.freezes(environment)
    ]
    rule = policy.approval_rule(environment)
    if rule is not None:
        found.append(("approvals", f"{rule.required} approval(s) before it goes ahead"))
    return found


def checks(candidate: Candidate, policy: Policy, facts: Facts, verdict: Verdict) -> list[Check]:
    """Every policy that applies to ``candidate``, with its verdict now: failed (with the
    violation's message), waiting (a promotion chain waiting for a rollout), needs-approval
    (no approval is granted before a request exists), or passed.

    Releasing what already runs is refused before any policy is looked at: that check
    alone is listed. A violation the list does not know beforehand (a new kind of rule) is
    listed as failed too, so the checks never say less than the verdict.
    """
    violations: dict[str, list[str]] = {}
    for violation in verdict.violations:
        violations.setdefault(violation.policy, []).append(violation.message)
    if ALREADY_RUNNING in violations:
        return [Check(ALREADY_RUNNING, CheckVerdict.FAILED, m) for m in violations[ALREADY_RUNNING]]
    environment = candidate.environment
    out: list[Check] = []
    waits = verdict.outcome is Outcome.WAIT_FOR_ROLLOUT
    for name, what in _applicable(candidate, policy, facts.environments):
        if name in violations:
            out += [Check(name, CheckVerdict.FAILED, m) for m in violations.pop(name)]
        elif name == "soak" and waits and verdict.due_at is not None:
            out.append(Check(name, CheckVerdict.WAITING, verdict.detail))
        elif name == "verification" and facts.measured is not None:
            out.append(Check(name, CheckVerdict.PASSED, facts.measured.message))
        elif name == "verification":  # not measured: the decision stopped before it
            out.append(Check(name, CheckVerdict.WAITING, f"{what}, measured once nothing fails"))
        elif name == "promotion-chain" and (
            (waits and verdict.due_at is None) or facts.previous_rollout is RolloutState.IN_PROGRESS
        ):
            previous = facts.environments.previous(environment)
            out.append(
                Check(
                    name,
                    CheckVerdict.WAITING,
                    verdict.detail
                    or f"waiting for {candidate.artifact_id} to roll out in "
                    f"{previous.name if previous else 'the environment before'}",
                )
            )
        elif name == "approvals":
            detail = verdict.detail if verdict.outcome is Outcome.AWAIT_APPROVAL else what
            out.append(Check(name, CheckVerdict.NEEDS_APPROVAL, detail))
        else:
            out.append(Check(name, CheckVerdict.PASSED, what))
    for name, messages in violations.items():
        out += [Check(name, CheckVerdict.FAILED, m) for m in messages]
    return out


# --------------------------------------------------------------------------- the whole preview


@dataclass(frozen=True, slots=True)
class CommitFailure:
    """Why git-writer would fail the release (``ferry.release.failed.v1``) if it were approved."""

    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Preview:
    """What a request would change and what the decision would be, now."""

    service: str
    environment: str
    intent: Intent
    outcome: Outcome
    config_commit: str | None = None
    running_artifact_id: str | None = None
    artifact_id: str | None = None
    promoted_from: str | None = None
    namespace: str | None = None
    files: tuple[FileChange, ...] = ()
    commit_failure: CommitFailure | None = None
    violations: tuple[PolicyViolation, ...] = ()
    detail: str = ""
    checks: tuple[Check, ...] = ()

    @property
    def diff(self) -> str:
        return unified_diff(list(self.files))

    def count(self, change: Change) -> int:
        return sum(1 for f in self.files if f.change is change)
