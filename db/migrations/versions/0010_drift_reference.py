"""baseline times of the drift reference program, one per device, backend and thread count

Revision ID: 0010_drift_reference
Revises: 0008_latency_points
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_drift_reference"
down_revision = "0008_latency_points"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hilnas_reference_baselines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device", sa.String(length=100), nullable=False),
        sa.Column("backend", sa.String(length=50), nullable=False),
        sa.Column("threads", sa.Integer(), nullable=False),
        sa.Column("program", sa.String(length=100), nullable=False),
        sa.Column("median_ms", sa.Float(), nullable=False),
        sa.Column("fingerprint", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("hilnas_reference_baselines", schema=None) as batch_op:
        batch_op.create_index("ix_reference_baseline_key", ["device", "backend", "threads", "program"], unique=False)


def downgrade() -> None:
    op.drop_table("hilnas_reference_baselines")
