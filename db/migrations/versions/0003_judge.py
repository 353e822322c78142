"""judge tables: judging runs with their reports, and requirement verdicts

Revision ID: 0003_judge
Revises: 0001_core
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_judge"
down_revision = "0001_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hilnas_judge_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("task_name", sa.String(length=300), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("search_id", sa.Integer(), nullable=True),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("requirement_set", sa.JSON(), nullable=False),
        sa.Column("n_satisfied", sa.Integer(), nullable=False),
        sa.Column("n_unsatisfied", sa.Integer(), nullable=False),
        sa.Column("n_error", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("elapsed_s", sa.Float(), nullable=False),
        sa.Column("report_markdown", sa.Text(), nullable=False),
        sa.Column("report_html", sa.Text(), nullable=False),
        sa.Column("report_path", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["search_id"], ["hilnas_searches.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("hilnas_judge_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hilnas_judge_runs_kind"), ["kind"], unique=False)
        batch_op.create_index(batch_op.f("ix_hilnas_judge_runs_search_id"), ["search_id"], unique=False)

    op.create_table(
        "hilnas_judge_verdicts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("requirement_id", sa.Integer(), nullable=False),
        sa.Column("criteria", sa.Text(), nullable=False),
        sa.Column("prerequisites", sa.JSON(), nullable=False),
        sa.Column("verdict", sa.String(length=20), nullable=False),
        sa.Column("decided_by", sa.String(length=20), nullable=False),
        sa.Column("justification", sa.Text(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("human_satisfied", sa.Boolean(), nullable=True),
        sa.Column("llm_calls", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("elapsed_s", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["hilnas_judge_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "requirement_id", name="uq_judge_verdict_requirement"),
    )
    with op.batch_alter_table("hilnas_judge_verdicts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hilnas_judge_verdicts_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("hilnas_judge_verdicts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hilnas_judge_verdicts_run_id"))

    op.drop_table("hilnas_judge_verdicts")
    with op.batch_alter_table("hilnas_judge_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hilnas_judge_runs_search_id"))
        batch_op.drop_index(batch_op.f("ix_hilnas_judge_runs_kind"))

    op.drop_table("hilnas_judge_runs")
