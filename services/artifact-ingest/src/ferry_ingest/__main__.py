"""``python -m ferry_ingest``: run artifact-ingest until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import sys

from ferry_ingest import SERVICE
from ferry_ingest.bootstrap import ConfigurationError, build, load_settings
from ferry_runtime import configure_logging, get_logger


def main() -> None:
    """Configure logging from the settings, then run the service."""
    settings = load_settings()
    configure_logging(SERVICE, level=settings.log_level, fmt=settings.log_format)
    try:
        runtime = build(settings)
    except ConfigurationError as exc:
        get_logger("ferry_ingest").error("cannot start", reason=str(exc))
        sys.exit(2)
    asyncio.run(runtime.run())


if __name__ == "__main__":
    main()
