"""Verification before promotion (policy ``verification``): which request a check gates, and
whether what Prometheus measured keeps the check's bounds. Plain functions over plain data;
the query itself is an adapter's (``adapters/prometheus.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ferry_events import Intent
from ferry_promotion.domain.environments import Environments
from ferry_promotion.domain.policies import Policy, PrometheusCheck, Verification


@dataclass(frozen=True, slots=True)
class Samples:
    """What a query over a check's window returned: every sample of every series, or why
    there are none (``error``: Prometheus unreachable, a bad query, a timeout)."""

    values: tuple[float, ...] = ()
    series: int = 0
    error: str = ""


@dataclass(frozen=True, slots=True)
class Measurement:
    """The verdict of one check: kept or not, the value that decided it, and the message."""

    environment: str
    passed: bool
    message: str
    value: float | None = None


def gate(
    policy: Policy,
    environments: Environments,
    *,
    environment: str,
    intent: Intent,
    promoted_from: str | None,
) -> Verification | None:
    """The check a request to ``environment`` must pass, if any.

    A check on X gates every request but a rollback whose artifact comes out of X: a
    promotion from X, and any release to the environment right after X.
    """
    if intent is Intent.ROLLBACK:
        return None
    if promoted_from is not None:
        source: str | None = promoted_from
    else:
        before = environments.previous(environment)
        source = before.name if before is not None else None
    return policy.verification_of(source) if source is not None else None


def _bounds(check: PrometheusCheck) -> str:
    parts = []
    if check.minimum is not None:
        parts.append(f"at least {check.minimum:g}")
    if check.maximum is not None:
        parts.append(f"at most {check.maximum:g}")
    return " and ".join(parts)


def _window(check: PrometheusCheck) -> str:
    seconds = int(check.window.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def judge(rule: Verification, samples: Samples) -> Measurement:
    """Whether every sample keeps the bounds of ``rule``'s check; never a pass without data.

    The measured value is the worst sample: the highest against ``max``, the lowest against
    ``min`` (with both, the one that breaks a bound, else the highest).
    """
    check = rule.prometheus
    what = f"{check.query!r} over the last {_window(check)} in {rule.environment}"
    if samples.error:
        return Measurement(
            rule.environment, passed=False, message=f"could not evaluate {what}: {samples.error}"
        )
    if not samples.values:
        return Measurement(
            rule.environment,
            passed=False,
            message=f"{what} returned no data; a check without data is no pass "
            "(is the query right, and is the environment scraped?)",
        )
    if any(math.isnan(v) for v in samples.values):
        return Measurement(
            rule.environment, passed=False, message=f"{what} returned NaN", value=math.nan
        )
    highest, lowest = max(samples.values), min(samples.values)
    if check.maximum is not None and highest > check.maximum:
        return Measurement(
            rule.environment,
            passed=False,
            message=f"{what} reached {highest:g}; it must stay {_bounds(check)}",
            value=highest,
        )
    if check.minimum is not None and lowest < check.minimum:
        return Measurement(
            rule.environment,
            passed=False,
            message=f"{what} fell to {lowest:g}; it must stay {_bounds(check)}",
            value=lowest,
        )
    value = highest if check.maximum is not None else lowest
    return Measurement(
        rule.environment,
        passed=True,
        message=f"{what} stayed {_bounds(check)} ({len(samples.values)} samples, worst {value:g})",
        value=value,
    )
