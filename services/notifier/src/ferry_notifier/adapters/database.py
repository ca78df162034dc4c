"""The notifier's database connection: one transaction in one step, on SQLite or PostgreSQL.

Each operation is one transaction written as a plain function of a SQLAlchemy
``Connection``, run in one step: on PostgreSQL through the asyncpg async engine
(``AsyncConnection.run_sync``), on SQLite on one dedicated thread with the
standard ``sqlite3`` driver. (The aiosqlite driver hands every cursor call to its
thread, about 40 hand-offs per event; this is one per transaction, and SQLite
writes one transaction at a time anyway.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self, TypeVar

from sqlalchemy import Table, create_engine, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.sql.expression import Executable

from ferry_runtime.migrations import upgrade


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    # WAL: readers never wait for the writer. synchronous=NORMAL: a commit survives a
    # process crash; a power cut may lose the last ones, which can repeat a message,
    # never lose one (the event is acked only after its records are written).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


T = TypeVar("T")

#: The advisory lock key under which the notifier migrates its database ("ferry-ntf").
_SCHEMA_LOCK = 0x6665727279_6E7466


class Database:
    """The engine, and transactions run on it."""

    def __init__(
        self, *, async_engine: AsyncEngine | None = None, sync_engine: Engine | None = None
    ):
        if (async_engine is None) == (sync_engine is None):
            raise ValueError("give exactly one engine")
        self._async = async_engine
        self._sync = sync_engine
        self._thread = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="notifier-sqlite")
            if sync_engine is not None
            else None
        )
        engine = async_engine or sync_engine
        assert engine is not None
        self.dialect: str = engine.dialect.name

    @classmethod
    def from_url(cls, url: str) -> Self:
        """``sqlite+aiosqlite:///path`` (or ``sqlite:///path``) or ``postgresql+asyncpg://...``."""
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite":
            return cls(async_engine=create_async_engine(url, pool_recycle=1800))
        path = parsed.database or ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed.set(drivername="sqlite+pysqlite"), pool_size=1)
        event.listen(engine, "connect", _sqlite_pragmas)
        return cls(sync_engine=engine)

    async def _run(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one transaction, committed when it returns."""
        if self._sync is not None:
            assert self._thread is not None
            sync = self._sync

            def transaction() -> T:
                with sync.begin() as conn:
                    return work(conn)

            return await asyncio.get_running_loop().run_in_executor(self._thread, transaction)
        assert self._async is not None
        async with self._async.begin() as conn:
            return await conn.run_sync(work)

    async def _execute(self, statement: Executable) -> None:
        """One statement, which is its own transaction (on PostgreSQL without BEGIN/COMMIT
        round trips)."""
        if self._async is None:
            await self._run(lambda conn: conn.execute(statement))
            return
        async with self._async.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await auto.execute(statement)

    async def create(self) -> list[str]:
        """Migrate the database to the newest revision (``adapters/migrations``); the
        revisions applied. Replicas starting at once on PostgreSQL take turns (a
        transaction-scoped advisory lock)."""
        return await self._run(
            lambda conn: upgrade(conn, "ferry_notifier.adapters", lock_key=_SCHEMA_LOCK)
        )

    async def ping(self) -> bool:
        await self._run(lambda conn: conn.exec_driver_sql("SELECT 1"))
        return True

    async def close(self) -> None:
        if self._async is not None:
            await self._async.dispose()
        if self._sync is not None and self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._sync.dispose)
            self._thread.shutdown(wait=True)

    def _upsert(self, table: Table, values: dict[str, object], keys: list[str]) -> Executable:
        insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        stmt = insert(table).values(**values)
        return stmt.on_conflict_do_update(
            index_elements=keys, set_={k: v for k, v in values.items() if k not in keys}
        )
