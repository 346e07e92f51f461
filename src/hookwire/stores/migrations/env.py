"""Alembic environment: runs on the connection ``hookwire.stores.engine.upgrade`` passes in."""

from __future__ import annotations

from alembic import context

from hookwire.stores.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached by running alembic by hand
    raise RuntimeError(
        "hookwire's migrations run through `hookwire db upgrade --db URL`, not the alembic CLI"
    )

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
