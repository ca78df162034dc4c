"""The reads of insights' projections: the facts a DORA answer is computed from, the
environments seen, and row counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ferry_insights.adapters.tables import (
    at,
    changes,
    deployments,
    metadata,
    rollbacks,
    rollout_results,
    utc,
)
from ferry_insights.domain.dora import Window
from ferry_insights.domain.facts import (
    Change,
    Deployment,
    Outcome,
    RollbackRequest,
    RolloutResult,
)

__all__ = ["DoraInputs", "DoraReads"]


@dataclass(frozen=True, slots=True)
class DoraInputs:
    """The facts one DORA answer is computed from."""

    deployments: list[Deployment]
    changes: dict[tuple[str, str], Change]
    rollbacks: list[RollbackRequest]
    successes: list[RolloutResult]


class DoraReads:
    """The read queries of :class:`~ferry_insights.adapters.db.Store`."""

    engine: AsyncEngine

    async def dora_inputs(
        self, environment: str, window: Window, *, service: str | None, squad: str | None
    ) -> DoraInputs:
        """Only the columns the DORA keys use (the dashboard's DORA page asks for every
        environment at once, so each row read and converted counts)."""
        d, c = deployments, changes
        query = (
            sa.select(
                d.c.service,
                d.c.artifact_id,
                d.c.at,
                d.c.failed_rollout,
                d.c.event_id,
                d.c.succeeded_at,
                c.c.service.label("known"),
                c.c.committed_at,
                c.c.ci_start,
            )
            .select_from(
                d.outerjoin(c, (c.c.service == d.c.service) & (c.c.artifact_id == d.c.artifact_id))
            )
            .where(d.c.environment == environment, d.c.at >= window.start, d.c.at < window.end)
        )
        if service:
            query = query.where(d.c.service == service)
        if squad:
            query = query.where(c.c.squad == squad)
        found: list[Deployment] = []
        known: dict[tuple[str, str], Change] = {}
        async with self.engine.connect() as conn:
            for (
                name,
                artifact_id,
                when,
                failed,
                event_id,
                succeeded,
                seen,
                committed,
                ci,
            ) in await conn.execute(query):
                found.append(
                    Deployment(
                        environment=environment,
                        service=name,
                        artifact_id=artifact_id,
                        at=at(when),
                        failed_rollout=bool(failed),
                        event_id=event_id,
                        succeeded_at=utc(succeeded),
                    )
                )
                if seen is not None:
                    known[(name, artifact_id)] = Change(
                        service=name,
                        artifact_id=artifact_id,
                        committed_at=utc(committed),
                        ci_start=utc(ci),
                    )
            backs = await self._rollbacks(conn, environment, window, {x.service for x in found})
            # successes matter only to time the restore of a failure: read those of the
            # services that had a failed rollout or a rollback in the window
            failing = {x.service for x in found if x.failed_rollout} | {b.service for b in backs}
            wins = await self._successes(conn, environment, window, failing)
        return DoraInputs(found, known, backs, wins)

    def _of_services(self, column: sa.ColumnElement[str], services: set[str]) -> Any:
        """``column IN (...)``, or nothing when the query asks for most services anyway."""
        return column.in_(sorted(services)) if len(services) <= 20 else sa.true()

    async def _rollbacks(
        self, conn: AsyncConnection, environment: str, window: Window, services: set[str]
    ) -> list[RollbackRequest]:
        if not services:
            return []
        b = rollbacks
        rows = await conn.execute(
            sa.select(b.c.event_id, b.c.service, b.c.release_id, b.c.requested_at).where(
                b.c.environment == environment,
                b.c.requested_at >= window.start,
                b.c.requested_at < window.end,
                self._of_services(b.c.service, services),
            )
        )
        return [
            RollbackRequest(
                event_id=event_id,
                environment=environment,
                service=name,
                release_id=release_id,
                requested_at=at(requested_at),
            )
            for event_id, name, release_id, requested_at in rows
            if name in services
        ]

    async def _successes(
        self, conn: AsyncConnection, environment: str, window: Window, services: set[str]
    ) -> list[RolloutResult]:
        if not services:
            return []
        r = rollout_results
        rows = await conn.execute(
            sa.select(
                r.c.event_id, r.c.service, r.c.artifact_id, r.c.observed_at, r.c.release_id
            ).where(
                r.c.environment == environment,
                r.c.outcome == Outcome.SUCCEEDED.value,
                r.c.observed_at >= window.start,
                r.c.observed_at < window.end,
                self._of_services(r.c.service, services),
            )
        )
        return [
            RolloutResult(
                event_id=event_id,
                environment=environment,
                service=name,
                artifact_id=artifact_id,
                outcome=Outcome.SUCCEEDED,
                observed_at=at(observed_at),
                release_id=release_id,
            )
            for event_id, name, artifact_id, observed_at, release_id in rows
            if name in services
        ]

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
