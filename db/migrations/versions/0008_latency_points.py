"""latency predictors keep their per-point held-out predictions

Revision ID: 0008_latency_points
Revises: 0002_latency
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_latency_points"
down_revision = "0002_latency"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hilnas_latency_predictors", schema=None) as batch_op:
        batch_op.add_column(sa.Column("held_out", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hilnas_latency_predictors", schema=None) as batch_op:
        batch_op.drop_column("held_out")
