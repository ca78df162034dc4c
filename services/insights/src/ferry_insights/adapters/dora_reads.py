"""The reads of insights' projections: the DORA keys of a window, computed in SQL from the
columns ``adapters/dora_projection.py`` keeps; the environments seen; row counts.

One answer is one statement over the deployments of the window (found by
``ix_deployments_env_at_us``, each joined to its change by primary key), which sends back:

- per 7-day bucket: how many deployments, how many failed, how many were restored;
- per bucket and for the whole window: the values at the ranks a median (the middle one, or
  the middle two) and the nearest-rank p90 need, by ``ROW_NUMBER()`` over the lead times and
  the times to restore in order. The same SQL runs on SQLite and PostgreSQL, and it sends back
  at most three values per bucket and key, whatever the number of deployments.
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry_insights.adapters.tables import changes, deployments, metadata, micros
from ferry_insights.domain.dora import Keys, Report, Window

__all__ = ["DoraReads"]

_WEEK_US = 7 * 86_400 * 1_000_000
_ALL = -1  # the bucket of the whole window


def _dora_rows(environment: str, window: Window, service: str | None, squad: str | None) -> sa.CTE:
    d, c = deployments, changes
    start, end = micros(window.start), micros(window.end)
    lead = sa.case(
        (
            (d.c.succeeded_us < end) & (c.c.changed_us <= d.c.succeeded_us),
            d.c.succeeded_us - c.c.changed_us,
        ),
        else_=sa.null(),
    )
    failed = d.c.failed_us < end  # NULL (not failed) when no failure is known
    restore = sa.case(
        (failed & (d.c.restored_us < end), d.c.restored_us - d.c.failed_us), else_=sa.null()
    )
    query = (
        sa.select(
            ((d.c.at_us - start) // _WEEK_US).label("week"),
            lead.label("lead"),
            sa.case((failed, 1), else_=0).label("failed"),
            restore.label("restore"),
        )
        .select_from(
            d.outerjoin(c, (c.c.service == d.c.service) & (c.c.artifact_id == d.c.artifact_id))
        )
        .where(d.c.environment == environment, d.c.at_us >= start, d.c.at_us < end)
    )
    if service:
        query = query.where(d.c.service == service)
    if squad:
        query = query.where(c.c.squad == squad)
    return query.cte("window_rows")


def _answer(rows: sa.CTE) -> sa.CompoundSelect[str, int, int, int, int]:
    """One statement, rows of ``(key, week, a, b, c)``:

    - ``("count", week, deployments, failed, restored)`` per bucket;
    - ``("lead" | "restore", week, rank, n, value)``: of the ``n`` values of that key in that
      bucket (``week`` -1: the whole window) in order, those at the ranks a median (the middle
      one, or the two middle ones) and the nearest-rank p90 (``ceil(0.9 n)``) need.
    """
    values = sa.union_all(
        *(
            sa.select(
                sa.literal(key).label("key"), week.label("week"), getattr(rows.c, key).label("x")
            ).where(getattr(rows.c, key).is_not(None))
            for key in ("lead", "restore")
            for week in (rows.c.week, sa.literal(_ALL))
        )
    ).subquery("dora_values")
    by = (values.c.key, values.c.week)
    ranked = sa.select(
        values.c.key,
        values.c.week,
        sa.func.row_number().over(partition_by=by, order_by=values.c.x).label("a"),
        sa.func.count().over(partition_by=by).label("b"),
        values.c.x.label("c"),
    ).subquery("dora_ranked")
    n = ranked.c.b
    picked = sa.select(ranked).where(
        sa.or_(
            ranked.c.a == (n + 1) // 2,  # the middle, or the lower of the middle two
            ranked.c.a == n // 2 + 1,  # the middle, or the upper of the middle two
            ranked.c.a == (9 * n + 9) // 10,  # ceil(0.9 n)
        )
    )
    counted = sa.select(
        sa.literal("count").label("key"),
        rows.c.week,
        sa.func.count().label("a"),
        sa.func.sum(rows.c.failed).label("b"),
        sa.func.count(rows.c.restore).label("c"),
    ).group_by(rows.c.week)
    return sa.union_all(counted, picked)


class DoraReads:
    """The read queries of :class:`~ferry_insights.adapters.db.Store`."""

    engine: AsyncEngine

    async def dora_report(
        self, environment: str, window: Window, *, service: str | None, squad: str | None
    ) -> Report:
        """The four keys of one environment over ``window``, and its weekly series."""
        counts: dict[int, tuple[int, int, int]] = {}
        picks: dict[tuple[str, int], dict[int, int]] = defaultdict(dict)
        sizes: dict[tuple[str, int], int] = {}
        statement = _answer(_dora_rows(environment, window, service, squad))
        async with self.engine.connect() as conn:
            for key, week, a, b, c in await conn.execute(statement):
                if key == "count":
                    counts[int(week)] = (int(a), int(b or 0), int(c))
                else:
                    picks[(key, int(week))][int(a)] = int(c)
                    sizes[(key, int(week))] = int(b)

        def keys(week: int, days: float) -> Keys:
            if week == _ALL:
                count, failed, restored = (sum(v[i] for v in counts.values()) for i in range(3))
            else:
                count, failed, restored = counts.get(week, (0, 0, 0))

            def median(key: str) -> float | None:
                n = sizes.get((key, week))
                if not n:
                    return None
                at = picks[(key, week)]
                return (at[(n + 1) // 2] + at[n // 2 + 1]) / 2 / 1e6

            n_lead = sizes.get(("lead", week))
            return Keys(
                deployments=count,
                deployments_per_day=count / days if days > 0 else None,
                lead_time_median=median("lead"),
                lead_time_p90=(
                    picks[("lead", week)][(9 * n_lead + 9) // 10] / 1e6 if n_lead else None
                ),
                change_failure_rate=failed / count if count else None,
                time_to_restore_median=median("restore"),
                failed=failed,
                unrestored=failed - restored,
            )

        weeks = [(w, keys(i, w.days)) for i, w in enumerate(window.weeks())]
        return Report(window=window, keys=keys(_ALL, window.days), weeks=weeks)

    async def environments(self) -> list[str]:
        """Every environment a deployment was seen in."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(deployments.c.environment).distinct())
            return sorted(row[0] for row in rows)

    async def counts(self) -> dict[str, int]:
        """Rows per table (for tests and operators)."""
        out: dict[str, int] = {}
        async with self.engine.connect() as conn:
            for table in metadata.sorted_tables:
                count = await conn.execute(sa.select(sa.func.count()).select_from(table))
                out[table.name] = int(count.scalar_one())
        return out
