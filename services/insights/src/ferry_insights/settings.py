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

    #: How often each replica looks for facts a replica of the release before wrote during a
    #: rolling upgrade, and projects their places (seconds; docs/insights.md, "Upgrades").
    repair_interval: float = Field(default=5.0, gt=0, le=3600)

    #: Promotion's API: the dashboard's Approve and Reject act through it, as the person.
    promotion_url: str = "http://127.0.0.1:8080"
    #: How long a dashboard login lasts (hours).
    session_hours: float = Field(default=8.0, gt=0, le=24 * 30)
    #: Mark the session cookie ``Secure`` even when the request came over plain HTTP (set it
    #: behind a TLS-terminating proxy); over HTTPS it is always ``Secure``.
    cookie_secure: bool = False
    #: How often a live page's server-sent event stream looks for new events (seconds).
    live_interval: float = Field(default=1.0, gt=0, le=60)
    #: Link to a config repo commit, ``{sha}`` replaced (a web UI's commit page).
    config_commit_url: str = ""

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'insights.db'}"

    def resolved_tokens_file(self) -> Path:
        return self.api_tokens_file or self.data_dir / "tokens.yaml"
