"""0005: every release request numbered per (service, environment).

``release_sequences`` holds the last number given per service and environment (its row is
locked until the request's transaction commits, so the numbers follow commit order);
``releases.sequence`` the number of each request. Expand only: a new table and a nullable
column (requests recorded before it have none, and are ordered by nothing).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None
contract = False


def upgrade() -> None:
    op.create_table(
        "release_sequences",
        sa.Column("service", sa.String(length=63), nullable=False),
        sa.Column("environment", sa.String(length=63), nullable=False),
        sa.Column("last", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("service", "environment"),
    )
    op.add_column("releases", sa.Column("sequence", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("releases", "sequence")
    op.drop_table("release_sequences")
