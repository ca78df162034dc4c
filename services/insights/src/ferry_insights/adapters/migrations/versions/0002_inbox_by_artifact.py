"""0002: ``ix_inbox_artifact``, so that the dashboard's matrix finds the rollout facts of the
artifact each service runs in each environment by index, not by a scan of every rollout.
Expand only: a new index.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None
contract = False


def upgrade() -> None:
    op.create_index("ix_inbox_artifact", "inbox", ["artifact_id", "service", "environment"])


def downgrade() -> None:
    op.drop_index("ix_inbox_artifact", table_name="inbox")
