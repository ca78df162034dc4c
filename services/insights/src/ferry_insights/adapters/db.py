"""Insights' projections through SQLAlchemy 2 (async): SQLite by default, PostgreSQL by URL.

Tables:

- ``inbox``: every event consumed, by event id (the primary key), with its time and what it is
  about; the timeline of the dashboard reads it;
- ``changes``: per (service, artifact id) the change it was built from (``artifact.*``);
- ``rollout_results``: every ``rollout.succeeded`` / ``rollout.failed``, by event id;
- ``deployments``: per (environment, service, artifact id) the first rollout result, with
  the DORA columns kept at write time (``adapters/dora_projection.py``);
- ``rollbacks``: every rollback request, by event id;
- ``cells``: per service and environment what runs there (``adapters/places.py``), whose row
  is also the place's lock.

One event is one transaction: its inbox row first (``ON CONFLICT DO NOTHING``: a redelivered
event, on this replica or another, finds its row and writes nothing more), then its change,
then the lock of the place it is about (when it is about one), then its projection rows. The
``deployments`` row keeps the earliest result whatever the arrival order: it is inserted if
missing, else locked (``FOR UPDATE``) and merged; then the DORA columns its facts may change
are computed again, in SQL, from the stored facts. Reads aggregate in SQL
(``adapters/dora_reads.py``) and read the cells as they are (``adapters/board.py``).

A replica of the release before 0003, running beside this one in a rolling upgrade, writes
facts without the DORA columns and without the cells, and leaves ``inbox.projected`` NULL;
:meth:`Store.repair` (every replica, on a timer) projects those places again.

Migrations: the schema is migrated on start with Alembic (``adapters/migrations``, under an
advisory lock on PostgreSQL so that replicas starting together take turns; how migrations
are written: ``ferry_runtime.migrations``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ferry_insights.adapters import dora_projection, places
from ferry_insights.adapters.dora_reads import DoraReads
from ferry_insights.adapters.tables import (
    PROJECTED,
    changes,
    deployment_of,
    deployment_values,
    deployments,
    inbox,
    metadata,
    micros,
    micros_or_none,
    record_of_row,
    rollbacks,
    rollout_results,
    utc,
)
from ferry_insights.domain.facts import (
    Change,
    Deployment,
    Facts,
    Outcome,
    RollbackRequest,
    RolloutResult,
    first_result,
)
from ferry_runtime.migrations import upgrade

#: What the database raises when it cannot be used at all (at start: stop with a hint).
DATABASE_ERRORS: Final = (SQLAlchemyError, OSError)


@dataclass(frozen=True, slots=True)
class DatabaseFailure:
    """A database error while projecting, told without SQLAlchemy."""

    #: The database refused the event's values (SQLSTATE class 22): the same every time.
    refused_values: bool
    detail: str


def database_failure(exc: BaseException) -> DatabaseFailure | None:
    """What ``exc`` says of the database, or None when it is not a database error."""
    if not isinstance(exc, DBAPIError):
        return None
    state = str(getattr(exc.orig, "sqlstate", "") or "")
    return DatabaseFailure(refused_values=state.startswith("22"), detail=str(exc.orig)[:300])


_SCHEMA_LOCK = 0x466572727949  # "FerryI": the advisory lock of schema changes


class Store(DoraReads):
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

    async def create_schema(self) -> list[str]:
        """Migrate the database to the newest revision; the revisions applied."""
        async with self.engine.begin() as conn:
            return await conn.run_sync(
                lambda sync: upgrade(sync, "ferry_insights.adapters", lock_key=_SCHEMA_LOCK)
            )

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

    # ------------------------------------------------------------------ repair

    async def repair(self, *, places_at_once: int = 20) -> int:
        """Project what a replica of the release before 0003 wrote (its inbox rows have no
        ``projected``; a rolling upgrade runs it beside this one): the places of up to
        ``places_at_once`` such rows are projected again under their locks, with the
        statements of the write path, and the rows marked; the number of rows marked (0,
        after one indexed look-up, when there is nothing to repair). Idempotent: replicas
        repairing the same place at once take turns on its lock and compute the same values;
        a fact written by the release before meanwhile stays unmarked for the next pass."""
        unmarked = inbox.c.projected.is_(None)
        async with self.engine.connect() as conn:
            found = await conn.execute(
                sa.select(inbox.c.service, inbox.c.environment).where(unmarked).limit(500)
            )
            wanted = sorted({(row[0], row[1]) for row in found})[:places_at_once]
        if not wanted:
            return 0
        async with self._transaction() as conn:
            return await self._repair(conn, wanted)

    async def _repair(self, conn: AsyncConnection, wanted: list[places.Place]) -> int:
        locked = await places.lock(conn, [(s, e) for s, e in wanted if e])
        key = sa.tuple_(inbox.c.service, inbox.c.environment)
        rows = (
            (
                await conn.execute(
                    sa.select(inbox).where(inbox.c.projected.is_(None), key.in_(wanted))
                )
            )
            .mappings()
            .all()
        )
        if not rows:
            return 0  # another replica repaired them first
        records = [record_of_row(row) for row in rows]
        # changes: the release before upserted them without their moment
        artifacts = sorted({(r.service, r.artifact_id) for r in records if r.artifact_id})
        if artifacts:
            c = changes
            query = sa.select(c).where(sa.tuple_(c.c.service, c.c.artifact_id).in_(artifacts))
            for row in (await conn.execute(query)).mappings().all():
                moment = row["committed_at"] or row["ci_start"]
                await conn.execute(
                    c.update()
                    .where(c.c.service == row["service"], c.c.artifact_id == row["artifact_id"])
                    .values(changed_us=micros_or_none(moment))
                )
        for service, environment in sorted(locked):
            await self._repair_place(conn, environment, service)
        await places.update_cells(
            conn, locked, [r for r in records if (r.service, r.environment) in locked]
        )
        ids = [row["event_id"] for row in rows]
        for chunk in _chunks(ids):
            await conn.execute(
                inbox.update().where(inbox.c.event_id.in_(chunk)).values(projected=PROJECTED)
            )
        return len(ids)

    async def _repair_place(self, conn: AsyncConnection, environment: str, service: str) -> None:
        """Every moment of the place in microseconds (the release before wrote none and
        moved ``at`` without ``at_us``), then every DORA column of the place again."""
        for table, key, moments in (
            (rollout_results, ("event_id",), {"observed_us": "observed_at"}),
            (rollbacks, ("event_id",), {"requested_us": "requested_at"}),
            (
                deployments,
                ("artifact_id",),
                {"at_us": "at", "succeeded_us": "succeeded_at"},
            ),
        ):
            place = (table.c.environment == environment) & (table.c.service == service)
            if table is not deployments:  # inserted once: only the rows without it
                place = place & table.c[next(iter(moments))].is_(None)
            query = sa.select(*(table.c[k] for k in (*key, *moments, *moments.values())))
            values = []
            for row in (await conn.execute(query.where(place))).mappings().all():
                fresh = {c: micros_or_none(utc(row[m])) for c, m in moments.items()}
                if any(row[c] != v for c, v in fresh.items()):
                    values.append({**{f"k_{k}": row[k] for k in key}, **fresh})
            if values:
                where = sa.and_(place, *(table.c[k] == sa.bindparam(f"k_{k}") for k in key))
                update = table.update().where(where)
                await conn.execute(update.values({c: sa.bindparam(c) for c in moments}), values)
        of_place = (deployments.c.environment == environment) & (deployments.c.service == service)
        for statement in dora_projection.refresh(of_place):
            await conn.execute(statement)

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

    async def record_many(self, batch: Sequence[Facts], *, received_at: datetime) -> int:
        """Project many events in one transaction, a statement per table rather than per event
        (a replay, a back-fill, the benchmark); the number of events that were new.

        The same rules as :meth:`record`: an event id already recorded (here, by another
        replica, or earlier in the batch) writes nothing, a change's last word counts, and each
        deployment keeps its earliest result (rows locked ``FOR UPDATE`` on PostgreSQL). A
        replica that writes one of these keys at the same moment makes the batch start again.
        """
        for attempt in range(5):
            try:
                async with self._transaction() as conn:
                    return await self._record_many(conn, batch, received_at)
            except IntegrityError:
                if attempt == 4:
                    raise
        return 0  # pragma: no cover - the loop returns or raises

    async def _record_many(
        self, conn: AsyncConnection, batch: Sequence[Facts], received_at: datetime
    ) -> int:
        known: set[str] = set()
        for chunk in _chunks(sorted({f.record.event_id for f in batch})):
            found = await conn.execute(
                sa.select(inbox.c.event_id).where(inbox.c.event_id.in_(chunk))
            )
            known.update(row[0] for row in found)
        new: list[Facts] = []
        for facts in batch:  # the first of an id counts, as one by one
            if facts.record.event_id not in known:
                known.add(facts.record.event_id)
                new.append(facts)
        if not new:
            return 0
        await conn.execute(
            inbox.insert(),
            [
                {
                    "event_id": f.record.event_id,
                    "event_type": f.record.event_type,
                    "time": f.record.time,
                    "service": f.record.service,
                    "environment": f.record.environment,
                    "release_id": f.record.release_id,
                    "artifact_id": f.record.artifact_id,
                    "data": f.record.data,
                    "received_at": received_at,
                    "projected": PROJECTED,
                }
                for f in new
            ],
        )
        # one row per change, its last word (as one upsert after another would leave it)
        made = list(
            {
                (f.change.service, f.change.artifact_id): _change_values(f.change)
                for f in new
                if f.change is not None
            }.values()
        )
        if made:
            upsert = self._insert(conn, changes)
            await conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=["service", "artifact_id"],
                    set_={k: upsert.excluded[k] for k in made[0] if k not in _CHANGE_KEY},
                ),
                made,
            )
        touched = set().union(*(places.places_of(f) for f in new))
        locked = await places.lock(conn, touched)
        backs = [f.rollback for f in new if f.rollback is not None]
        if backs:
            await conn.execute(rollbacks.insert(), [_rollback_values(b) for b in backs])
        results = [f.rollout for f in new if f.rollout is not None]
        if results:
            await self._save_results(conn, results)
        # every DORA column of the places this batch wrote facts of, computed again
        dora = sorted(
            {(r.environment, r.service) for r in results}
            | {(b.environment, b.service) for b in backs}
        )
        moments = [micros(r.observed_at) for r in results]
        moments += [micros(b.requested_at) for b in backs]
        for chunk in _chunks(sorted(dora)):
            for statement in dora_projection.after_batch(chunk, min(moments)):
                await conn.execute(statement)
        await places.update_cells(conn, locked, [f.record for f in new])
        return len(new)

    async def _save_results(self, conn: AsyncConnection, results: list[RolloutResult]) -> None:
        await conn.execute(rollout_results.insert(), [_result_values(r) for r in results])
        keys = sorted({(r.environment, r.service, r.artifact_id) for r in results})
        current: dict[tuple[str, str, str], Deployment] = {}
        d = deployments
        for chunk in _chunks(keys):
            query = sa.select(d).where(
                sa.tuple_(d.c.environment, d.c.service, d.c.artifact_id).in_(chunk)
            )
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            for row in (await conn.execute(query)).mappings():
                found = deployment_of(row)
                current[(found.environment, found.service, found.artifact_id)] = found
        existing = set(current)
        for result in results:
            key = (result.environment, result.service, result.artifact_id)
            current[key] = first_result(current.get(key), result)
        fresh = [deployment_values(v) for k, v in current.items() if k not in existing]
        if fresh:
            await conn.execute(d.insert(), fresh)
        changed = [
            {f"k_{name}": value for name, value in deployment_values(v).items()}
            for k, v in current.items()
            if k in existing
        ]
        if changed:
            await conn.execute(
                d.update()
                .where(
                    (d.c.environment == sa.bindparam("k_environment"))
                    & (d.c.service == sa.bindparam("k_service"))
                    & (d.c.artifact_id == sa.bindparam("k_artifact_id"))
                )
                .values(
                    at=sa.bindparam("k_at"),
                    failed_rollout=sa.bindparam("k_failed_rollout"),
                    event_id=sa.bindparam("k_event_id"),
                    succeeded_at=sa.bindparam("k_succeeded_at"),
                    at_us=sa.bindparam("k_at_us"),
                    succeeded_us=sa.bindparam("k_succeeded_us"),
                ),
                changed,
            )

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
                projected=PROJECTED,
            )
            .on_conflict_do_nothing(index_elements=["event_id"])
        )
        if not inserted.rowcount:
            return False
        if facts.change is not None:
            await self._save_change(conn, facts.change)
        locked = await places.lock(conn, places.places_of(facts))
        if facts.rollout is not None:
            await self._save_result(conn, facts.rollout)
        if facts.rollback is not None:
            b = facts.rollback
            await conn.execute(rollbacks.insert().values(**_rollback_values(b)))
            moment = micros(b.requested_at)
            for statement in dora_projection.since_rollback(
                b.environment, b.service, moment, moment
            ):
                await conn.execute(statement)
        await places.update_cells(conn, locked, [r])
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
            "changed_us": micros_or_none(change.changed_at),
        }
        statement = self._insert(conn, changes).values(
            service=change.service, artifact_id=change.artifact_id, **values
        )
        await conn.execute(
            statement.on_conflict_do_update(index_elements=["service", "artifact_id"], set_=values)
        )

    async def _save_result(self, conn: AsyncConnection, result: RolloutResult) -> None:
        await conn.execute(rollout_results.insert().values(**_result_values(result)))
        moved = await self._merge_deployment(conn, result)
        env, service = result.environment, result.service
        if moved is not None:
            low, high = (micros(moment) for moment in moved)
            where = dora_projection.around(env, service, low, high)
            for statement in dora_projection.refresh(where):
                await conn.execute(statement)
        if result.outcome is Outcome.SUCCEEDED:
            moment = micros(result.observed_at)
            await conn.execute(dora_projection.restored_only(env, service, moment, moment))

    async def _merge_deployment(
        self, conn: AsyncConnection, result: RolloutResult
    ) -> tuple[datetime, datetime] | None:
        """Keep the deployment's earliest result; the moments between which its row changed
        (earliest first), or None when it did not change."""
        fresh = first_result(None, result)
        created = await conn.execute(
            self._insert(conn, deployments)
            .values(**deployment_values(fresh))
            .on_conflict_do_nothing(index_elements=["environment", "service", "artifact_id"])
        )
        if created.rowcount:
            return (fresh.at, fresh.at)
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
        known = deployment_of(row)
        merged = first_result(known, result)
        if merged == known and row["at_us"] is not None:
            return None
        await conn.execute(deployments.update().where(key).values(**deployment_values(merged)))
        return (min(known.at, merged.at), max(known.at, merged.at))


_CHANGE_KEY = ("service", "artifact_id")


def _chunks(values: Sequence[Any], size: int = 400) -> list[Sequence[Any]]:
    """Pieces small enough for SQLite's limit of bound parameters in one statement."""
    return [values[i : i + size] for i in range(0, len(values), size)]


def _change_values(change: Change) -> dict[str, Any]:
    return {
        "service": change.service,
        "artifact_id": change.artifact_id,
        "squad": change.squad,
        "branch": change.branch,
        "sha": change.sha,
        "author_name": change.author_name,
        "author_email": change.author_email,
        "message": change.message,
        "committed_at": change.committed_at,
        "ci_start": change.ci_start,
        "ci_job_url": change.ci_job_url,
        "changed_us": micros_or_none(change.changed_at),
    }


def _rollback_values(rollback: RollbackRequest) -> dict[str, Any]:
    return {
        "event_id": rollback.event_id,
        "environment": rollback.environment,
        "service": rollback.service,
        "release_id": rollback.release_id,
        "requested_at": rollback.requested_at,
        "requested_us": micros(rollback.requested_at),
    }


def _result_values(result: RolloutResult) -> dict[str, Any]:
    return {
        "event_id": result.event_id,
        "environment": result.environment,
        "service": result.service,
        "artifact_id": result.artifact_id,
        "outcome": result.outcome.value,
        "observed_at": result.observed_at,
        "release_id": result.release_id,
        "observed_us": micros(result.observed_at),
    }


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


__all__: Sequence[str] = ("Store", "metadata")
