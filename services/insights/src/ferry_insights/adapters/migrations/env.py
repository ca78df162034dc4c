"""Alembic's entry point for insights's migrations (how they run: ``ferry_runtime.migrations``)."""

from ferry_insights.adapters.tables import metadata
from ferry_runtime.migrations import run_env

run_env(metadata)
