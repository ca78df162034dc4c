"""0006: soaks (policy ``promotionChain.soak``) decided on a clock any replica can claim.

``releases.due_at`` is when a waiting request is decided again (the end of its soak): the
timer of any replica claims due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) by moving
them a lease ahead, so that each is decided once and one whose replica died is taken by
another. ``rollouts.failed_at`` keeps the newest failure of an artifact in an environment,
since the status alone is replaced by later facts. Expand only: two nullable columns and an
index.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels = None
depends_on = None
contract = False


def upgrade() -> None:
    op.add_column("releases", sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_releases_due", "releases", ["due_at"])
    op.add_column("rollouts", sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("rollouts", "failed_at")
    op.drop_index("ix_releases_due", table_name="releases")
    op.drop_column("releases", "due_at")
