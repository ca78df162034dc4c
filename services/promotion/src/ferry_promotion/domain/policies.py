"""The release policy of one service (``policies/<service>.yaml``): its schema and parser.

See ``docs/policies.md`` for the document people write. Parsing reports every
problem with its field and line; :func:`check_environments` adds the problems
that need the list of environments (a rule naming one that does not exist).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from pydantic import (
    Field,
    StrictBool,
    field_serializer,
    field_validator,
    model_validator,
)

from ferry_events import DNS_LABEL
from ferry_promotion.domain.environments import Environments
from ferry_promotion.domain.windows import (
    DEFAULT_APPROVAL_EXPIRY,
    FreezeWindow,
    PolicyModel,
    Weekday,
    WeeklyWindow,
    environment_name,
    parse_duration,
)
from ferry_promotion.domain.yamldoc import (
    Document,
    DocumentError,
    Problem,
    field_name,
    parse_yaml,
    validate_document,
)

__all__ = [
    "DEFAULT_APPROVAL_EXPIRY",
    "FreezeWindow",
    "PrometheusCheck",
    "Verification",
    "Weekday",
    "WeeklyWindow",
    "parse_duration",
]


class AutoRelease(PolicyModel):
    """Artifacts built from ``branch`` go to ``environment`` as soon as they are stored."""

    branch: str = Field(min_length=1, max_length=255)
    environment: str

    _env = field_validator("environment")(environment_name)


class AutoRollback(PolicyModel):
    """When the release that runs in ``environment`` fails to roll out there, promotion asks
    for a rollback to the last release that rolled out successfully there; when that
    rollback fails too, the environment is halted."""

    environment: str

    _env = field_validator("environment")(environment_name)


class BranchRestriction(PolicyModel):
    """``environment`` accepts only artifacts whose branch matches ``branch_regex`` in full."""

    environment: str
    branch_regex: str = Field(min_length=1, max_length=500)

    _env = field_validator("environment")(environment_name)

    @field_validator("branch_regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value

    def allows(self, branch: str) -> bool:
        return re.fullmatch(self.branch_regex, branch) is not None


class PromotionChain(PolicyModel):
    """Each listed environment accepts only what rolled out successfully in the one before it
    (with ``soak``: at least that long ago, with no failed rollout of it there since)."""

    environments: list[str] = Field(min_length=1)
    soak: timedelta | None = None

    @field_validator("environments")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        return [environment_name(v) for v in value]

    @field_validator("soak", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)

    @field_serializer("soak")
    def _seconds(self, value: timedelta | None) -> int | None:
        return None if value is None else int(value.total_seconds())


class PrometheusCheck(PolicyModel):
    """A PromQL query every sample of which, over the last ``for``, stays within the bounds."""

    query: str = Field(min_length=1, max_length=2000)
    maximum: float | None = Field(default=None, alias="max", allow_inf_nan=False)
    minimum: float | None = Field(default=None, alias="min", allow_inf_nan=False)
    window: timedelta = Field(alias="for")

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a query must say something (a PromQL expression)")
        return value

    @field_validator("window", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)

    @field_serializer("window")
    def _seconds(self, value: timedelta) -> int:
        return int(value.total_seconds())

    @model_validator(mode="after")
    def _bounded(self) -> PrometheusCheck:
        if self.maximum is None and self.minimum is None:
            raise ValueError("a check needs max, min or both (the bound every sample must keep)")
        if self.maximum is not None and self.minimum is not None and self.minimum > self.maximum:
            raise ValueError(f"min ({self.minimum}) is above max ({self.maximum})")
        return self


class Verification(PolicyModel):
    """Nothing is promoted out of ``environment`` unless its ``prometheus`` check holds."""

    environment: str
    prometheus: PrometheusCheck

    _env = field_validator("environment")(environment_name)


class ApprovalRule(PolicyModel):
    """Releases to ``environment`` need ``required`` approvals from people other than the
    requester (and, with ``exclude_author``, other than the author of the change)."""

    environment: str
    required: int = Field(default=1, ge=1, le=10)
    exclude_author: bool = False
    expires_after: timedelta = DEFAULT_APPROVAL_EXPIRY

    _env = field_validator("environment")(environment_name)

    @field_validator("expires_after", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)

    @field_serializer("expires_after")
    def _seconds(self, value: timedelta) -> int:
        return int(value.total_seconds())


class Policy(PolicyModel):
    """Everything ``policies/<service>.yaml`` can say."""

    service: str | None = None
    auto_release: list[AutoRelease] = Field(default_factory=list)
    branch_restrictions: list[BranchRestriction] = Field(default_factory=list)
    promotion_chain: PromotionChain | None = None
    freeze_windows: list[FreezeWindow] = Field(default_factory=list)
    approvals: list[ApprovalRule] = Field(default_factory=list)
    #: Mark an artifact bad (``rejected/<service>.yaml``) as soon as its rollout fails in
    #: any environment, so that nothing releases or promotes it again until the mark is lifted.
    reject_on_failed_rollout: StrictBool = False
    #: Roll back in git, to the last release that rolled out successfully, when the release
    #: that runs in one of these environments fails to roll out there.
    auto_rollback: list[AutoRollback] = Field(default_factory=list)
    #: Checks against Prometheus before anything is promoted out of an environment.
    verification: list[Verification] = Field(default_factory=list)

    @field_validator("verification")
    @classmethod
    def _one_check_per_env(cls, value: list[Verification]) -> list[Verification]:
        seen: set[str] = set()
        for rule in value:
            if rule.environment in seen:
                raise ValueError(
                    f"lists environment {rule.environment!r} twice; "
                    "one check per environment (a query can combine conditions)"
                )
            seen.add(rule.environment)
        return value

    @model_validator(mode="after")
    def _one_rule_per_env(self) -> Policy:
        for name, rules in (("approvals", self.approvals), ("autoRollback", self.auto_rollback)):
            seen: set[str] = set()
            for rule in rules:
                if rule.environment in seen:
                    raise ValueError(f"{name} lists environment {rule.environment!r} twice")
                seen.add(rule.environment)
        return self

    def auto_release_targets(self, branch: str) -> list[str]:
        return [r.environment for r in self.auto_release if r.branch == branch]

    def branch_rules(self, environment: str) -> list[BranchRestriction]:
        return [r for r in self.branch_restrictions if r.environment == environment]

    def chained(self, environment: str) -> bool:
        return self.promotion_chain is not None and environment in self.promotion_chain.environments

    def freezes(self, environment: str) -> list[FreezeWindow]:
        return [w for w in self.freeze_windows if w.environment == environment]

    def approval_rule(self, environment: str) -> ApprovalRule | None:
        return next((r for r in self.approvals if r.environment == environment), None)

    def rolls_back(self, environment: str) -> bool:
        """Whether a failed rollout in ``environment`` is rolled back (``autoRollback``)."""
        return any(r.environment == environment for r in self.auto_rollback)

    def soak(self, environment: str) -> timedelta | None:
        """How long an artifact must have run in the environment before ``environment``."""
        chain = self.promotion_chain
        if chain is None or environment not in chain.environments:
            return None
        return chain.soak

    def verification_of(self, environment: str) -> Verification | None:
        """The check that gates promotions out of ``environment`` (``verification``)."""
        return next((r for r in self.verification if r.environment == environment), None)

    def to_document(self) -> dict[str, Any]:
        """The policy as people write it (camelCase, durations in seconds)."""
        out: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        if not self.reject_on_failed_rollout:
            out.pop("rejectOnFailedRollout")  # said only when on, as people write it
        if not self.auto_rollback:
            out.pop("autoRollback")
        if not self.verification:
            out.pop("verification")
        return out


#: The policy of a service without a policy file: anything goes.
EMPTY_POLICY = Policy()


def _environment_refs(policy: Policy) -> list[tuple[tuple[str | int, ...], str]]:
    refs: list[tuple[tuple[str | int, ...], str]] = []
    for i, a in enumerate(policy.auto_release):
        refs.append((("autoRelease", i, "environment"), a.environment))
    for i, b in enumerate(policy.branch_restrictions):
        refs.append((("branchRestrictions", i, "environment"), b.environment))
    if policy.promotion_chain is not None:
        for i, name in enumerate(policy.promotion_chain.environments):
            refs.append((("promotionChain", "environments", i), name))
    for i, w in enumerate(policy.freeze_windows):
        refs.append((("freezeWindows", i, "environment"), w.environment))
    for i, r in enumerate(policy.approvals):
        refs.append((("approvals", i, "environment"), r.environment))
    for i, back in enumerate(policy.auto_rollback):
        refs.append((("autoRollback", i, "environment"), back.environment))
    for i, check in enumerate(policy.verification):
        refs.append((("verification", i, "environment"), check.environment))
    return refs


def check_environments(
    policy: Policy, environments: Environments, doc: Document | None = None
) -> list[Problem]:
    """Problems with environment names the policy uses that ``environments`` does not have,
    and a promotion chain on the first environment (it has nothing before it)."""
    known = environments.names()
    problems: list[Problem] = []
    for path, name in _environment_refs(policy):
        if name not in known:
            problems.append(
                Problem(
                    field_name(path),
                    doc.line_of(path) if doc is not None else None,
                    f"unknown environment {name!r}; the environments are {', '.join(known)}",
                )
            )
        elif path[0] == "promotionChain" and environments.previous(name) is None:
            problems.append(
                Problem(
                    field_name(path),
                    doc.line_of(path) if doc is not None else None,
                    f"{name!r} is the first environment: there is nothing before it to chain to",
                )
            )
    return problems


def parse_policy(text: str, service: str) -> Policy:
    """Parse ``policies/<service>.yaml``. Raises :class:`DocumentError` with field and line."""
    what = f"policies/{service}.yaml"
    doc = parse_yaml(text, what)
    if doc.data is not None and not isinstance(doc.data, dict):
        raise DocumentError(what, [Problem("", 1, "a policy must be a mapping of rule lists")])
    return policy_from_document(doc, service, what)


def policy_from_document(doc: Document, service: str, what: str) -> Policy:
    policy = validate_document(Policy, doc, what)
    if policy.service is not None and policy.service != service:
        raise DocumentError(
            what,
            [
                Problem(
                    "service",
                    doc.line_of(("service",)),
                    f"says {policy.service!r} but the file is the policy of {service!r}",
                )
            ],
        )
    return policy


def policy_from_data(data: Any, service: str, environments: Environments) -> Policy:
    """Validate a policy given as data (the API's PUT body), with environment names checked."""
    what = f"policy of {service}"
    if not isinstance(data, dict):
        raise DocumentError(what, [Problem("", None, "a policy must be a JSON object")])
    doc = Document(data=data, lines={})
    try:
        policy = policy_from_document(doc, service, what)
    except DocumentError as exc:
        # name every problem at once: unknown environments too, read from the raw data
        reported = {p.field for p in exc.problems}
        extra = [p for p in raw_environment_problems(data, environments) if p.field not in reported]
        if not extra:
            raise
        raise DocumentError(what, [*exc.problems, *extra]) from exc
    problems = check_environments(policy, environments)
    if problems:
        raise DocumentError(what, problems)
    return policy


#: Where a policy names environments: (rule list, its camelCase and snake_case keys).
_ENV_LISTS = (
    ("autoRelease", "auto_release"),
    ("branchRestrictions", "branch_restrictions"),
    ("freezeWindows", "freeze_windows"),
    ("approvals", "approvals"),
    ("autoRollback", "auto_rollback"),
    ("verification", "verification"),
)


def raw_environment_problems(data: dict[str, Any], environments: Environments) -> list[Problem]:
    """Unknown environment names in a policy that did not validate (so that a person sees
    them with the other problems, not after fixing those)."""
    known = environments.names()
    refs: list[tuple[tuple[str | int, ...], object]] = []
    for camel, snake in _ENV_LISTS:
        rules = data.get(camel, data.get(snake))
        if isinstance(rules, list):
            for i, rule in enumerate(rules):
                if isinstance(rule, dict) and "environment" in rule:
                    refs.append(((camel, i, "environment"), rule["environment"]))
    chain = data.get("promotionChain", data.get("promotion_chain"))
    if isinstance(chain, dict) and isinstance(chain.get("environments"), list):
        for i, name in enumerate(chain["environments"]):
            refs.append((("promotionChain", "environments", i), name))
    return [
        Problem(
            field_name(path),
            None,
            f"unknown environment {name!r}; the environments are {', '.join(known)}",
        )
        for path, name in refs
        if isinstance(name, str) and DNS_LABEL.fullmatch(name) and name not in known
    ]
