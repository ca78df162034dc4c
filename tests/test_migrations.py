"""Schema migrations (Alembic) of promotion, notifier and insights, on SQLite and PostgreSQL.

- A new database is migrated to the newest revision, and then holds exactly the tables,
  columns and indexes the code declares (no drift: a column added without its migration
  fails here).
- A database made by the release before migrations (``metadata.create_all``, some of its
  nullable columns added only later), with rows in it, is taken over in place by the
  service's own start-up: its rows are kept and the missing columns are added.
- Two replicas starting at once on one PostgreSQL database take turns: one migrates, the
  other finds nothing to do, neither fails.
- Every revision only adds (expand), unless it says ``contract = True``.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import importlib.util
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from ferry_insights.adapters.db import Store as InsightsStore
from ferry_notifier.adapters.store import Store as NotifierStore
from ferry_promotion.adapters.db import Store as PromotionStore
from ferry_runtime.migrations import current_revision, head_revision, schema_drift
from ferry_testing.database import postgres_answers, postgres_database

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


async def _promotion(url: str) -> list[str]:
    store = PromotionStore(url)
    try:
        return await store.create_schema()
    finally:
        await store.close()


async def _notifier(url: str) -> list[str]:
    store = NotifierStore.from_url(url)
    try:
        return await store.create()
    finally:
        await store.close()


async def _insights(url: str) -> list[str]:
    store = InsightsStore(url)
    try:
        return await store.create_schema()
    finally:
        await store.close()


#: service -> (migrations package, module of the code's tables, start-up, an older release's
#: table lacking a nullable column added later, that column, a row of that table)
SERVICES: dict[str, tuple[str, str, Callable[[str], Any], str, str | None, dict[str, Any]]] = {
    "promotion": (
        "ferry_promotion.adapters",
        "ferry_promotion.adapters.db",
        _promotion,
        "releases",
        "superseded_by",
        {
            "release_id": "rel-old-1",
            "service": "payments",
            "environment": "prod",
            "intent": "release",
            "status": "rolled-out",
            "actor_subject": "jane",
            "actor_email": "jane@example.com",
            "actor_name": "Jane",
            "reason": "",
            "override_freeze": False,
            "requested_at": NOW,
            "updated_at": NOW,
            "author_email": "",
            "author_name": "",
            "artifact_branch": "",
            "violations": [],
            "approvals_required": 0,
            "exclude_author": False,
            "correlation_id": "rel-old-1",
        },
    ),
    "notifier": (
        "ferry_notifier.adapters",
        "ferry_notifier.adapters.tables",
        _notifier,
        "artifacts",
        None,
        {"artifact_id": "master-1", "data": '{"id": "master-1"}'},
    ),
    "insights": (
        "ferry_insights.adapters",
        "ferry_insights.adapters.tables",
        _insights,
        "changes",
        "committed_at",
        {
            "service": "payments",
            "artifact_id": "master-1",
            "squad": "money",
            "branch": "master",
            "sha": "a" * 40,
            "author_name": "Jane",
            "author_email": "jane@example.com",
            "message": "fix",
            "ci_start": NOW,
            "ci_job_url": "",
        },
    ),
}


def _baseline(package: str) -> ModuleType:
    """The first revision's module (its frozen tables are the release before migrations)."""
    spec = importlib.import_module(package).__path__[0]
    path = Path(spec) / "migrations" / "versions" / "0001_baseline.py"
    loaded = importlib.util.spec_from_file_location(f"_baseline_{package}", path)
    assert loaded is not None
    assert loaded.loader is not None
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"
        return
    if not postgres_answers():
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    async with postgres_database() as url:
        yield url


async def _inspect(url: str, work: Callable[[sa.Connection], Any]) -> Any:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(work)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("service", SERVICES)
async def test_a_new_database_is_migrated_to_head_and_matches_the_code(
    service: str, database: str
) -> None:
    package, tables, start_up, *_ = SERVICES[service]
    metadata = importlib.import_module(tables).metadata
    applied = await start_up(database)
    assert applied == ["0001"] or applied[0] == "0001"
    assert applied[-1] == head_revision(package)

    revision, drift = await _inspect(
        database, lambda conn: (current_revision(conn), schema_drift(conn, metadata))
    )
    assert revision == head_revision(package)
    assert drift == [], f"{service}'s tables differ from its migrations: {drift}"
    # started again (a restart, or a second replica later): nothing left to do
    assert await start_up(database) == []


