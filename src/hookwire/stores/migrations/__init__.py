"""Alembic migrations of hookwire's schema (run programmatically by ``hookwire.stores.engine``)."""
