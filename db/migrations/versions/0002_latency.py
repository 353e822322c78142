"""latency tables: device profiles and fitted latency predictors

Revision ID: 0002_latency
Revises: 0001_core
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_latency"
down_revision = "0001_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hilnas_device_profiles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device", sa.String(length=100), nullable=False),
        sa.Column("threads", sa.Integer(), nullable=False),
        sa.Column("peak_gflops", sa.Float(), nullable=False),
        sa.Column("bandwidth_gbs", sa.Float(), nullable=False),
        sa.Column("fingerprint", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("hilnas_device_profiles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hilnas_device_profiles_device"), ["device"], unique=False)

    op.create_table(
        "hilnas_latency_predictors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device", sa.String(length=100), nullable=False),
        sa.Column("backend", sa.String(length=100), nullable=False),
        sa.Column("phase", sa.String(length=50), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("selected", sa.Boolean(), nullable=False),
        sa.Column("n_measurements", sa.Integer(), nullable=False),
        sa.Column("cv_mape", sa.Float(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("model_blob", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("hilnas_latency_predictors", schema=None) as batch_op:
        batch_op.create_index("ix_latency_predictor_key", ["device", "backend", "phase"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("hilnas_latency_predictors", schema=None) as batch_op:
        batch_op.drop_index("ix_latency_predictor_key")
    op.drop_table("hilnas_latency_predictors")
    with op.batch_alter_table("hilnas_device_profiles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hilnas_device_profiles_device"))
    op.drop_table("hilnas_device_profiles")
