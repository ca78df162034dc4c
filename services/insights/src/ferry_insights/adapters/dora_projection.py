"""How the DORA columns of ``deployments`` are kept at write time, so that a read only
filters, buckets and aggregates them (docs/insights.md, "How the projections are kept").

For each deployment of a service in an environment (``at_us``: its first result):

- ``next_us``: the next deployment of that service there (the smallest later ``at_us``);
- ``rolled_back_us``: the first rollback request of the service there after ``at_us`` and
  no later than ``next_us`` (a rollback after the next deployment is that one's);
- ``failed_us``: ``at_us`` when its first result was a failure, else ``rolled_back_us``;
- ``restored_us``: the first ``rollout.succeeded`` of the service there after ``failed_us``.

These are the definitions of :mod:`ferry_insights.domain.dora` with every fact known; a
window that ends earlier keeps a value only if it is before the window's end (a rollback
at or after the end was not known then, and a next deployment at or after the end does not
count), which the read checks. Each is computed from the stored facts alone, so computing it
again is harmless: a write refreshes every row whose value it may change.

- a deployment that is new, or whose first result moved from ``t_old`` to ``t``: the rows of
  the place from the deployment before ``min(t, t_old)`` to ``max(t, t_old)``, every column;
- a rollback at ``r``: the rows before ``r`` whose next deployment is not before ``r``;
- a success at ``s``: the failures before ``s`` not restored before ``s``;
- a batch: both of the above from its earliest fact on (:func:`after_batch`).

The writer holds the place's lock (the ``cells`` row, ``FOR UPDATE``) while it writes a
fact of that place and refreshes, so two replicas never refresh from each other's half.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from ferry_insights.adapters.tables import deployments, rollbacks, rollout_results
from ferry_insights.domain.facts import Outcome

__all__ = ["after_batch", "refresh", "restored_only", "since_rollback"]

_d = deployments
_later = deployments.alias("later")
_b = rollbacks
_r = rollout_results


def _place(table: Any) -> sa.ColumnElement[bool]:
    same: sa.ColumnElement[bool] = (table.c.environment == _d.c.environment) & (
        table.c.service == _d.c.service
    )
    return same


_NEXT = (
    sa.select(sa.func.min(_later.c.at_us))
    .where(_place(_later), _later.c.at_us > _d.c.at_us)
    .scalar_subquery()
)
_ROLLED_BACK = (
    sa.select(sa.func.min(_b.c.requested_us))
    .where(
        _place(_b),
        _b.c.requested_us > _d.c.at_us,
        sa.or_(_d.c.next_us.is_(None), _b.c.requested_us <= _d.c.next_us),
    )
    .scalar_subquery()
)
_FAILED = sa.case((_d.c.failed_rollout, _d.c.at_us), else_=_d.c.rolled_back_us)
_RESTORED = (
    sa.select(sa.func.min(_r.c.observed_us))
    .where(
        _place(_r),
        _r.c.outcome == Outcome.SUCCEEDED.value,
        _r.c.observed_us > _d.c.failed_us,
    )
    .scalar_subquery()
)


def refresh(where: sa.ColumnElement[bool], *, from_next: bool = True) -> list[sa.Update]:
    """The statements that compute the columns again for the rows ``where`` selects, in
    order (each reads what the one before wrote); ``from_next=False`` keeps ``next_us``."""
    steps: list[dict[str, Any]] = [
        {"rolled_back_us": _ROLLED_BACK},
        {"failed_us": _FAILED},
        {"restored_us": _RESTORED},
    ]
    if from_next:
        steps.insert(0, {"next_us": _NEXT})
    return [_d.update().where(where).values(**values) for values in steps]


def _of(environment: str, service: str) -> sa.ColumnElement[bool]:
    return (_d.c.environment == environment) & (_d.c.service == service)


def around(environment: str, service: str, low: int, high: int) -> sa.ColumnElement[bool]:
    """The rows of a deployment that is new or moved: from the deployment before ``low``
    (and its ties) up to ``high``."""
    before = (
        sa.select(sa.func.max(_later.c.at_us))
        .where(
            _later.c.environment == environment,
            _later.c.service == service,
            _later.c.at_us < low,
        )
        .scalar_subquery()
    )
    return (
        _of(environment, service)
        & (_d.c.at_us >= sa.func.coalesce(before, low))
        & (_d.c.at_us <= high)
    )


def since_rollback(environment: str, service: str, first: int, last: int) -> list[sa.Update]:
    """After rollbacks from ``first`` to ``last``: the deployments they may belong to."""
    where = (
        _of(environment, service)
        & (_d.c.at_us < last)
        & sa.or_(_d.c.next_us.is_(None), _d.c.next_us >= first)
    )
    return refresh(where, from_next=False)


def restored_only(environment: str, service: str, first: int, last: int) -> sa.Update:
    """After successes from ``first`` to ``last``: the failures they may restore."""
    where = (
        _of(environment, service)
        & (_d.c.failed_us < last)
        & sa.or_(_d.c.restored_us.is_(None), _d.c.restored_us > first)
    )
    return _d.update().where(where).values(restored_us=_RESTORED)


def after_batch(places: Sequence[tuple[str, str]], since: int) -> list[sa.Update]:
    """After a batch of facts of these places, none before ``since``: the rows from the
    deployment before ``since`` on, and the older failures not restored before ``since``
    (a success of the batch may restore them). Every other row keeps its values: its next
    deployment, and so its rollbacks, are before ``since``."""
    before = (
        sa.select(sa.func.max(_later.c.at_us))
        .where(_place(_later), _later.c.at_us < since)
        .scalar_subquery()
    )
    where = sa.tuple_(_d.c.environment, _d.c.service).in_(list(places)) & sa.or_(
        _d.c.at_us >= sa.func.coalesce(before, since),
        _d.c.failed_us.is_not(None) & sa.or_(_d.c.restored_us.is_(None), _d.c.restored_us > since),
    )
    return refresh(where)
