"""0004: the config repo commit a release request was accepted at.

``releases.config_commit`` is the commit (or a newer one) the API had when it accepted
the request; the replica that decides it first fetches up to that commit, so a policy
any replica has shown applies to every request accepted after it. Expand only: a
nullable column (an older replica writes none, and its requests are decided as before).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None
contract = False


def upgrade() -> None:
    op.add_column("releases", sa.Column("config_commit", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("releases", "config_commit")
