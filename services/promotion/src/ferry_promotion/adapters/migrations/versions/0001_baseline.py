"""0001: promotion's schema as releases before migrations created it.

Tables and indexes that are missing are created; a table that exists gets the nullable
columns an older release did not have yet. A database made by any earlier release of
promotion is taken over in place, with its rows (see ``ferry_runtime.migrations``).
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
    "approvals",
    metadata,
    sa.Column("release_id", sa.String(length=128), nullable=False),
    sa.Column("subject", sa.String(length=200), nullable=False),
    sa.Column("email", sa.String(length=320), nullable=False),
    sa.Column("name", sa.String(length=200), nullable=False),
    sa.Column("decision", sa.String(length=10), nullable=False),
    sa.Column("comment", sa.Text(), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("release_id", "subject"),
)
sa.Table(
    "artifacts",
    metadata,
    sa.Column("service", sa.String(length=63), nullable=False),
    sa.Column("artifact_id", sa.String(length=128), nullable=False),
    sa.Column("branch", sa.String(length=255), nullable=False),
    sa.Column("sha", sa.String(length=64), nullable=False),
    sa.Column("author_name", sa.String(length=200), nullable=False),
    sa.Column("author_email", sa.String(length=320), nullable=False),
    sa.Column("message", sa.Text(), nullable=False),
    sa.Column("namespace", sa.String(length=63), nullable=False),
    sa.Column("environments", sa.JSON(), nullable=False),
    sa.Column("commit_sha", sa.String(length=64), nullable=False),
    sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("service", "artifact_id"),
)
index(metadata, "ix_artifacts_branch", "artifacts", ["service", "branch", "stored_at"])
sa.Table(
    "inbox",
    metadata,
    sa.Column("event_id", sa.String(length=128), nullable=False),
    sa.Column("event_type", sa.String(length=128), nullable=False),
    sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("event_id"),
)
sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("event_id", sa.String(length=128), nullable=False),
    sa.Column("event_type", sa.String(length=128), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("event_id"),
)
index(metadata, "ix_outbox_unsent", "outbox", ["sent_at", "id"])
sa.Table(
    "releases",
    metadata,
    sa.Column("release_id", sa.String(length=128), nullable=False),
    sa.Column("service", sa.String(length=63), nullable=False),
    sa.Column("environment", sa.String(length=63), nullable=False),
    sa.Column("intent", sa.String(length=20), nullable=False),
    sa.Column("artifact_id", sa.String(length=128), nullable=True),
    sa.Column("branch", sa.String(length=255), nullable=True),
    sa.Column("from_environment", sa.String(length=63), nullable=True),
    sa.Column("status", sa.String(length=24), nullable=False),
    sa.Column("actor_subject", sa.String(length=200), nullable=False),
    sa.Column("actor_email", sa.String(length=320), nullable=False),
    sa.Column("actor_name", sa.String(length=200), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("override_freeze", sa.Boolean(), nullable=False),
    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("commit_sha", sa.String(length=64), nullable=True),
    sa.Column("namespace", sa.String(length=63), nullable=True),
    sa.Column("promoted_from", sa.String(length=63), nullable=True),
    sa.Column("author_email", sa.String(length=320), nullable=False),
    sa.Column("author_name", sa.String(length=200), nullable=False),
    sa.Column("artifact_branch", sa.String(length=255), nullable=False),
    sa.Column("violations", sa.JSON(), nullable=False),
    sa.Column("approvals_required", sa.Integer(), nullable=False),
    sa.Column("exclude_author", sa.Boolean(), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("waiting_since", sa.DateTime(timezone=True), nullable=True),
    sa.Column("correlation_id", sa.String(length=128), nullable=False),
    sa.Column("request_event_id", sa.String(length=128), nullable=True),
    sa.Column("superseded_by", sa.String(length=128), nullable=True),
    sa.PrimaryKeyConstraint("release_id"),
)
index(metadata, "ix_releases_service_env", "releases", ["service", "environment", "status"])
index(metadata, "ix_releases_status", "releases", ["status"])
sa.Table(
    "rollouts",
    metadata,
    sa.Column("environment", sa.String(length=63), nullable=False),
    sa.Column("service", sa.String(length=63), nullable=False),
    sa.Column("artifact_id", sa.String(length=128), nullable=False),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("release_id", sa.String(length=128), nullable=False),
    sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("succeeded_at", sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint("environment", "service", "artifact_id"),
)
sa.Table(
    "timeline",
    metadata,
    sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("release_id", sa.String(length=128), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.String(length=24), nullable=False),
    sa.Column("event_type", sa.String(length=128), nullable=False),
    sa.Column("detail", sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint("id"),
)
index(metadata, "ix_timeline_release_id", "timeline", ["release_id"])


def upgrade() -> None:
    create_missing(op.get_bind(), metadata)


def downgrade() -> None:
    raise NotImplementedError("the first revision is not undone: drop the database instead")
