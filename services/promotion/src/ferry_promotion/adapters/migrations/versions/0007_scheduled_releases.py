"""0007: scheduled releases.

``releases.scheduled_at`` is when a release asked for ``at`` a time falls due; it is
``scheduled`` until then, and the index finds the due ones. Expand only: a nullable column
and an index (an older replica never schedules, and never sees a scheduled row as open).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels = None
depends_on = None
contract = False


def upgrade() -> None:
    op.add_column("releases", sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_releases_scheduled", "releases", ["status", "scheduled_at"])


def downgrade() -> None:
    op.drop_index("ix_releases_scheduled", table_name="releases")
    op.drop_column("releases", "scheduled_at")
