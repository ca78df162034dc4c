"""0002: the Slack replay cache and the response_url follow-ups, shared by every replica.

``slack_seen`` holds the signature of each Slack request until it expires, so a request
replayed on another replica is refused; ``slack_followups`` the ``response_url`` s a
replica follows a release on, with its lease, so another replica finishes a dead one's.
Expand only: new tables.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None
contract = False


def upgrade() -> None:
    op.create_table(
        "slack_followups",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("response_url", sa.Text(), nullable=False),
        sa.Column("release_id", sa.String(length=128), nullable=False),
        sa.Column("slack_user", sa.String(length=64), nullable=False),
        sa.Column("last_status", sa.String(length=24), nullable=False),
        sa.Column("posts", sa.Integer(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_slack_followups_lease", "slack_followups", ["lease_until"])
    op.create_table(
        "slack_seen",
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("signature"),
    )
    op.create_index("ix_slack_seen_expires_at", "slack_seen", ["expires_at"])


def downgrade() -> None:
    op.drop_table("slack_seen")
    op.drop_table("slack_followups")
