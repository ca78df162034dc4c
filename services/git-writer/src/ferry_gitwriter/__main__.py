"""``python -m ferry_gitwriter``: run git-writer until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio

from ferry_gitwriter import SERVICE
from ferry_gitwriter.bootstrap import build, load_settings
from ferry_runtime import configure_logging


def main() -> None:
    """Configure logging from the settings, then run the service."""
    settings = load_settings()
    configure_logging(SERVICE, level=settings.log_level, fmt=settings.log_format)
    asyncio.run(build(settings).run())


if __name__ == "__main__":
    main()
