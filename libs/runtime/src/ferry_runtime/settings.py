"""Settings shared by every service: one prefix, ``FERRY_``, and defaults that work on a laptop.

Each service subclasses :class:`RuntimeSettings` with its own fields. Only a
service's composition root reads settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ferry_events import mask_secrets, mask_url

__all__ = ["SECRET_MARKERS", "RuntimeSettings", "mask_secrets", "mask_url"]

SECRET_MARKERS = ("token", "secret", "password", "key")


class RuntimeSettings(BaseSettings):
    """What every service needs to talk to the broker and to be operated."""

    model_config = SettingsConfigDict(env_prefix="FERRY_", extra="ignore", frozen=True)

    amqp_url: str = "amqp://guest:guest@localhost:5672/"
    exchange: str = "ferry.events"
    #: Prefix of this service's queue names; tests set it to keep runs apart.
    queue_prefix: str = "ferry"
    data_dir: Path = Path(".ferry")
    max_event_bytes: int = Field(default=1024 * 1024, ge=1024)
    prefetch: int = Field(default=64, ge=1, le=10_000)
    #: Seconds before each retry of a temporarily failed message (one delay queue each).
    retry_delays: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0, 600.0)
    #: Deliveries of one message before it is dead-lettered as retries-exhausted.
    max_attempts: int = Field(default=8, ge=1, le=100)
    #: Consumer crashes (unacked redeliveries) before the broker dead-letters a message.
    delivery_limit: int = Field(default=20, ge=1)
    http_host: str = "127.0.0.1"
    http_port: int = 0
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    shutdown_timeout: float = Field(default=30.0, ge=0)

    def effective(self) -> dict[str, Any]:
        """Every setting with secrets masked, for the start-up log line."""
        out: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                out[name] = "***" if value.get_secret_value() else ""
            elif isinstance(value, str) and "://" in value:
                out[name] = mask_url(value)
            elif any(marker in name for marker in SECRET_MARKERS) and value:
                out[name] = "***"
            elif isinstance(value, Path):
                out[name] = str(value)
            elif isinstance(value, str):
                out[name] = mask_secrets(value)
            else:
                out[name] = value
        return out
