"""0003: outbox rows claimed by a relay, in order per (service, environment).

``ordering_key`` is ``service/environment`` of an event about one; ``claimed_by`` and
``claimed_until`` the relay publishing a row and its lease, so that many relays share
one outbox. Expand only: nullable columns and an index (an older replica's relay ignores
them and still publishes every row).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None
contract = False


def upgrade() -> None:
    op.add_column("outbox", sa.Column("ordering_key", sa.String(length=128), nullable=True))
    op.add_column("outbox", sa.Column("claimed_by", sa.String(length=64), nullable=True))
    op.add_column("outbox", sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_outbox_key", "outbox", ["ordering_key", "sent_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_key", table_name="outbox")
    op.drop_column("outbox", "claimed_until")
    op.drop_column("outbox", "claimed_by")
    op.drop_column("outbox", "ordering_key")
