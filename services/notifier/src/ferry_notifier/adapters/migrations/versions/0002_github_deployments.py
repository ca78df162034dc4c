"""0002: the GitHub Deployment of each (release, repository), created once across replicas.

``github_deployments`` holds the deployment's id and the furthest status set on it, so a
redelivered event, or the same release on another replica, neither creates a second
deployment nor sets a status out of order. Expand only: a new table.
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
        "github_deployments",
        sa.Column("release_id", sa.String(length=128), nullable=False),
        sa.Column("repository", sa.String(length=256), nullable=False),
        sa.Column("deployment_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("link", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("release_id", "repository"),
    )


def downgrade() -> None:
    op.drop_table("github_deployments")
