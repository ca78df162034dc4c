"""0004: ``inbox.projected``, set by the writers of this release, left NULL by a replica of
the release before 0003 that still runs during a rolling upgrade (its facts lack the DORA
columns and never reach the cells); every replica of this release repairs those places
(``Store.repair``), found by the index on the marker.

Expand only: a new nullable column and its index. The rows already stored stay NULL, so
the first repair after the upgrade projects every place once more (the same values as the
0003 back-fill, plus whatever a replica of the release before wrote since).
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
    op.add_column("inbox", sa.Column("projected", sa.SmallInteger(), nullable=True))
    op.create_index("ix_inbox_projected", "inbox", ["projected"])


def downgrade() -> None:
    op.drop_index("ix_inbox_projected", table_name="inbox")
    op.drop_column("inbox", "projected")
