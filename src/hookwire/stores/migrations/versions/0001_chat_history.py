"""Chat history: conversations and messages."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from hookwire.stores.schema import UTCDateTime

revision = "0001_chat_history"
down_revision = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("realm", sa.String(128), nullable=False, server_default=""),
        sa.Column("org_id", sa.String(255), nullable=False, server_default=""),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("is_anonymous", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("agent_title", sa.String(255), nullable=True),
        sa.Column("state", sa.String(32), nullable=False, server_default="normal"),
        sa.Column("model", sa.String(255), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("metadata", _json(), nullable=True),
        sa.Column("correlation_id", sa.String(255), nullable=True),
        sa.Column("request_id", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_conversations"),
    )
    op.create_index(
        "ix_conversations_owner_updated",
        "conversations",
        ["realm", "org_id", "user_id", "is_anonymous", "updated_at", "id"],
    )
    op.create_table(
        "messages",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("conversation_id", sa.String(64), nullable=False),
        sa.Column("parent_message_id", sa.String(64), nullable=True),
        sa.Column("sender", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("message_time", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("metadata", _json(), nullable=True),
        sa.Column("correlation_id", sa.String(255), nullable=True),
        sa.Column("request_id", sa.String(255), nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("model", sa.String(255), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("total_tokens", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_messages"),
        sa.UniqueConstraint("id", name="uq_messages_id"),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name="fk_messages_conversation_id_conversations",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["parent_message_id"],
            ["messages.id"],
            name="fk_messages_parent_message_id_messages",
            ondelete="SET NULL",
        ),
        sa.CheckConstraint(
            "sender IN ('end_user', 'assistant', 'system', 'tool')", name="ck_messages_sender"
        ),
    )
    op.create_index("ix_messages_conversation_seq", "messages", ["conversation_id", "seq"])
    op.create_index("ix_messages_parent", "messages", ["parent_message_id"])
    op.create_index("ix_messages_run", "messages", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_messages_run", table_name="messages")
    op.drop_index("ix_messages_parent", table_name="messages")
    op.drop_index("ix_messages_conversation_seq", table_name="messages")
    op.drop_table("messages")
    op.drop_index("ix_conversations_owner_updated", table_name="conversations")
    op.drop_table("conversations")