@pytest.mark.parametrize("service", SERVICES)
async def test_a_database_of_the_release_before_migrations_is_taken_over_with_its_rows(
    service: str, database: str
) -> None:
    package, tables, start_up, table_name, later_column, row = SERVICES[service]
    old = _baseline(package).metadata

    def release_before(conn: sa.Connection) -> None:
        # what the release before did at start-up: create_all, from before `later_column`
        old.create_all(conn)
        if later_column is not None:
            conn.exec_driver_sql(f'ALTER TABLE "{table_name}" DROP COLUMN "{later_column}"')
        table = old.tables[table_name]
        values = {k: v for k, v in row.items() if k != later_column}
        columns = [sa.column(c.name, c.type) for c in table.columns if c.name in values]
        conn.execute(sa.insert(sa.table(table_name, *columns)).values(**values))

    await _inspect(database, release_before)
    assert await _inspect(database, current_revision) is None

    applied = await start_up(database)
    assert applied[0] == "0001"

    metadata = importlib.import_module(tables).metadata

    def after(conn: sa.Connection) -> tuple[Any, ...]:
        rows = conn.execute(sa.select(metadata.tables[table_name])).mappings().all()
        return current_revision(conn), [dict(r) for r in rows], schema_drift(conn, metadata)

    revision, rows, drift = await _inspect(database, after)
    assert revision == head_revision(package)
    assert drift == []
    [kept] = rows
    key = next(iter(row))
    assert kept[key] == row[key]
    if later_column is not None:
        assert later_column in kept
        assert kept[later_column] is None


@pytest.mark.parametrize("service", SERVICES)
async def test_two_replicas_starting_at_once_on_postgresql_take_turns(service: str) -> None:
    if not postgres_answers():
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    package, _, start_up, *_ = SERVICES[service]
    async with postgres_database() as url:
        first, second = await asyncio.gather(start_up(url), start_up(url))
        assert sorted([first, second], key=len)[0] == []
        assert max(first, second, key=len)[-1] == head_revision(package)


def _contracting(source: str) -> list[str]:
    """What the ``upgrade()`` of a revision does that an old replica could trip over: a drop,
    a rename, an altered column, or a required column added without a server default."""
    tree = ast.parse(source)
    [upgrade] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "upgrade"]
    found = []
    for node in ast.walk(upgrade):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name = node.func.attr
        if name.startswith("drop_") or name in {"alter_column", "rename_table"}:
            found.append(f"op.{name}")
        if name == "add_column":
            for column in (a for a in node.args if isinstance(a, ast.Call)):
                keywords = {k.arg: k.value for k in column.keywords}
                required = keywords.get("nullable")
                if (
                    isinstance(required, ast.Constant)
                    and required.value is False
                    and "server_default" not in keywords
                ):
                    found.append("op.add_column of a required column with no server_default")
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_every_revision_only_expands_unless_it_says_it_contracts(service: str) -> None:
    package = SERVICES[service][0]
    versions = Path(importlib.import_module(package).__path__[0]) / "migrations" / "versions"
    revisions = sorted(versions.glob("*.py"))
    assert revisions, f"{service} has no migrations"
    for path in revisions:
        text = path.read_text(encoding="utf-8")
        if "contract = True" in text:
            continue
        found = _contracting(text)
        assert not found, (
            f"{path.name} contracts the schema ({', '.join(found)}) without contract = True: "
            "an old replica still running during a rolling upgrade would break; add the new "
            "shape first and drop the old one in a later release"
        )


def test_the_expand_check_sees_a_contracting_revision() -> None:
    assert _contracting(
        "def upgrade():\n"
        "    op.add_column('t', sa.Column('c', sa.Text(), nullable=False))\n"
        "    op.drop_column('t', 'd')\n"
    ) == ["op.add_column of a required column with no server_default", "op.drop_column"]
    assert not _contracting(
        "def upgrade():\n"
        "    op.add_column('t', sa.Column('c', sa.Text(), nullable=False, server_default=''))\n"
        "    op.create_table('u', sa.Column('id', sa.Integer(), nullable=False))\n"
    )
