"""0003: the projections a read no longer computes: the DORA columns of ``deployments``
(``adapters/dora_projection.py``), moments in microseconds, and the ``cells`` of what runs
where (``adapters/places.py``), with their indexes; then a back-fill from the facts already
stored, so that a database of the release before answers the same after it.

Expand only: a new table, new nullable columns, new indexes. The back-fill computes the
DORA columns with the statements of ``adapters/dora_projection.py`` of this release (they
name only columns that exist from this revision on).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op

from ferry_insights.adapters.dora_projection import refresh
from ferry_insights.domain.board import COMMITTED, ROLLOUTS, commit_rank, fact_rank
from ferry_insights.domain.facts import EventRecord

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None
contract = False

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TS = sa.DateTime(timezone=True)


def _us(value: datetime | None) -> int | None:
    if value is None:
        return None
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return (aware - _EPOCH) // timedelta(microseconds=1)


def upgrade() -> None:
    for table, column in (
        ("changes", "changed_us"),
        ("rollout_results", "observed_us"),
        ("rollbacks", "requested_us"),
        *(
            ("deployments", name)
            for name in (
                "at_us",
                "succeeded_us",
                "next_us",
                "rolled_back_us",
                "failed_us",
                "restored_us",
            )
        ),
    ):
        op.add_column(table, sa.Column(column, sa.BigInteger(), nullable=True))
    op.create_index(
        "ix_results_place_outcome_us",
        "rollout_results",
        ["environment", "service", "outcome", "observed_us"],
    )
    op.create_index("ix_deployments_env_at_us", "deployments", ["environment", "at_us"])
    op.create_index(
        "ix_deployments_place_at_us", "deployments", ["environment", "service", "at_us"]
    )
    op.create_index(
        "ix_rollbacks_place_us", "rollbacks", ["environment", "service", "requested_us"]
    )
    cells = op.create_table(
        "cells",
        sa.Column("service", sa.String(length=63), nullable=False),
        sa.Column("environment", sa.String(length=63), nullable=False),
        sa.Column("commit_event_id", sa.String(length=128), nullable=True),
        sa.Column("commit_time", _TS, nullable=True),
        sa.Column("release_id", sa.String(length=128), nullable=True),
        sa.Column("artifact_id", sa.String(length=128), nullable=True),
        sa.Column("commit_data", sa.JSON(), nullable=True),
        sa.Column("fact_event_id", sa.String(length=128), nullable=True),
        sa.Column("fact_event_type", sa.String(length=128), nullable=True),
        sa.Column("fact_time", _TS, nullable=True),
        sa.Column("fact_data", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("service", "environment"),
    )
    assert cells is not None
    bind = op.get_bind()
    _back_fill_moments(bind)
    for statement in refresh(sa.true()):
        bind.execute(statement)
    _back_fill_cells(bind, cells)


def _back_fill_moments(bind: sa.Connection) -> None:
    """Every moment the DORA columns are computed from, in microseconds."""
    meta = sa.MetaData()
    tables = {
        name: sa.Table(name, meta, autoload_with=bind)
        for name in ("changes", "rollout_results", "rollbacks", "deployments")
    }
    plan: dict[str, tuple[tuple[str, ...], dict[str, tuple[str, ...]]]] = {
        # table: (key, {new column: (moments, the first one known counts)})
        "changes": (("service", "artifact_id"), {"changed_us": ("committed_at", "ci_start")}),
        "rollout_results": (("event_id",), {"observed_us": ("observed_at",)}),
        "rollbacks": (("event_id",), {"requested_us": ("requested_at",)}),
        "deployments": (
            ("environment", "service", "artifact_id"),
            {"at_us": ("at",), "succeeded_us": ("succeeded_at",)},
        ),
    }
    for name, (key, columns) in plan.items():
        table = tables[name]
        moments = sorted({m for sources in columns.values() for m in sources})
        rows = bind.execute(sa.select(*(table.c[k] for k in (*key, *moments)))).mappings()
        values = [
            {
                **{f"k_{k}": row[k] for k in key},
                **{
                    column: next(
                        (_us(row[m]) for m in sources if row[m] is not None),
                        None,
                    )
                    for column, sources in columns.items()
                },
            }
            for row in rows
        ]
        if not values:
            continue
        where = sa.and_(*(table.c[k] == sa.bindparam(f"k_{k}") for k in key))
        update = table.update().where(where).values({c: sa.bindparam(c) for c in columns})
        for first in range(0, len(values), 1000):
            bind.execute(update, values[first : first + 1000])


def _records(rows: Iterable[sa.RowMapping]) -> Iterable[EventRecord]:
    for row in rows:
        moment: datetime = row["time"]
        yield EventRecord(
            event_id=row["event_id"],
            event_type=row["event_type"],
            time=moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment,
            service=row["service"],
            environment=row["environment"],
            release_id=row["release_id"],
            artifact_id=row["artifact_id"],
            data=dict(row["data"] or {}),
        )


def _back_fill_cells(bind: sa.Connection, cells: sa.Table) -> None:
    """Per place the newest commit and the newest rollout fact of its artifact there."""
    inbox = sa.Table("inbox", sa.MetaData(), autoload_with=bind)
    commits: dict[tuple[str, str], EventRecord] = {}
    rows = bind.execute(sa.select(inbox).where(inbox.c.event_type == COMMITTED)).mappings()
    for record in _records(rows):
        place = (record.service, record.environment)
        if place not in commits or commit_rank(record) > commit_rank(commits[place]):
            commits[place] = record
    facts: dict[tuple[str, str], EventRecord] = {}
    rows = bind.execute(sa.select(inbox).where(inbox.c.event_type.in_(ROLLOUTS))).mappings()
    for record in _records(rows):
        place = (record.service, record.environment)
        commit = commits.get(place)
        if commit is None or record.artifact_id != commit.artifact_id:
            continue
        if place not in facts or fact_rank(record) > fact_rank(facts[place]):
            facts[place] = record
    values: list[dict[str, Any]] = []
    for place, commit in sorted(commits.items()):
        fact = facts.get(place)
        values.append(
            {
                "service": place[0],
                "environment": place[1],
                "commit_event_id": commit.event_id,
                "commit_time": commit.time,
                "release_id": commit.release_id,
                "artifact_id": commit.artifact_id,
                "commit_data": commit.data,
                "fact_event_id": fact.event_id if fact else None,
                "fact_event_type": fact.event_type if fact else None,
                "fact_time": fact.time if fact else None,
                "fact_data": fact.data if fact else None,
            }
        )
    for first in range(0, len(values), 500):
        bind.execute(cells.insert(), values[first : first + 500])


def downgrade() -> None:
    op.drop_table("cells")
    for name, table in (
        ("ix_rollbacks_place_us", "rollbacks"),
        ("ix_deployments_place_at_us", "deployments"),
        ("ix_deployments_env_at_us", "deployments"),
        ("ix_results_place_outcome_us", "rollout_results"),
    ):
        op.drop_index(name, table_name=table)
    for table, column in (
        ("changes", "changed_us"),
        ("rollout_results", "observed_us"),
        ("rollbacks", "requested_us"),
        ("deployments", "at_us"),
        ("deployments", "succeeded_us"),
        ("deployments", "next_us"),
        ("deployments", "rolled_back_us"),
        ("deployments", "failed_us"),
        ("deployments", "restored_us"),
    ):
        op.drop_column(table, column)
