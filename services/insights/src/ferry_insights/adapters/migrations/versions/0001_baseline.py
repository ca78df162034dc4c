"""0001: insights's schema as releases before migrations created it.

Tables and indexes that are missing are created; a table that exists gets the nullable
columns an older release did not have yet. A database made by any earlier release of
insights is taken over in place, with its rows (see ``ferry_runtime.migrations``).
These definitions are frozen here: later changes to the tables are later revisions.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ferry_runtime.migrations import create_missing, index

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None
#: Only adds (expand); see ``ferry_runtime.migrations``.
contract = False

metadata = sa.MetaData()

sa.Table(
    "changes",
    metadata,
    sa.Column("service", sa.String(length=63), nullable=False),
    sa.Column("artifact_id", sa.String(length=128), nullable=False),
    sa.Column("squad", sa.String(length=128), nullable=False),
    sa.Column("branch", sa.String(length=255), nullable=False),
    sa.Column("sha", sa.String(length=64), nullable=False),
    sa.Column("author_name", sa.String(length=200), nullable=False),
    sa.Column("author_email", sa.String(length=320), nullable=False),
    sa.Column("message", sa.Text(), nullable=False),
    sa.Column("committed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("ci_start", sa.DateTime(timezone=True), nullable=True),
    sa.Column("ci_job_url", sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint("service", "artifact_id"),
)
index(metadata, "ix_changes_squad", "changes", ["squad"])
sa.Table(
    "deployments",
    metadata,
    sa.Column("environment", sa.String(length=63), nullable=False),
    sa.Column("service", sa.String(length=63), nullable=False),
    sa.Column("artifact_id", sa.String(length=128), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("failed_rollout", sa.Boolean(), nullable=False),
    sa.Column("event_id", sa.String(length=128), nullable=False),
    sa.Column("succeeded_at", sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint("environment", "service", "artifact_id"),
)
index(metadata, "ix_deployments_env_at", "deployments", ["environment", "at"])
sa.Table(
    "inbox",
    metadata,
    sa.Column("event_id", sa.String(length=128), nullable=False),
    sa.Column("event_type", sa.String(length=128), nullable=False),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("service", sa.String(length=63), nullable=False),
    sa.Column("environment", sa.String(length=63), nullable=False),
    sa.Column("release_id", sa.String(length=128), nullable=False),
    sa.Column("artifact_id", sa.String(length=128), nullable=False),
    sa.Column("data", sa.JSON(), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("event_id"),
)
index(metadata, "ix_inbox_received", "inbox", ["received_at"])
index(metadata, "ix_inbox_release", "inbox", ["release_id"])
index(metadata, "ix_inbox_service_time", "inbox", ["service", "time"])
index(
    metadata, "ix_inbox_type_place_time", "inbox", ["event_type", "service", "environment", "time"]
)
sa.Table(
    "rollbacks",
    metadata,
    sa.Column("event_id", sa.String(length=128), nullable=False),
    sa.Column("environment", sa.String(length=63), nullable=False),
    sa.Column("service", sa.String(length=63), nullable=False),
    sa.Column("release_id", sa.String(length=128), nullable=False),
    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("event_id"),
)
index(metadata, "ix_rollbacks_env_at", "rollbacks", ["environment", "requested_at"])
sa.Table(
    "rollout_results",
    metadata,
    sa.Column("event_id", sa.String(length=128), nullable=False),
    sa.Column("environment", sa.String(length=63), nullable=False),
    sa.Column("service", sa.String(length=63), nullable=False),
    sa.Column("artifact_id", sa.String(length=128), nullable=False),
    sa.Column("outcome", sa.String(length=16), nullable=False),
    sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("release_id", sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint("event_id"),
)
index(
    metadata,
    "ix_results_env_outcome_at",
    "rollout_results",
    ["environment", "outcome", "observed_at"],
)
sa.Table(
    "sessions",
    metadata,
    sa.Column("session_hash", sa.String(length=64), nullable=False),
    sa.Column("subject", sa.String(length=200), nullable=False),
    sa.Column("email", sa.String(length=320), nullable=False),
    sa.Column("name", sa.String(length=200), nullable=False),
    sa.Column("roles", sa.JSON(), nullable=False),
    sa.Column("token", sa.Text(), nullable=False),
    sa.Column("csrf", sa.String(length=64), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("session_hash"),
)
index(metadata, "ix_sessions_expires", "sessions", ["expires_at"])


def upgrade() -> None:
    create_missing(op.get_bind(), metadata)


def downgrade() -> None:
    raise NotImplementedError("the first revision is not undone: drop the database instead")
