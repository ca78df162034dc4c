"""Alembic's entry point for promotion's migrations (how they run: ``ferry_runtime.migrations``)."""

from ferry_promotion.adapters.db import metadata
from ferry_runtime.migrations import run_env

run_env(metadata)
