"""Traces: ``spans`` (one row per run, LLM call, tool call, memory operation, retry and error)
and ``span_contents`` (their whole inputs and outputs), for ``hookwire ui``.

The runs list reads root spans only, so its indexes are partial (``WHERE parent_id IS NULL``):
the far more numerous child spans cost them nothing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hookwire.stores.schema import Money, UTCDateTime

revision = "0006_traces"
down_revision = "0005_outbox"

_ROOT = sa.text("parent_id IS NULL")
#: Indexes of root spans: name, columns.
ROOT_INDEXES = {
    "ix_spans_root_started": ["started_at", "span_id"],
    "ix_spans_root_user": ["user_id", "started_at", "span_id"],
    "ix_spans_root_model": ["model", "started_at", "span_id"],
    "ix_spans_root_agent": ["agent", "started_at", "span_id"],
    "ix_spans_root_status": ["status", "started_at", "span_id"],
}


def upgrade() -> None:
    op.create_table(
        "spans",
        sa.Column("span_id", sa.String(96), nullable=False),
        sa.Column("trace_id", sa.String(64), nullable=False),
        sa.Column("parent_id", sa.String(96), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error_type", sa.String(255), nullable=True),
        sa.Column("model", sa.String(255), nullable=True),
        sa.Column("provider", sa.String(64), nullable=True),
        sa.Column("user_id", sa.String(255), nullable=True),
        sa.Column("org_id", sa.String(255), nullable=True),
        sa.Column("conversation_id", sa.String(64), nullable=True),
        sa.Column("agent", sa.String(255), nullable=True),
        sa.Column("depth", sa.Integer(), nullable=True),
        sa.Column("input_tokens", sa.BigInteger(), nullable=True),
        sa.Column("output_tokens", sa.BigInteger(), nullable=True),
        sa.Column("cached_tokens", sa.BigInteger(), nullable=True),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=True),
        sa.Column("cost", Money(), nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("ttft_ms", sa.Float(), nullable=True),
        sa.Column("retries", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("input_preview", sa.String(200), nullable=True),
        sa.Column("output_preview", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("span_id", name="pk_spans"),
    )
    for name, columns in ROOT_INDEXES.items():
        op.create_index(name, "spans", columns, sqlite_where=_ROOT, postgresql_where=_ROOT)
    op.create_index("ix_spans_parent_started", "spans", ["parent_id", "started_at", "span_id"])
    op.create_index("ix_spans_trace", "spans", ["trace_id"])
    op.create_index(
        "ix_spans_started", "spans", ["started_at", "kind", "status", "error_type", "retries"]
    )
    op.create_table(
        "span_contents",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("span_id", sa.String(96), nullable=False),
        sa.Column("input", sa.Text(), nullable=True),
        sa.Column("output", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["span_id"],
            ["spans.span_id"],
            name="fk_span_contents_span_id_spans",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("seq", name="pk_span_contents"),
        sa.UniqueConstraint("span_id", name="uq_span_contents_span_id"),
    )
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_SEARCH:
            op.execute(statement)
    else:
        _postgres_search()


#: SQLite: an FTS5 index of the contents with the trigram tokenizer (any language, and
#: substrings), kept by triggers so that every write path keeps it, upserts included.
SQLITE_SEARCH = (
    "CREATE VIRTUAL TABLE span_search USING fts5(input, output, content='span_contents', "
    "content_rowid='seq', tokenize='trigram')",
    "CREATE TRIGGER span_search_insert AFTER INSERT ON span_contents BEGIN "
    "INSERT INTO span_search(rowid, input, output) VALUES (new.seq, new.input, new.output); END",
    "CREATE TRIGGER span_search_delete AFTER DELETE ON span_contents BEGIN "
    "INSERT INTO span_search(span_search, rowid, input, output) "
    "VALUES ('delete', old.seq, old.input, old.output); END",
    "CREATE TRIGGER span_search_update AFTER UPDATE ON span_contents BEGIN "
    "INSERT INTO span_search(span_search, rowid, input, output) "
    "VALUES ('delete', old.seq, old.input, old.output); "
    "INSERT INTO span_search(rowid, input, output) VALUES (new.seq, new.input, new.output); END",
)

#: PostgreSQL: what the search matches (``ILIKE``), indexed by pg_trgm.
POSTGRES_SEARCHED = "(coalesce(input, '') || ' ' || coalesce(output, ''))"


def _postgres_search() -> None:
    # pg_trgm is a trusted extension (PostgreSQL 13+), yet a role may still not be allowed
    # to create it: the search then scans, and the upgrade goes on.
    bind = op.get_bind()
    try:
        with bind.begin_nested():
            bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except sa.exc.DBAPIError:
        return
    op.execute(
        f"CREATE INDEX ix_span_contents_search ON span_contents "
        f"USING gin ({POSTGRES_SEARCHED} gin_trgm_ops)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS span_search")
    op.drop_table("span_contents")
    op.drop_table("spans")
