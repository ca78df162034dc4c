"""``python -m ferry_notifier``: run the notifier until SIGTERM."""

from __future__ import annotations

import asyncio
import sys

from ferry_notifier.bootstrap import SERVICE, ConfigurationError, build
from ferry_notifier.settings import NotifierSettings
from ferry_runtime import BrokerUnavailable, configure_logging, get_logger


def main() -> None:
    settings = NotifierSettings()
    configure_logging(SERVICE, level=settings.log_level, fmt=settings.log_format)
    log = get_logger("ferry_notifier")
    try:
        runtime = build(settings)
    except ConfigurationError as exc:
        log.error("cannot start", reason=str(exc))  # noqa: TRY400 - the reason is the message
        sys.exit(2)
    try:
        asyncio.run(runtime.run())
    except BrokerUnavailable as exc:
        log.error("cannot start", reason=str(exc))  # noqa: TRY400
        sys.exit(3)


if __name__ == "__main__":
    main()
