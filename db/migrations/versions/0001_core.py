"""core tables: searches, trials, measurements, artifacts, hypervolume

Revision ID: 0001_core
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_core"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hilnas_searches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("family", sa.String(length=100), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("objectives", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("optuna_study_name", sa.String(length=200), nullable=False),
        sa.Column("n_trials_target", sa.Integer(), nullable=False),
        sa.Column("hypervolume", sa.Float(), nullable=True),
        sa.Column("reference_point", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("host", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("optuna_study_name"),
    )
    with op.batch_alter_table("hilnas_searches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hilnas_searches_family"), ["family"], unique=False)
        batch_op.create_index(batch_op.f("ix_hilnas_searches_status"), ["status"], unique=False)

    op.create_table(
        "hilnas_hypervolume",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("search_id", sa.Integer(), nullable=False),
        sa.Column("n_finished", sa.Integer(), nullable=False),
        sa.Column("hypervolume", sa.Float(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["search_id"], ["hilnas_searches.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("hilnas_hypervolume", schema=None) as batch_op:
        batch_op.create_index("ix_hv_search_n", ["search_id", "n_finished"], unique=False)

    op.create_table(
        "hilnas_trials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("search_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("values", sa.JSON(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("node", sa.String(length=200), nullable=True),
        sa.Column("sampler_attrs", sa.JSON(), nullable=True),
        sa.Column("arch_hash", sa.String(length=64), nullable=True),
        sa.Column("feasible", sa.Boolean(), nullable=False),
        sa.Column("is_pareto", sa.Boolean(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["search_id"], ["hilnas_searches.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("search_id", "number", name="uq_trial_search_number"),
    )
    with op.batch_alter_table("hilnas_trials", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hilnas_trials_arch_hash"), ["arch_hash"], unique=False)
        batch_op.create_index(batch_op.f("ix_hilnas_trials_search_id"), ["search_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_hilnas_trials_state"), ["state"], unique=False)

    op.create_table(
        "hilnas_artifacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("search_id", sa.Integer(), nullable=True),
        sa.Column("trial_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["search_id"], ["hilnas_searches.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["trial_id"], ["hilnas_trials.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("hilnas_artifacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hilnas_artifacts_search_id"), ["search_id"], unique=False)

    op.create_table(
        "hilnas_measurements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("search_id", sa.Integer(), nullable=True),
        sa.Column("trial_id", sa.Integer(), nullable=True),
        sa.Column("arch_hash", sa.String(length=64), nullable=False),
        sa.Column("architecture", sa.JSON(), nullable=False),
        sa.Column("device", sa.String(length=100), nullable=False),
        sa.Column("backend", sa.String(length=100), nullable=False),
        sa.Column("phase", sa.String(length=50), nullable=False),
        sa.Column("shape", sa.JSON(), nullable=False),
        sa.Column("shape_key", sa.String(length=200), nullable=False),
        sa.Column("stage", sa.String(length=50), nullable=True),
        sa.Column("median_ms", sa.Float(), nullable=False),
        sa.Column("p10_ms", sa.Float(), nullable=False),
        sa.Column("p90_ms", sa.Float(), nullable=False),
        sa.Column("cv", sa.Float(), nullable=False),
        sa.Column("n_samples", sa.Integer(), nullable=False),
        sa.Column("samples_ms", sa.JSON(), nullable=False),
        sa.Column("stable", sa.Boolean(), nullable=False),
        sa.Column("fingerprint", sa.JSON(), nullable=False),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["search_id"], ["hilnas_searches.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["trial_id"], ["hilnas_trials.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("arch_hash", "device", "backend", "phase", "shape_key", name="uq_measurement_key"),
    )
    with op.batch_alter_table("hilnas_measurements", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hilnas_measurements_search_id"), ["search_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("hilnas_measurements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hilnas_measurements_search_id"))

    op.drop_table("hilnas_measurements")
    with op.batch_alter_table("hilnas_artifacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hilnas_artifacts_search_id"))

    op.drop_table("hilnas_artifacts")
    with op.batch_alter_table("hilnas_trials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hilnas_trials_state"))
        batch_op.drop_index(batch_op.f("ix_hilnas_trials_search_id"))
        batch_op.drop_index(batch_op.f("ix_hilnas_trials_arch_hash"))

    op.drop_table("hilnas_trials")
    with op.batch_alter_table("hilnas_hypervolume", schema=None) as batch_op:
        batch_op.drop_index("ix_hv_search_n")

    op.drop_table("hilnas_hypervolume")
    with op.batch_alter_table("hilnas_searches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hilnas_searches_status"))
        batch_op.drop_index(batch_op.f("ix_hilnas_searches_family"))

    op.drop_table("hilnas_searches")
