"""Insights' projections through SQLAlchemy 2 (async): SQLite by default, PostgreSQL by URL.

Tables:

- ``inbox``: every event consumed, by event id (the primary key), with its time and what it is
  about; the timeline of the dashboard reads it;
- ``changes``: per (service, artifact id) the change it was built from (``artifact.*``);
- ``rollout_results``: every ``rollout.succeeded`` / ``rollout.failed``, by event id;
- ``deployments``: per (environment, service, artifact id) the first rollout result;
- ``rollbacks``: every rollback request, by event id.

One event is one transaction: its inbox row first (``ON CONFLICT DO NOTHING``: a redelivered
event, on this replica or another, finds its row and writes nothing more), then its
projection rows. The ``deployments`` row keeps the earliest result whatever the arrival
order: it is inserted if missing, else locked (``FOR UPDATE``) and merged.

Migrations: the schema is created on start (``metadata.create_all``, under an advisory lock on
PostgreSQL so that replicas starting together do not race), and a nullable column added since
a database was created is added to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ferry_insights.adapters.tables import (
    add_missing_columns,
    at,
    change_of_row,
    changes,
    deployment_of,
    deployment_values,
    deployments,
    inbox,
    metadata,
    rollbacks,
    rollout_results,
)
from ferry_insights.domain.dora import Window
from ferry_insights.domain.facts import (
    Change,
    Deployment,
    Facts,
    Outcome,
    RollbackRequest,
    RolloutResult,
    first_result,
)

_SCHEMA_LOCK = 0x466572727949  # "FerryI": the advisory lock of schema changes


@dataclass(frozen=True, slots=True)
class DoraInputs:
    """The facts one DORA answer is computed from."""

    deployments: list[Deployment]
    changes: dict[tuple[str, str], Change]
    rollbacks: list[RollbackRequest]
    successes: list[RolloutResult]


class Store:
    """Every projection insights keeps."""

    def __init__(self, url: str) -> None:
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["pool_recycle"] = 1800
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        if self.is_sqlite:
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    async def create_schema(self) -> None:
        async with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})"))
            await conn.run_sync(metadata.create_all)
            await conn.run_sync(add_missing_columns)

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> bool:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        return True

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        lock: AbstractAsyncContextManager[Any] = self._write_lock or nullcontext()
        async with lock, self.engine.begin() as conn:
            yield conn

    def _insert(self, conn: AsyncConnection, table: sa.Table) -> Any:
        return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)

    # ------------------------------------------------------------------ writes

    async def record(self, facts: Facts, *, received_at: datetime) -> bool:
        """Project one event; False when its id was already recorded (nothing written)."""
        for attempt in range(5):
            try:
                async with self._transaction() as conn:
                    return await self._record(conn, facts, received_at)
            except IntegrityError:  # a replica wrote the same key at the same moment: again
                if attempt == 4:
                    raise
        return False  # pragma: no cover - the loop returns or raises

    async def _record(self, conn: AsyncConnection, facts: Facts, received_at: datetime) -> bool:
        r = facts.record
        inserted = await conn.execute(
            self._insert(conn, inbox)
            .values(
                event_id=r.event_id,
                event_type=r.event_type,
                time=r.time,
                service=r.service,
                environment=r.environment,
                release_id=r.release_id,
                artifact_id=r.artifact_id,
                data=r.data,
                received_at=received_at,
            )
            .on_conflict_do_nothing(index_elements=["event_id"])
        )
        if not inserted.rowcount:
            return False
        if facts.change is not None:
            await self._save_change(conn, facts.change)
        if facts.rollout is not None:
            await self._save_result(conn, facts.rollout)
        if facts.rollback is not None:
            b = facts.rollback
            await conn.execute(
                rollbacks.insert().values(
                    event_id=b.event_id,
                    environment=b.environment,
                    service=b.service,
                    release_id=b.release_id,
                    requested_at=b.requested_at,
                )
            )
        return True

    async def _save_change(self, conn: AsyncConnection, change: Change) -> None:
        values = {
            "squad": change.squad,
            "branch": change.branch,
            "sha": change.sha,
            "author_name": change.author_name,
            "author_email": change.author_email,
            "message": change.message,
            "committed_at": change.committed_at,
            "ci_start": change.ci_start,
            "ci_job_url": change.ci_job_url,
        }
        statement = self._insert(conn, changes).values(
            service=change.service, artifact_id=change.artifact_id, **values
        )
        await conn.execute(
            statement.on_conflict_do_update(index_elements=["service", "artifact_id"], set_=values)
        )

    async def _save_result(self, conn: AsyncConnection, result: RolloutResult) -> None:
        await conn.execute(
            rollout_results.insert().values(
                event_id=result.event_id,
                environment=result.environment,
                service=result.service,
                artifact_id=result.artifact_id,
                outcome=result.outcome.value,
                observed_at=result.observed_at,
                release_id=result.release_id,
            )
        )
        fresh = first_result(None, result)
        created = await conn.execute(
            self._insert(conn, deployments)
            .values(**deployment_values(fresh))
            .on_conflict_do_nothing(index_elements=["environment", "service", "artifact_id"])
        )
        if created.rowcount:
            return
        key = (
            (deployments.c.environment == result.environment)
            & (deployments.c.service == result.service)
            & (deployments.c.artifact_id == result.artifact_id)
        )
        row = (
            (await conn.execute(sa.select(deployments).where(key).with_for_update()))
            .mappings()
            .one()
        )
        merged = first_result(deployment_of(row), result)
        await conn.execute(deployments.update().where(key).values(**deployment_values(merged)))

    # ------------------------------------------------------------------ reads

    async def dora_inputs(
        self, environment: str, window: Window, *, service: str | None, squad: str | None
    ) -> DoraInputs:
        d, c = deployments, changes
        query = (
            sa.select(d, *(col.label(f"c_{col.name}") for col in c.columns))
            .select_from(
                d.outerjoin(c, (c.c.service == d.c.service) & (c.c.artifact_id == d.c.artifact_id))
            )
            .where(d.c.environment == environment, d.c.at >= window.start, d.c.at < window.end)
        )
        if service:
            query = query.where(d.c.service == service)
        if squad:
            query = query.where(c.c.squad == squad)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
            found = [deployment_of(row) for row in rows]
            known = {
                (row["service"], row["artifact_id"]): change_of_row(row)
                for row in rows
                if row["c_service"] is not None
            }
            services = {x.service for x in found}
            backs = await self._rollbacks(conn, environment, window, services)
            wins = await self._successes(conn, environment, window, services)
        return DoraInputs(found, known, backs, wins)

    async def _rollbacks(
        self, conn: AsyncConnection, environment: str, window: Window, services: set[str]
    ) -> list[RollbackRequest]:
        if not services:
            return []
        b = rollbacks
        rows = await conn.execute(
            sa.select(b).where(
                b.c.environment == environment,
                b.c.requested_at >= window.start,
                b.c.requested_at < window.end,
                b.c.service.in_(sorted(services)),
            )
        )
        return [
            RollbackRequest(
                event_id=row["event_id"],
                environment=row["environment"],
                service=row["service"],
                release_id=row["release_id"],
                requested_at=at(row["requested_at"]),
            )
            for row in rows.mappings()
        ]

    async def _successes(
        self, conn: AsyncConnection, environment: str, window: Window, services: set[str]
    ) -> list[RolloutResult]:
        if not services:
            return []
        r = rollout_results
        rows = await conn.execute(
            sa.select(r).where(
                r.c.environment == environment,
                r.c.outcome == Outcome.SUCCEEDED.value,
                r.c.observed_at >= window.start,
                r.c.observed_at < window.end,
                r.c.service.in_(sorted(services)),
            )
        )
        return [
            RolloutResult(
                event_id=row["event_id"],
                environment=row["environment"],
                service=row["service"],
                artifact_id=row["artifact_id"],
                outcome=Outcome(row["outcome"]),
                observed_at=at(row["observed_at"]),
                release_id=row["release_id"],
            )
            for row in rows.mappings()
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


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


__all__: Sequence[str] = ("DoraInputs", "Store", "metadata")
