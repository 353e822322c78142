"""cluster operation: the node that measured each trial on its device

Revision ID: 0006_cluster
Revises: 0001_core
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_cluster"
down_revision = "0001_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hilnas_trials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("device_node", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hilnas_trials", schema=None) as batch_op:
        batch_op.drop_column("device_node")
