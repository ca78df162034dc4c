"""Insights' settings (``FERRY_`` prefix); read only in bootstrap.py."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from ferry_runtime import RuntimeSettings


class InsightsSettings(RuntimeSettings):
    """Everything insights can be told, with defaults that work on a laptop."""

    http_port: int = 8085
    #: SQLAlchemy async URL, ``postgresql+asyncpg://...`` in production; empty: a SQLite file
    #: under FERRY_DATA_DIR (``insights.db``).
    database_url: str = ""
    #: The tokens file promotion reads (SHA-256 hashes only); default FERRY_DATA_DIR/tokens.yaml.
    api_tokens_file: Path | None = None
    #: Events projected at once by one process.
    consumer_concurrency: int = Field(default=8, ge=1, le=256)
    #: How long the DORA gauges on ``/metrics`` are reused before they are computed again (s).
    metrics_cache_seconds: float = Field(default=15.0, ge=0)
    #: The window of the DORA gauges on ``/metrics``, in days.
    metrics_window_days: int = Field(default=30, ge=1, le=365)

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'insights.db'}"

    def resolved_tokens_file(self) -> Path:
        return self.api_tokens_file or self.data_dir / "tokens.yaml"
