"""Schema migrations of a service's own database, with Alembic, run at start-up under a lock.

A service with a database (promotion, notifier, insights) keeps its migrations in
``<package>.adapters:migrations`` (``env.py`` calls :func:`run_env`; ``versions/`` holds one
file per revision). :func:`upgrade` brings a database to the newest revision inside the
service's start-up transaction. On PostgreSQL it first takes a transaction-scoped advisory
lock, so replicas starting at once take turns: the first one migrates, the others find
nothing left to do. On SQLite one process owns the file.

Every migration is **expand then contract**, so that an old and a new replica can run side
by side during a rolling upgrade:

- *expand* (any release): new tables, new nullable columns or columns with a server
  default, new indexes. Code of the release before keeps working: it neither reads nor
  writes what it does not know.
- *contract* (a later release, once no replica of the release before runs): drop what
  the code stopped using. A revision that drops or narrows anything sets
  ``contract = True``; ``tests`` hold the others to adding only.

The first revision of each service, ``0001``, is the schema as it was created before
there were migrations (``metadata.create_all`` with columns added at start-up). It creates
what is missing and adds the nullable columns a database of an older release lacks, so
a database made by any earlier release is taken over in place, its rows kept.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import sqlalchemy as sa
from alembic import command, context
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext, MigrationInfo

from ferry_runtime.logging import get_logger

log = get_logger(__name__)

__all__ = ["current_revision", "head_revision", "run_env", "schema_drift", "upgrade"]


def _config(package: str, connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", f"{package}:migrations")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(connection: sa.Connection, package: str, *, lock_key: int) -> list[str]:
    """Migrate the database of ``connection`` (in a transaction) to the newest revision of
    ``package``'s migrations; returns the revisions applied, oldest first."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({int(lock_key)})")
    # Alembic's own lines ("Context impl ...", each step) are noise beside the one line below
    logging.getLogger("alembic").setLevel(logging.WARNING)
    config = _config(package, connection)
    applied: list[str] = []
    config.attributes["applied"] = applied
    command.upgrade(config, "head")
    if applied:
        log.info("database migrated", package=package, revisions=applied)
    return applied


def run_env(target_metadata: sa.MetaData) -> None:
    """The body of a service's ``migrations/env.py``: run on the connection it was given."""
    attributes: dict[str, Any] = context.config.attributes
    connection = attributes["connection"]
    applied: list[str] = attributes.setdefault("applied", [])

    def note(
        ctx: MigrationContext, step: MigrationInfo, heads: Collection[Any], run_args: Any
    ) -> None:
        del ctx, heads, run_args
        applied.append(str(step.up_revision_id))

    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        on_version_apply=note,
    )
    with context.begin_transaction():
        context.run_migrations()


def current_revision(connection: sa.Connection) -> str | None:
    """The revision the database is at (None: never migrated)."""
    return MigrationContext.configure(connection).get_current_revision()


def head_revision(package: str) -> str | None:
    """The newest revision of ``package``'s migrations."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config(package)).get_current_head()


def schema_drift(connection: sa.Connection, metadata: sa.MetaData) -> list[Any]:
    """What differs between the migrated database and the tables the code declares: empty
    when every table, column and index the code uses has its migration."""
    migration = MigrationContext.configure(connection, opts={"compare_type": False})
    return list(compare_metadata(migration, metadata))


def create_missing(connection: sa.Connection, metadata: sa.MetaData) -> None:
    """Create the tables and indexes of ``metadata`` that the database lacks, and add the
    nullable columns its existing tables lack: how the first revision takes over a
    database that an earlier release made with ``create_all``, keeping its rows."""
    inspector = sa.inspect(connection)
    present = set(inspector.get_table_names())
    for table in metadata.sorted_tables:
        if table.name not in present:
            table.create(connection)
            continue
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in columns:
                continue
            if not column.nullable:
                raise RuntimeError(
                    f"table {table.name} lacks the required column {column.name}: "
                    "this database was not made by a release of this service"
                )
            kind = column.type.compile(dialect=connection.dialect)
            connection.exec_driver_sql(
                f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}'
            )
        indexes = {i["name"] for i in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(connection)


def index(metadata: sa.MetaData, name: str, table: str, columns: list[str]) -> sa.Index:
    """``op.create_index``'s arguments as an index of a table of ``metadata``."""
    found = metadata.tables[table]
    return sa.Index(name, *(found.c[column] for column in columns))
