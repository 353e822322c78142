"""the orchestrating agent's decision log

Revision ID: 0009_agent_decisions
Revises: 0007_pipeline
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_agent_decisions"
down_revision = "0007_pipeline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hilnas_agent_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("planner", sa.String(length=50), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("arguments", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("rejection", sa.Text(), nullable=True),
        sa.Column("stage", sa.String(length=50), nullable=True),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["hilnas_pipeline_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("hilnas_agent_decisions", schema=None) as batch_op:
        batch_op.create_index("ix_hilnas_agent_decisions_run_id", ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_table("hilnas_agent_decisions")
