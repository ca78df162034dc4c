"""The notifier's settings: every one ``FERRY_``-prefixed, with a default that works locally."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from ferry_runtime import RuntimeSettings


class NotifierSettings(RuntimeSettings):
    http_port: int = 8084
    #: SQLAlchemy async URL, ``postgresql+asyncpg://...`` in production; empty:
    #: SQLite in the data dir (``sqlite+aiosqlite:///.ferry/notifier.db`` by default).
    database_url: str = ""

    def database(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'notifier.db'}"

    #: The routing file; without it, the built-in routing (see docs/notifications.md).
    routes_file: Path | None = None
    #: A directory whose templates override the built-in ones, file by file.
    templates_dir: Path | None = None
    slack_bot_token: SecretStr = SecretStr("")
    slack_api_url: str = "https://slack.com/api/"
    #: YAML ``email: <Slack user id or email>`` for addresses Slack does not know.
    slack_users_file: Path | None = None
    #: ``smtp://user:pass@host:port?starttls=true``; empty: no email.
    smtp_url: str = ""
    email_from: str = "Ferry <ferry@localhost>"
    #: HMAC-SHA256 key for webhook signatures.
    webhook_secret: SecretStr = SecretStr("")
    #: A GitHub token that may write deployments (``repo_deployment`` scope, or a fine-grained
    #: token with "Deployments: write"); empty: no ``github`` destination.
    github_token: SecretStr = SecretStr("")
    #: GitHub's REST API; GitHub Enterprise Server: ``https://HOST/api/v3``. Repositories
    #: are those on its web host (``api.github.com``: ``github.com``).
    github_api_url: str = Field(
        default="https://api.github.com", pattern=r"^https?://[^\s/]+(/\S*)?$"
    )
    #: Events handled at once (each sends to its destinations concurrently).
    concurrency: int = Field(default=32, ge=1, le=1000)
    #: Tries per destination before it is dead-lettered.
    delivery_attempts: int = Field(default=6, ge=1, le=50)
    #: First backoff between tries, doubled each time up to ``delivery_backoff_max``.
    delivery_backoff: float = Field(default=0.5, ge=0)
    delivery_backoff_max: float = Field(default=30.0, ge=0)
    #: Longest ``Retry-After`` honoured, in seconds.
    max_retry_after: float = Field(default=300.0, ge=0)
    #: Timeout of one send (Slack call, SMTP session, webhook POST), in seconds.
    send_timeout: float = Field(default=10.0, gt=0)
    #: Seconds a replica's claim on a delivery (or on starting a release's thread) lasts
    #: unless renewed; another replica takes a claim over once it has run out. Longer
    #: than ``send_timeout``; what a replica that dies mid-send delays by.
    claim_lease: float = Field(default=60.0, gt=0)
    #: A name for this replica in its claims; empty: host name, process id and a random part.
    replica_name: str = Field(default="", max_length=128)
    #: Identical failures within this many seconds are collapsed into one message.
    flood_window: float = Field(default=600.0, ge=0)
    #: Link to a config repo commit, ``{sha}`` replaced (e.g. a web UI's commit page).
    config_commit_url: str = ""
    #: Insights' dashboard (``https://ferry.example.com``); set, every message links to the
    #: release's page there (``/releases/<id>``), or to the service's timeline.
    dashboard_url: str = Field(default="", pattern=r"^(https?://\S+)?$")
