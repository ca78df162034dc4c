"""structlog set-up: JSON lines when not on a TTY, pretty on a TTY, correlation id on every line.

Standard-library loggers (aio-pika, uvicorn, ...) are routed through the same
processors, so every line a service prints has one shape.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars, bound_contextvars, merge_contextvars
from structlog.typing import Processor

from ferry_events import mask_secrets

__all__ = ["bind_contextvars", "bound_contextvars", "configure_logging", "get_logger"]


def configure_logging(service: str, *, level: str = "INFO", fmt: str = "auto") -> None:
    """Configure structlog and the standard library for ``service``."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Processor] = [
        merge_contextvars,
        _ServiceKey(service),
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if use_json else _identity,
            _mask_secrets,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiormq", "aio_pika", "git", "uvicorn.access", "kubernetes_asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    bind_contextvars(service=service)


class _ServiceKey:
    """Keep ``service`` the name of the process that logs.

    A log call about the service being released (``service="payments"``) would
    otherwise overwrite it, and filtering logs by service would miss the line;
    such a value moves to ``subject``, the CloudEvents name for it.
    """

    def __init__(self, service: str) -> None:
        self._service = service

    def __call__(self, _: Any, __: str, event_dict: Any) -> Any:
        value = event_dict.get("service")
        if value is not None and value != self._service:
            event_dict.setdefault("subject", value)
            event_dict["service"] = self._service
        return event_dict


def _identity(_: Any, __: str, event_dict: Any) -> Any:
    return event_dict


def _mask_secrets(_: Any, __: str, event_dict: Any) -> Any:
    """The last guard before a line is written: credentials in any URL, in any value
    (a git error, a library's exception text, a traceback), are masked."""
    return {key: _masked(value) for key, value in event_dict.items()}


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_secrets(value)
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(item) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    # what the renderer would print for it (its repr), masked
    return mask_secrets(repr(value))


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A structlog logger; every line carries the context bound for the current message."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
