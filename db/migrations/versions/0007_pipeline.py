"""staged pipeline runs and their stages

Revision ID: 0007_pipeline
Revises: 0001_core
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_pipeline"
down_revision = "0001_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hilnas_pipeline_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("host", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("hilnas_pipeline_runs", schema=None) as batch_op:
        batch_op.create_index("ix_hilnas_pipeline_runs_kind", ["kind"], unique=False)
        batch_op.create_index("ix_hilnas_pipeline_runs_status", ["status"], unique=False)
    op.create_table(
        "hilnas_pipeline_stages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("output", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["hilnas_pipeline_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "name", name="uq_hilnas_pipeline_stage"),
    )
    with op.batch_alter_table("hilnas_pipeline_stages", schema=None) as batch_op:
        batch_op.create_index("ix_hilnas_pipeline_stages_run_id", ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_table("hilnas_pipeline_stages")
    op.drop_table("hilnas_pipeline_runs")
