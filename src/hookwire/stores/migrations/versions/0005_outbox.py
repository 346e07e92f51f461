"""The outbox: events on their way out to other systems, one row per event and sink."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hookwire.stores.schema import UTCDateTime

revision = "0005_outbox"
down_revision = "0004_scale"


def upgrade() -> None:
    count = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "outbox",
        sa.Column("seq", count, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("sink", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("available_at", UTCDateTime(), nullable=False),
        sa.Column("claimed_until", UTCDateTime(), nullable=True),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("failing_since", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint("state IN ('pending', 'delivered', 'dead')", name="ck_outbox_state"),
        sa.PrimaryKeyConstraint("seq", name="pk_outbox"),
    )
    op.create_index("uq_outbox_event_id_sink", "outbox", ["event_id", "sink"], unique=True)
    op.create_index("ix_outbox_sink_state_seq", "outbox", ["sink", "state", "seq"])
    op.create_index("ix_outbox_sink_key_state_seq", "outbox", ["sink", "key", "state", "seq"])


def downgrade() -> None:
    op.drop_table("outbox")
