"""0001: notifier's schema as releases before migrations created it.

Tables and indexes that are missing are created; a table that exists gets the nullable
columns an older release did not have yet. A database made by any earlier release of
notifier is taken over in place, with its rows (see ``ferry_runtime.migrations``).
These definitions are frozen here: later changes to the tables are later revisions.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ferry_runtime.migrations import create_missing

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None
#: Only adds (expand); see ``ferry_runtime.migrations``.
contract = False

metadata = sa.MetaData()

sa.Table(
    "artifacts",
    metadata,
    sa.Column("artifact_id", sa.String(length=128), nullable=False),
    sa.Column("data", sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint("artifact_id"),
)
sa.Table(
    "claims",
    metadata,
    sa.Column("kind", sa.String(length=16), nullable=False),
    sa.Column("subject", sa.String(length=256), nullable=False),
    sa.Column("destination", sa.String(length=512), nullable=False),
    sa.Column("owner", sa.String(length=128), nullable=False),
    sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("kind", "subject", "destination"),
)
sa.Table(
    "deliveries",
    metadata,
    sa.Column("event_id", sa.String(length=128), nullable=False),
    sa.Column("destination", sa.String(length=512), nullable=False),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("detail", sa.Text(), nullable=False),
    sa.Column("slack_channel", sa.String(length=64), nullable=False),
    sa.Column("slack_ts", sa.String(length=64), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("event_id", "destination"),
)
sa.Table(
    "flood_events",
    metadata,
    sa.Column("event_id", sa.String(length=128), nullable=False),
    sa.Column("anchor_event_id", sa.String(length=128), nullable=False),
    sa.Column("number", sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint("event_id"),
)
sa.Table(
    "floods",
    metadata,
    sa.Column("flood_key", sa.String(length=512), nullable=False),
    sa.Column("anchor_event_id", sa.String(length=128), nullable=False),
    sa.Column("count", sa.Integer(), nullable=False),
    sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("flood_key"),
)
sa.Table(
    "releases",
    metadata,
    sa.Column("release_id", sa.String(length=128), nullable=False),
    sa.Column("data", sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint("release_id"),
)
sa.Table(
    "threads",
    metadata,
    sa.Column("thread_key", sa.String(length=256), nullable=False),
    sa.Column("destination", sa.String(length=512), nullable=False),
    sa.Column("channel", sa.String(length=64), nullable=False),
    sa.Column("ts", sa.String(length=64), nullable=False),
    sa.Column("rank", sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint("thread_key", "destination"),
)


def upgrade() -> None:
    create_missing(op.get_bind(), metadata)


def downgrade() -> None:
    raise NotImplementedError("the first revision is not undone: drop the database instead")
