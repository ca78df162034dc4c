"""Alembic's entry point for notifier's migrations (how they run: ``ferry_runtime.migrations``)."""

from ferry_notifier.adapters.tables import metadata
from ferry_runtime.migrations import run_env

run_env(metadata)
