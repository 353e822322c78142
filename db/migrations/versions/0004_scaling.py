"""scaling-law tables: datasets, sweeps, runs, points, fits

Revision ID: 0004_scaling
Revises: 0001_core
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_scaling"
down_revision = "0001_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hilnas_scaling_datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("recipe", sa.JSON(), nullable=False),
        sa.Column("n_tokens", sa.BigInteger(), nullable=False),
        sa.Column("unique_tokens", sa.BigInteger(), nullable=False),
        sa.Column("indicators", sa.JSON(), nullable=False),
        sa.Column("indicator_cost", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "hilnas_scaling_sweeps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("hilnas_scaling_sweeps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hilnas_scaling_sweeps_status"), ["status"], unique=False)

    op.create_table(
        "hilnas_scaling_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sweep_id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=True),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("n_params", sa.BigInteger(), nullable=False),
        sa.Column("model", sa.JSON(), nullable=False),
        sa.Column("lr", sa.Float(), nullable=False),
        sa.Column("token_budget", sa.BigInteger(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("node", sa.String(length=200), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["sweep_id"], ["hilnas_scaling_sweeps.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["dataset_id"], ["hilnas_scaling_datasets.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sweep_id", "key", name="uq_scaling_run_key"),
    )
    with op.batch_alter_table("hilnas_scaling_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hilnas_scaling_runs_sweep_id"), ["sweep_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_hilnas_scaling_runs_status"), ["status"], unique=False)

    op.create_table(
        "hilnas_scaling_points",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("loss", sa.Float(), nullable=False),
        sa.Column("train_loss", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["hilnas_scaling_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "tokens", name="uq_scaling_point_tokens"),
    )
    with op.batch_alter_table("hilnas_scaling_points", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hilnas_scaling_points_run_id"), ["run_id"], unique=False)

    op.create_table(
        "hilnas_scaling_fits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sweep_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("form", sa.String(length=50), nullable=False),
        sa.Column("n_points", sa.Integer(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("intervals", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.Column("fit_seconds", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["sweep_id"], ["hilnas_scaling_sweeps.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("hilnas_scaling_fits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hilnas_scaling_fits_sweep_id"), ["sweep_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("hilnas_scaling_fits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hilnas_scaling_fits_sweep_id"))
    op.drop_table("hilnas_scaling_fits")
    with op.batch_alter_table("hilnas_scaling_points", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hilnas_scaling_points_run_id"))
    op.drop_table("hilnas_scaling_points")
    with op.batch_alter_table("hilnas_scaling_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hilnas_scaling_runs_status"))
        batch_op.drop_index(batch_op.f("ix_hilnas_scaling_runs_sweep_id"))
    op.drop_table("hilnas_scaling_runs")
    with op.batch_alter_table("hilnas_scaling_sweeps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hilnas_scaling_sweeps_status"))
    op.drop_table("hilnas_scaling_sweeps")
    op.drop_table("hilnas_scaling_datasets")
