"""Promotion's settings (``FERRY_`` prefix); read only in bootstrap.py."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from ferry_runtime import RuntimeSettings


class PromotionSettings(RuntimeSettings):
    """Everything promotion can be told, with defaults that work on a laptop."""

    http_port: int = 8080
    #: SQLAlchemy async URL; the default is a SQLite file under FERRY_DATA_DIR.
    database_url: str = ""
    #: The config repo to read (never pushed to); default: the bare repo under FERRY_DATA_DIR.
    config_repo_url: str = ""
    config_repo_branch: str = "main"
    #: Fetch before a decision when the read-only clone is older than this (seconds).
    config_max_age: float = Field(default=3.0, ge=0.0)
    #: After a commit event the background refresher fetches, at most this often (seconds);
    #: API reads fetch at once so they see what they were told was committed.
    config_min_fetch_interval: float = Field(default=0.2, ge=0.0)
    #: Tokens file (SHA-256 hashes only); default FERRY_DATA_DIR/tokens.yaml.
    api_tokens_file: Path | None = None
    #: Consumer workers. Decisions about one service and environment stay in arrival order
    #: at any value (a per-key FIFO lock); 1 handles every event strictly one at a time.
    consumer_concurrency: int = Field(default=4, ge=1, le=64)
    #: How long a promotion-chain request waits for the rollout result before it is rejected.
    chain_wait_seconds: float = Field(default=1800.0, gt=0)
    #: How often approvals and chain waits are checked for expiry, and ended soaks decided
    #: (seconds).
    expiry_check_interval: float = Field(default=5.0, gt=0)
    #: Prometheus's base URL, for the checks of policy ``verification`` (empty: none, and a
    #: request such a check gates is rejected saying so).
    prometheus_url: str = ""
    #: Seconds a Prometheus query may take in all before the check fails.
    prometheus_timeout: float = Field(default=10.0, gt=0, le=120)
    #: How often scheduled releases are checked for being due (seconds).
    schedule_check_interval: float = Field(default=1.0, gt=0)
    #: Days relayed outbox rows are kept (for inspection), and processed event ids (dedup).
    outbox_retention_days: float = Field(default=7.0, gt=0)
    inbox_retention_days: float = Field(default=30.0, gt=0)
    slack_signing_secret: SecretStr = SecretStr("")
    slack_bot_token: SecretStr = SecretStr("")
    slack_api_url: str = "https://slack.com/api/"

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'promotion.db'}"

    def resolved_config_repo_url(self) -> str:
        return self.config_repo_url or str(self.data_dir / "config.git")

    def resolved_tokens_file(self) -> Path:
        return self.api_tokens_file or self.data_dir / "tokens.yaml"
