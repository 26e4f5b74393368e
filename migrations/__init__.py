"""Alembic migrations of the hub's schema (SQLite and PostgreSQL)."""
